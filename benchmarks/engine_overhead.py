"""The engine's overhead over calling the models directly, and end-to-end time from window to image.

For the same windows, alternately:

- engine: ``Engine.process(window)`` — normalisation, the PromptEncoder (encoder + conditioning head; a
  CUDA graph on CUDA), the similarity gate, ``Generator.generate`` (the diffusers pipeline with
  ``prompt_embeds``, the decoder, the PIL image), the frame record and a listener;
- direct: the same normalised window through the same PromptEncoder, then the UNet called once, the
  one-step Euler update written out by hand, the decoder, and the same conversion to a PIL image: the
  least code that makes the same image (checked: both give the same pixels).

Reported: p50 / p95 milliseconds of each, the ratio of the medians (goal: at most 1.05), and the
engine's p50 / p95 as the end-to-end time from a window being ready to its image (goal on an H100:
at most 20 ms at 512², SD-Turbo architecture). Random weights; nothing is downloaded.

    python benchmarks/engine_overhead.py                                  # CPU: tiny model, small encoder
    python benchmarks/engine_overhead.py --model full --size 256          # CPU: SD-Turbo architecture
    python benchmarks/engine_overhead.py --device cuda --model full --preset dreamdiffusion [--compile MODE]
    python benchmarks/engine_overhead.py --device cuda --model full --preset dreamdiffusion --backend graph
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def make_generator(args, device: torch.device):
    from bci_dream.generation.generator import Generator, load_generator, prepare_pipeline

    if args.model == "tiny":
        return load_generator("tiny", device=str(device), size=args.size, warmup=False, progress=False,
                              compile=args.compile or False)
    from generation_speed import build_full_pipeline

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype] if device.type == "cuda" else torch.float32
    pipe = build_full_pipeline(device, dtype)
    prepare_pipeline(pipe, compile=args.compile or False)
    return Generator(pipe, model_id="sd-turbo-architecture (random weights)", size=args.size or 512, steps=1)


class Direct:
    """Encoder, UNet and decoder called by hand on the generator's own latents and models."""

    def __init__(self, engine) -> None:
        g = engine.generator
        self.encoder, self.g = engine.encoder, g
        sched = g.pipe.scheduler
        sched.set_timesteps(1, device=g.device)
        self.t = sched.timesteps[0]
        sigma = float(sched.sigmas[0])
        self.sample = (g._latents.float() * float(sched.init_noise_sigma))
        self.unet_in = (self.sample / (sigma ** 2 + 1) ** 0.5).to(g.dtype)
        self.sigma = sigma

    @torch.inference_mode()
    def __call__(self, window):
        from PIL import Image

        from bci_dream.signal.normalize import normalize_window

        g = self.g
        embeds = self.encoder(normalize_window(window.data, window.mask), window.mask).to(g.dtype)
        eps = g.pipe.unet(self.unet_in, self.t, encoder_hidden_states=embeds, return_dict=False)[0]
        latents = (self.sample - self.sigma * eps.float()) / g._scale + g._shift  # (the vae's scaling)
        latents = latents.to(g._vae_dtype)
        image = g.vae.decode(latents, return_dict=False)[0]
        pixels = (image[0].float() * 127.5 + 128.0).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        g._host.copy_(pixels)
        return Image.fromarray(g._host.numpy())


