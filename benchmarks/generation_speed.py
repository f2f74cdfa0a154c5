"""Image generation speed: milliseconds per frame (denoise + decode) and achieved TFLOP/s.

Models (random weights only — nothing is downloaded, the hub is never contacted):

- ``tiny``: the registry's untrained preview model, through the real path: built into the user cache
  and loaded with ``load_generator("tiny")`` (``from_pretrained`` of a diffusers folder), at its 256².
- ``full``: the full SD-Turbo architecture — UNet2DConditionModel with SD-Turbo's config (865.9 M
  parameters) and an AutoencoderTiny with TAESD's config (decoder 1.22 M parameters), Euler
  "trailing" scheduler — built in memory with random weights (``--via-folder``: saved to a temporary
  folder and loaded through ``load_generator`` instead), run by the same :class:`Generator`
  (StableDiffusionPipeline with ``prompt_embeds``, 1 step, guidance 0, fixed latents, then the
  decoder), channels_last, SDPA attention.

Per frame: p50 / p95 over ``--frames`` after warm-up, split into denoise (pipeline) and decode (vae +
PIL). On CUDA also the UNet forward and the decoder alone (CUDA events), so the pipeline's own
overhead shows, and TFLOP/s against the FLOPs of a frame (UNet 0.804 + TAESD decoder 0.141 = 0.945
TFLOP at 512², counted here with torch's FlopCounterMode on the meta device for every size).

CUDA: fp16 (``--dtype bf16``), eager, and with ``--compile`` each ``--compile-mode`` in a child
process limited to ``--compile-timeout`` seconds. Runs unchanged on any CUDA machine without network.

    python benchmarks/generation_speed.py                      # CPU here: tiny, full at 256² and 512²
    python benchmarks/generation_speed.py --device cuda --compile [--compile-mode reduce-overhead,...]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never wait on the network

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

#: SD-Turbo's UNet (stabilityai/sd-turbo unet/config.json, the architecture keys).
SD_TURBO_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True,
    "upcast_attention": False}
#: TAESD (madebyollin/taesd config.json).
TAESD = {
    "in_channels": 3, "out_channels": 3, "encoder_block_out_channels": (64, 64, 64, 64),
    "decoder_block_out_channels": (64, 64, 64, 64), "act_fn": "relu", "upsample_fn": "nearest",
    "latent_channels": 4, "upsampling_scaling_factor": 2, "num_encoder_blocks": (1, 3, 3, 3),
    "num_decoder_blocks": (3, 3, 3, 1), "latent_magnitude": 3, "latent_shift": 0.5, "force_upcast": False,
    "scaling_factor": 1.0}
UNET_TFLOP_512, DECODER_TFLOP_512 = 0.804, 0.141
FRAME_TFLOP_512 = UNET_TFLOP_512 + DECODER_TFLOP_512
GOAL_MS = 5.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def count_tflop(size: int) -> tuple[float, float]:
    """(UNet, decoder) TFLOP of one frame at ``size``², counted on the meta device (no compute)."""
    from diffusers import AutoencoderTiny, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**SD_TURBO_UNET), AutoencoderTiny(**TAESD)
        latents, embeds = torch.randn(1, 4, size // 8, size // 8), torch.randn(1, 77, 1024)
        t = torch.tensor(999)
    counts = []
    for run in (lambda: unet(latents, t, encoder_hidden_states=embeds), lambda: vae.decoder(latents)):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            run()
        counts.append(counter.get_total_flops() / 1e12)
    return counts[0], counts[1]


def build_full_pipeline(device: torch.device, dtype: torch.dtype, seed: int = 0):
    """SD-Turbo-architecture StableDiffusionPipeline with random weights, made on ``device``."""
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from bci_dream.generation.tiny import SD_TURBO_SCHEDULER
    from bci_dream.loading.hub import quiet

    torch.manual_seed(seed)
    with torch.device(device), quiet("diffusers.models.modeling_utils"):  # (no modules to keep in fp32 here)
        unet = UNet2DConditionModel(**SD_TURBO_UNET).to(dtype)
        vae = AutoencoderTiny(**TAESD).to(dtype)
    return StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                                   scheduler=EulerDiscreteScheduler(**SD_TURBO_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


_PIPES: dict = {}


def full_generator(device: torch.device, dtype: torch.dtype, size: int, compile_mode: str | None, via_folder: bool,
                   tmp: Path):
    from bci_dream.generation.generator import Generator, load_generator, prepare_pipeline

    key = (str(device), dtype, compile_mode)
    pipe = _PIPES.get(key) or build_full_pipeline(device, dtype)
    if not via_folder:
        if key not in _PIPES:
            prepare_pipeline(pipe, compile=compile_mode or False)
            _PIPES[key] = pipe  # (the same weights for every size)
        return Generator(pipe, model_id="sd-turbo-architecture (random weights)", size=size, steps=1, guidance=0.0)
    folder = tmp / "full"
    if not (folder / "model_index.json").is_file():
        t0 = time.perf_counter()
        pipe.to("cpu").save_pretrained(folder)
        print(f"  saved the random full model to {folder} in {time.perf_counter() - t0:.1f} s", flush=True)
    del pipe
    name = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    t0 = time.perf_counter()
    g = load_generator(str(folder), device=str(device), size=size, dtype=name, compile=compile_mode or False,
                       warmup=False, progress=False)
    print(f"  loaded through load_generator in {time.perf_counter() - t0:.1f} s", flush=True)
    return g


def params_m(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def time_frames(g, frames: int, warmup: int) -> dict[str, list[float]]:
    """Generate ``warmup`` + ``frames`` images from varying embeddings; times of the last ``frames``."""
    embeds = [torch.randn(1, 77, g.cross_attention_dim, generator=torch.Generator().manual_seed(i)).to(g.device)
              for i in range(4)]  # (on the device already, as the engine's conditioning head delivers them)
    out: dict[str, list[float]] = {"total": [], "denoise": [], "decode": []}
    for i in range(warmup + frames):
        t0 = time.perf_counter()
        r = g.generate(embeds[i % len(embeds)])
        total = (time.perf_counter() - t0) * 1000
        if i >= warmup:
            out["total"].append(total)
            out["denoise"].append(r.denoise_ms)
            out["decode"].append(r.decode_ms)
    return out


def time_components(g, frames: int, warmup: int) -> tuple[float, float]:
    """p50 ms of the UNet forward alone and the decoder alone, with the generator's tensors (CUDA events)."""
    unet, vae, device = g.pipe.unet, g.vae, g.device
    latents = g._latents
    embeds = torch.randn(1, 77, g.cross_attention_dim, device=device, dtype=g.dtype)
    t = g.pipe.scheduler.timesteps[0] if len(g.pipe.scheduler.timesteps) else torch.tensor(999, device=device)
    result = []
    for run in (lambda: unet(latents, t, encoder_hidden_states=embeds, return_dict=False),
                lambda: vae.decode(latents, return_dict=False)):
        times = []
        with torch.inference_mode():
            for i in range(warmup + frames):
                if device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    run()
                    end.record()
                    end.synchronize()
                    ms = start.elapsed_time(end)
                else:
                    t0 = time.perf_counter()
                    run()
                    ms = (time.perf_counter() - t0) * 1000
                if i >= warmup:
                    times.append(ms)
        result.append(statistics.median(times))
    return result[0], result[1]


