"""Per-frame time of the two conditioning routes side by side: DreamDiffusion's prompt embeddings in the UNet's
cross-attention, and a CLIP image embedding through an IP-Adapter on a frozen model.

Random weights only (nothing is downloaded), run by the real :class:`~bci_dream.generation.generator.Generator`:

- ``tiny``: the registry's previews through ``load_generator``: ``tiny`` (SD-Turbo-shaped, dreamdiffusion route) and
  ``tiny-sdxl-ip`` (SDXL-Turbo-shaped with an IP-Adapter, ip-adapter route), both built into a temporary cache.
- ``full``: SD-Turbo's architecture + TAESD (dreamdiffusion route), and SDXL-Turbo's architecture + TAESDXL with
  IP-Adapter SDXL's (``ip-adapter_sdxl_vit-h``: ViT-H/14 embeddings of 1024, 4 tokens) random weights written in
  h94's file layout and loaded through diffusers' ``load_ip_adapter`` (ip-adapter route).

The two routes alternate for ``--rounds`` rounds of ``--frames`` frames; medians per route and their ratio.

    python benchmarks/route_speed.py [--models tiny full] [--size 512] [--device cpu|cuda] [--frames 3] [--rounds 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never wait on the network

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_speed import TAESD, build_full_pipeline  # noqa: E402

#: SDXL-Turbo's UNet (stabilityai/sdxl-turbo unet/config.json, the architecture keys).
SDXL_TURBO_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280), "layers_per_block": 2, "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20), "cross_attention_dim": 2048, "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32, "act_fn": "silu"}
#: IP-Adapter SDXL ViT-H: CLIP ViT-H/14 image embeddings.
IP_WIDTH = 1024


def build_full_sdxl_ip(folder: Path, device: torch.device, dtype: torch.dtype):
    """SDXL-Turbo-architecture pipeline (random weights) with a random IP-Adapter SDXL loaded the real way."""
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from bci_dream.generation.tiny import SD_TURBO_SCHEDULER, build_tiny_ip_adapter
    from bci_dream.loading.hub import quiet
    from bci_dream.loading.ip_adapter import load_ip_adapter

    torch.manual_seed(0)
    with quiet("diffusers.models.modeling_utils"):
        unet = UNet2DConditionModel(**SDXL_TURBO_UNET)
        vae = AutoencoderTiny(**TAESD)
    scheduler = EulerDiscreteScheduler(**SD_TURBO_SCHEDULER)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                     tokenizer_2=None, unet=unet, scheduler=scheduler)
    unet.save_pretrained(folder / "unet")  # (the adapter writer reads the UNet's layout from a pipeline folder)
    adapter = build_tiny_ip_adapter(folder, folder / "ip", image_embed_dim=IP_WIDTH, seed=0)
    load_ip_adapter(pipe, adapter)
    return pipe.to(device, dtype)


def make_generators(name: str, device: torch.device, dtype: torch.dtype, size: int, work: Path):
    """(dreamdiffusion-route generator, ip-adapter-route generator) for ``name`` (tiny or full)."""
    from bci_dream.generation.generator import Generator, load_generator, prepare_pipeline

    dtype_name = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    if name == "tiny":
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        return (load_generator("tiny", device=str(device), size=size, dtype=dtype_name, warmup=False, progress=False),
                load_generator("tiny-sdxl-ip", device=str(device), size=size, dtype=dtype_name, warmup=False,
                               progress=False))
    t0 = time.perf_counter()
    sd = prepare_pipeline(build_full_pipeline(device, dtype))
    sdxl = prepare_pipeline(build_full_sdxl_ip(work / "sdxl", device, dtype))
    print(f"  built both full architectures in {time.perf_counter() - t0:.0f} s (SD-Turbo UNet "
          f"{sum(p.numel() for p in sd.unet.parameters()) / 1e6:.0f} M, SDXL-Turbo UNet + IP-Adapter "
          f"{sum(p.numel() for p in sdxl.unet.parameters()) / 1e6:.0f} M parameters)", flush=True)
    return (Generator(sd, model_id="sd-turbo-architecture", size=size),
            Generator(sdxl, model_id="sdxl-turbo-ip-architecture", size=size))


def frame_ms(g, route: str, i: int) -> float:
    gen = torch.Generator().manual_seed(i)
    t0 = time.perf_counter()
    if route == "ip-adapter":
        g.generate_from_image_embeds(torch.randn(g.image_embed_dim, generator=gen).to(g.device))
    else:
        g.generate(torch.randn(1, 77, g.cross_attention_dim, generator=gen).to(g.device))
    if g.device.type == "cuda":
        torch.cuda.synchronize(g.device)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--size", type=int, default=512, help="image side for 'full' (tiny runs at its 256)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp16 / bf16 / fp32 (default fp16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per route and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(
        args.dtype or ("fp16" if device.type == "cuda" else "fp32"))
    print(f"torch {torch.__version__}, {device}, {str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} "
          f"threads; {args.rounds} rounds x {args.frames} frames per route, alternating", flush=True)
    work = Path(tempfile.mkdtemp(prefix="route-speed-"))
    for name in args.models:
        size = 256 if name == "tiny" else args.size
        dreamdiffusion, ip = make_generators(name, device, dtype, size, work)
        for g, route in ((dreamdiffusion, "dreamdiffusion"), (ip, "ip-adapter")):
            frame_ms(g, route, 99)  # warm-up
        times: dict[str, list[float]] = {"dreamdiffusion": [], "ip-adapter": []}
        for r in range(args.rounds):
            for g, route in ((dreamdiffusion, "dreamdiffusion"), (ip, "ip-adapter")):
                times[route] += [frame_ms(g, route, 1000 * r + i) for i in range(args.frames)]
        dd, ia = statistics.median(times["dreamdiffusion"]), statistics.median(times["ip-adapter"])
        print(f"{name} at {size}²: dreamdiffusion route ({dreamdiffusion.model_id}) p50 {dd:.1f} ms per frame; "
              f"ip-adapter route ({ip.model_id}) p50 {ia:.1f} ms; ratio ip-adapter / dreamdiffusion {ia / dd:.2f} "
              f"(n={len(times['ip-adapter'])} each)", flush=True)
        del dreamdiffusion, ip


if __name__ == "__main__":
    main()