def windows(n: int, channels: int, samples: int, sfreq: float):
    from bci_dream.signal.windower import Window

    rng = np.random.default_rng(0)
    mask = np.zeros(channels, bool)
    mask[:16] = True
    out = []
    for i in range(n):
        data = np.where(mask[:, None], rng.standard_normal((channels, samples)) * 20, 0).astype(np.float32)
        out.append(Window(data=data, mask=mask, t_end=0.0, sfreq=sfreq, index_end=samples * (i + 1),
                          ch_names=tuple(f"c{k}" for k in range(channels))))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", choices=["tiny", "full"], help="default: full on CUDA, tiny on the CPU")
    p.add_argument("--size", type=int, help="image side (default: the model's; 256 for full on the CPU)")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="CUDA precision of the diffusion model")
    p.add_argument("--preset", default="small", help="EEG encoder preset (small, dreamdiffusion, tiny)")
    p.add_argument("--compile", help="torch.compile mode for UNet and decoder (e.g. reduce-overhead)")
    p.add_argument("--backend", default="eager", help="the engine's generation back end (eager, graph, int8, fp8...); "
                   "the direct path stays eager")
    p.add_argument("--frames", type=int, help="timed windows per path (default: CUDA 100, CPU 30 tiny / 4 full)")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()

    from pylsl import local_clock

    from bci_dream.acquisition.live import LiveStream
    from bci_dream.acquisition.xdf_replay import XdfReplaySource
    from bci_dream.generation.session_models import eeg_model_for
    from bci_dream.io.xdf_writer import XdfWriter
    from bci_dream.loading.compute_device import resolve_device
    from bci_dream.runtime.engine import Engine

    device = resolve_device(args.device)
    args.model = args.model or ("full" if device.type == "cuda" else "tiny")
    if args.model == "full" and device.type == "cpu" and args.size is None:
        args.size = 256
    frames = args.frames or (100 if device.type == "cuda" else 30 if args.model == "tiny" else 4)

    t0 = time.perf_counter()
    g = make_generator(args, device)
    if args.backend != "eager":
        from bci_dream.generation.backends import choose_backend
        from bci_dream.generation.generator import apply_backend

        chosen, fallback = choose_backend(args.backend, device)
        if fallback:
            print(fallback, flush=True)
        if chosen != "eager":
            apply_backend(g, chosen)
    model, _ = eeg_model_for(g.cross_attention_dim, None, preset_name=args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "source.xdf"  # (the engine needs a stream to hold a windower; process() is fed directly)
        with XdfWriter(path) as w:
            sid = w.add_stream("EEG", "EEG", 2, 250.0, channel_labels=["Fz", "Cz"])
            w.write_samples(sid, np.zeros((10, 2), np.float32), np.arange(10) / 250.0)
        live = LiveStream(XdfReplaySource(path, speed=0))
        live.open()
        engine = Engine(live, model, g, similarity_threshold=1.1, device=g.device)
    received = []
    engine.add_listener(lambda frame: received.append(frame.record.index))  # as the frame writer or the GUI would
    direct = Direct(engine)
    enc = model.config.encoder
    ws = windows(8, enc.n_channels, enc.n_samples, enc.sfreq)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}); torch {torch.__version__}; model {args.model} {g.size}x{g.size} "
          f"{str(g.dtype).removeprefix('torch.')}{', compiled ' + args.compile if args.compile else ''}, "
          f"back end {g.backend}; "
          f"EEG encoder '{args.preset}' ({'CUDA graph' if engine.encoder.graphed else 'eager'}); "
          f"ready in {time.perf_counter() - t0:.1f} s", flush=True)

    a = engine.process(ws[0])[0].image
    b = direct(ws[0])
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()
    print(f"same image from both paths: max pixel difference {diff}", flush=True)

    timing = {"engine": [], "direct": []}
    latency = []
    for i in range(args.warmup + frames):
        w = ws[i % len(ws)]
        for name in ("engine", "direct") if i % 2 else ("direct", "engine"):  # alternate which goes first
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            w = dataclasses.replace(w, t_end=local_clock())  # the window's last sample: now
            start = time.perf_counter()
            out = engine.process(w) if name == "engine" else direct(w)
            ms = (time.perf_counter() - start) * 1000
            if i >= args.warmup:
                timing[name].append(ms)
                if name == "engine":
                    latency.append(out[-1].record.latency_ms)
    e50, d50 = statistics.median(timing["engine"]), statistics.median(timing["direct"])
    d95, e95 = pct(timing["direct"], 95), pct(timing["engine"], 95)
    print(f"direct (encoder + UNet + Euler step + decoder + PIL): p50 {d50:.2f} ms, p95 {d95:.2f} ms", flush=True)
    print(f"engine.process:                                         p50 {e50:.2f} ms, p95 {e95:.2f} ms"
          f" (n={frames}; frame record latency p50 {statistics.median(latency):.2f} ms)", flush=True)
    print(f"SUMMARY engine_overhead.py: {where}, {args.model} {g.size}², encoder {args.preset}, "
          f"{'compiled ' + args.compile + ', ' if args.compile else ''}back end {g.backend}: engine/direct = "
          f"{e50 / d50:.3f} "
          f"(goal <= 1.05); end-to-end window -> image p50 {e50:.2f} ms, p95 {pct(timing['engine'], 95):.2f} ms",
          flush=True)


if __name__ == "__main__":
    main()