def report(label: str, times: dict[str, list[float]], tflop: float) -> dict:
    p50, p95 = statistics.median(times["total"]), pct(times["total"], 95)
    denoise, decode = statistics.median(times["denoise"]), statistics.median(times["decode"])
    line = (f"{label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms per frame (denoise p50 {denoise:.1f}"
            f" + decode p50 {decode:.1f} ms; n={len(times['total'])}); "
            f"{tflop:.3f} TFLOP/frame -> {tflop / (p50 / 1000):.2f} TFLOP/s")
    print(line, flush=True)
    return {"label": label, "p50": p50, "p95": p95, "tflop_per_s": tflop / (p50 / 1000)}


def run_full(args, device: torch.device, dtype: torch.dtype, size: int, compile_mode: str | None, tmp: Path) -> dict:
    unet_tf, dec_tf = count_tflop(size)
    frame_tf = unet_tf + dec_tf
    t0 = time.perf_counter()
    g = full_generator(device, dtype, size, compile_mode, args.via_folder, tmp)
    print(f"  full model ready on {device} in {time.perf_counter() - t0:.1f} s: UNet {params_m(g.pipe.unet):.1f} M "
          f"params, TAESD decoder {params_m(g.vae.decoder):.2f} M params", flush=True)
    frames, warmup = frames_for(args, device, size)
    if compile_mode:
        t0 = time.perf_counter()
        g.warmup()
        print(f"  compiled ({compile_mode}) and warmed up in {time.perf_counter() - t0:.1f} s", flush=True)
    how = f"compiled {compile_mode}" if compile_mode else "eager"
    label = f"full SD-Turbo arch + TAESD, {size}x{size}, 1 step, {str(dtype).removeprefix('torch.')}, {how}"
    result = report(label, time_frames(g, frames, warmup), frame_tf)
    result.update(size=size, mode=how)
    if device.type == "cuda" or args.components:
        unet_ms, dec_ms = time_components(g, max(frames, 3), max(warmup, 1))
        print(f"  UNet forward alone p50 {unet_ms:.2f} ms ({unet_tf:.3f} TFLOP -> {unet_tf / unet_ms * 1000:.1f} "
              f"TFLOP/s); decoder alone p50 {dec_ms:.2f} ms ({dec_tf:.3f} TFLOP -> "
              f"{dec_tf / dec_ms * 1000:.1f} TFLOP/s); "
              f"rest (pipeline, scheduler, PIL) ~{result['p50'] - unet_ms - dec_ms:.2f} ms", flush=True)
        result.update(unet_ms=unet_ms, decoder_ms=dec_ms)
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB", flush=True)
    return result


