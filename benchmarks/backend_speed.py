"""Generation back ends side by side (issue 17): ms per frame of each ``--backend`` on both routes, checked against
eager, with peak memory, and interpolation frames batched against one call each.

Models (random weights, nothing downloaded): ``tiny`` (the registry's preview models, loaded the real way) or
``full`` (the SD-Turbo architecture + TAESD for the DreamDiffusion route, SDXL-Turbo + a random IP-Adapter SDXL for
the IP-Adapter route; :mod:`route_speed` builds them). Each back end gets its own copy of the UNet and decoder
(int8 / fp8 quantize in place; compile and tensorrt compile). A back end that cannot run here is reported with the
reason and skipped.

Per back end and route: p50 / p95 of whole frames (embedding on the device → PIL image, the GPU waited for), the
largest pixel difference of its first frame from eager (0-255), peak GPU memory; on the DreamDiffusion route also
``--batch`` interpolation frames in one ``generate_batch`` call against as many ``generate`` calls (ms per frame).

    python benchmarks/backend_speed.py --models tiny                        # the CPU: eager, graph, int8
    python benchmarks/backend_speed.py --device cuda --models full --size 512
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def base_generator(model: str, route: str, device: torch.device, dtype: torch.dtype, size: int, work: Path):
    """The eager generator of ``route`` (built when its route comes: the SDXL architecture takes a while)."""
    from bci_dream.generation.generator import DTYPES, Generator, load_generator, prepare_pipeline

    if model == "tiny":
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        name = next(k for k, v in DTYPES.items() if v == dtype)
        return load_generator("tiny" if route == "dreamdiffusion" else "tiny-sdxl-ip", device=str(device), size=size,
                              dtype=name, warmup=False, progress=False)
    from generation_speed import build_full_pipeline  # (the benchmarks beside this one build the architectures)
    from route_speed import build_full_sdxl_ip

    t0 = time.perf_counter()
    if route == "dreamdiffusion":
        g = Generator(prepare_pipeline(build_full_pipeline(device, dtype)), model_id="sd-turbo-architecture", size=size)
    else:
        g = Generator(prepare_pipeline(build_full_sdxl_ip(work / "sdxl", device, dtype)),
                      model_id="sdxl-turbo-ip-architecture", size=size)
    print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
    return g


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def frame(g, route: str, i: int) -> None:
    gen = torch.Generator().manual_seed(i)
    if route == "ip-adapter":
        g.generate_from_image_embeds(torch.randn(g.image_embed_dim, generator=gen).to(g.device))
    else:
        g.generate(torch.randn(1, 77, g.cross_attention_dim, generator=gen).to(g.device))


def timed(fn, n: int, device: torch.device) -> list[float]:
    times = []
    for i in range(n):
        sync(device)
        t0 = time.perf_counter()
        fn(i)
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def fresh(base, backend: str):
    """A generator over a copy of ``base``'s UNet and decoder (the back ends change them in place)."""
    from bci_dream.generation.generator import Generator

    pipe = copy.copy(base.pipe)
    pipe.unet, pipe.vae = copy.deepcopy(base.pipe.unet), copy.deepcopy(base.pipe.vae)
    g = Generator(pipe, model_id=base.model_id, size=base.size, steps=base.steps, guidance=base.guidance)
    g.set_text(base.text)
    return g


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny", choices=["tiny", "full"])
    p.add_argument("--routes", default="dreamdiffusion,ip-adapter")
    p.add_argument("--backends", default="eager,graph,int8,fp8,compile,tensorrt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="fp16 / bf16 / fp32 (default fp16 on CUDA, fp32 on the CPU)")
    p.add_argument("--size", type=int, default=None, help="image side (default 512 for full, 256 for tiny)")
    p.add_argument("--frames", type=int, default=None, help="timed frames (default: CUDA 50, CPU 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed frames (default: CUDA 5, CPU 1)")
    p.add_argument("--batch", type=int, default=4, help="interpolation frames per batched call")
    args = p.parse_args()

    from bci_dream.generation.backends import choose_backend
    from bci_dream.generation.generator import DTYPES, apply_backend

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if cuda else torch.float32)
    size = args.size or (512 if args.models == "full" else 256)
    frames = args.frames or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if cuda:
        print(torch.cuda.get_device_name(device), "torch", torch.__version__, flush=True)
    work = Path(tempfile.mkdtemp(prefix="backend-speed-"))
    summary = []
    for route in args.routes.split(","):
        print(f"{route}: {args.models} {size}x{size} {str(dtype).removeprefix('torch.')}", flush=True)
        base = base_generator(args.models, route, device, dtype, size, work)
        eager_p50 = None
        for name in args.backends.split(","):
            chosen, fallback = choose_backend(name, device)
            if chosen != name:
                print(f"  {name:9s} skipped: {fallback}", flush=True)
                continue
            g = base if name == "eager" else fresh(base, name)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            if name != "eager":
                apply_backend(g, name)
                if g.backend != name:
                    print(f"  {name:9s} fell back to {g.backend} (see the log line above)", flush=True)
                    continue
            timed(lambda i: frame(g, route, i), warmup, device)
            ready = time.perf_counter() - t0
            times = timed(lambda i: frame(g, route, 100 + i), frames, device)
            p50 = statistics.median(times)
            eager_p50 = p50 if name == "eager" else eager_p50
            peak = f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if cuda else ""
            difference = "reference" if name == "eager" else f"largest pixel difference {g.backend_difference}"
            ratio = f", {eager_p50 / p50:.2f}x eager" if eager_p50 and name != "eager" else ""
            line = (f"{name:9s} p50 {p50:.2f} ms, p95 {pct(times, 0.95):.2f} ms per frame{ratio}; {difference}"
                    f"{peak}; ready in {ready:.1f} s")
            if route == "dreamdiffusion" and args.batch > 1:
                embeds = torch.randn(args.batch, 77, g.cross_attention_dim).to(device)
                one = statistics.median(timed(lambda i: [g.generate(embeds[k:k + 1]) for k in range(args.batch)],
                                              max(2, frames // args.batch), device)) / args.batch
                g.generate_batch(embeds)
                many = statistics.median(timed(lambda i: g.generate_batch(embeds), max(2, frames // args.batch),
                                               device)) / args.batch
                line += f"; {args.batch} interpolation frames: {many:.2f} ms each batched, {one:.2f} one by one"
            print("  " + line, flush=True)
            summary.append(f"{route} {name} p50 {p50:.2f} ms")
            if g is not base:
                del g
                if cuda:
                    torch.cuda.empty_cache()
        del base
    print("SUMMARY backend_speed.py: " + "; ".join(summary), flush=True)


if __name__ == "__main__":
    main()