def frames_for(args, device: torch.device, size: int) -> tuple[int, int]:
    if args.frames is not None:
        return args.frames, args.warmup if args.warmup is not None else 2
    if device.type == "cuda":
        return 50, args.warmup if args.warmup is not None else 10
    return (3, 1) if size <= 256 else (2, 1)


def run_compiled_child(args, mode: str, size: int) -> dict | None:
    """One compile mode in a child process, killed after ``--compile-timeout`` seconds."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "result.json"
        cmd = [sys.executable, __file__, "--role", "compiled", "--device", args.device, "--dtype", args.dtype,
               "--sizes", str(size), "--compile-mode", mode, "--result", str(out)]
        for flag, value in (("--frames", args.frames), ("--warmup", args.warmup)):
            if value is not None:
                cmd += [flag, str(value)]
        cmd += ["--via-folder"] if args.via_folder else []
        child = subprocess.Popen(cmd, start_new_session=True)  # (its own group: compile workers end with it)
        try:
            child.wait(timeout=args.compile_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            print(f"compiled {mode}: did not finish within --compile-timeout {args.compile_timeout:g} s; skipped",
                  flush=True)
            return None
        if not out.is_file():
            print(f"compiled {mode}: failed (see above); skipped", flush=True)
            return None
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="CUDA precision (the CPU runs fp32)")
    p.add_argument("--sizes", help="image sides for the full model (default: 256,512 on the CPU, 512 on CUDA)")
    p.add_argument("--frames", type=int, help="timed frames (default: CUDA 50; CPU 3 at 256, 2 at 512, tiny 20)")
    p.add_argument("--warmup", type=int, help="untimed frames first (default: CUDA 10, CPU 1, tiny 3)")
    p.add_argument("--skip-tiny", action="store_true", help="only the full architecture")
    p.add_argument("--skip-full", action="store_true", help="only the tiny model")
    p.add_argument("--via-folder", action="store_true",
                   help="save the random full model to a temporary folder and load it through load_generator")
    p.add_argument("--components", action="store_true", help="also time UNet and decoder alone on the CPU")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models (CUDA; child processes)")
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="comma-separated torch.compile modes (default %(default)s; e.g. default, "
                        "max-autotune-no-cudagraphs, max-autotune)")
    p.add_argument("--compile-timeout", type=float, default=300.0,
                   help="seconds per compile mode (default %(default)s)")
    p.add_argument("--role", default="main", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()

    from bci_dream.loading.compute_device import resolve_device

    device = resolve_device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype] if device.type == "cuda" else torch.float32
    sizes = [int(s) for s in (args.sizes or ("512" if device.type == "cuda" else "256,512")).split(",")]

    with tempfile.TemporaryDirectory(prefix="bci-dream-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.role == "compiled":  # child: one compile mode, one size
            result = run_full(args, device, dtype, sizes[0], args.compile_mode, tmp)
            Path(args.result).write_text(json.dumps(result))
            return

        import diffusers

        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"device {device} ({where}); torch {torch.__version__}, diffusers {diffusers.__version__}; "
              f"{str(dtype).removeprefix('torch.')}; SDPA attention, channels_last", flush=True)
        summary = []

        if not args.skip_tiny:
            from bci_dream.generation.generator import load_generator

            t0 = time.perf_counter()
            g = load_generator("tiny", device=str(device), dtype=args.dtype if device.type == "cuda" else None,
                               warmup=False, progress=False)
            print(f"tiny: built/loaded through load_generator('tiny') in {time.perf_counter() - t0:.1f} s "
                  f"(UNet {params_m(g.pipe.unet):.2f} M, decoder {params_m(g.vae.decoder):.3f} M params)", flush=True)
            frames = args.frames if args.frames is not None else 20
            warmup = args.warmup if args.warmup is not None else 3
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                g.generate(torch.zeros(1, 77, g.cross_attention_dim))
            r = report(f"tiny, {g.size}x{g.size}, 1 step", time_frames(g, frames, warmup),
                       counter.get_total_flops() / 1e12)
            summary.append(f"tiny {g.size}² p50 {r['p50']:.1f} ms")
            del g

        results = []
        if not args.skip_full:
            for size in sizes:
                results.append(run_full(args, device, dtype, size, None, tmp))
                summary.append(f"full {size}² eager p50 {results[-1]['p50']:.1f} ms "
                               f"({results[-1]['tflop_per_s']:.2f} TFLOP/s)")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if args.compile:
                for mode in [m.strip() for m in args.compile_mode.split(",") if m.strip()]:
                    for size in sizes:
                        r = run_compiled_child(args, mode, size)
                        if r is not None:
                            results.append(r)
                            summary.append(f"full {size}² compiled {mode} p50 {r['p50']:.1f} ms "
                                           f"({r['tflop_per_s']:.2f} TFLOP/s)")
                        else:
                            summary.append(f"full {size}² compiled {mode}: skipped")

        goal = ""
        at512 = [r for r in results if r["size"] == 512]
        if device.type == "cuda" and at512:
            best = min(at512, key=lambda r: r["p50"])
            goal = (f"; goal <= {GOAL_MS:g} ms/frame at 512²: {'met' if best['p50'] <= GOAL_MS else 'not met'} "
                    f"(best {best['p50']:.2f} ms, {best['mode']})")
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"SUMMARY generation_speed.py: {name} {str(dtype).removeprefix('torch.')}: {'; '.join(summary)}{goal}",
              flush=True)


if __name__ == "__main__":
    main()
