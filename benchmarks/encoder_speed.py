"""EEG encoder speed: inference per window and pretraining throughput, for the 'small' and 'dreamdiffusion' presets.

Inference: one window [1, 128, 512] through encoder + conditioning head (prompt_embeds [1, 77, 1024]); float32 on
the CPU (threads = cores). On CUDA three ways: bf16 autocast over float32 weights, eager; bf16 weights through the
engine's PromptEncoder, eager; and the PromptEncoder replaying a CUDA graph, as the live engine runs it (its time
includes copying the window from host memory and back). Pretraining: windows per second of forward + backward +
AdamW at mask ratio 0.75 (bf16 autocast on CUDA). Runs unchanged on any CUDA machine.

    python benchmarks/encoder_speed.py [--presets small dreamdiffusion] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bci_dream.models.eeg_model import EegModel, EegModelConfig
from bci_dream.models.encoder_config import preset


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_inference(model: EegModel, device: torch.device, repeats: int) -> list[float]:
    x = torch.randn(1, 128, 512, device=device)
    mask = torch.ones(1, 128, device=device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(repeats + 5):
            sync(device)
            t = time.perf_counter()
            model.prompt_embeds(x, mask)
            sync(device)
            if i >= 5:
                times.append((time.perf_counter() - t) * 1000)
    return times


def time_prompt_encoder(model: EegModel, device: torch.device, repeats: int, graph: bool) -> list[float]:
    """The engine's path: a host window [128, 512] in, prompt_embeds on the device out (synchronised)."""
    import copy

    import numpy as np

    from bci_dream.models.prompt_encoder import PromptEncoder

    encoder = PromptEncoder(copy.deepcopy(model), device, cuda_graph=graph)
    assert encoder.graphed == graph, "CUDA graph capture failed (see the warning above)"
    window, mask = np.random.default_rng(0).standard_normal((128, 512)).astype(np.float32), np.ones(128, bool)
    times = []
    for i in range(repeats + 5):
        sync(device)
        t = time.perf_counter()
        out = encoder(window, mask)
        sync(device)
        if i >= 5:
            times.append((time.perf_counter() - t) * 1000)
    with torch.inference_mode():
        expected = copy.deepcopy(model).to(device, torch.bfloat16).eval().prompt_embeds(
            torch.from_numpy(window)[None].to(device, torch.bfloat16), torch.ones(1, 128, device=device,
                                                                                dtype=torch.bfloat16))
    assert torch.allclose(out.float(), expected.float(), atol=2e-2), "the graphed encoder disagrees with eager"
    return times


def time_pretraining(model: EegModel, device: torch.device, batch: int, steps: int) -> float:
    enc = model.encoder.train()
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-4, foreach=True)
    x = torch.randn(batch, 128, 512, device=device)
    mask = torch.ones(batch, 128, device=device)
    for i in range(steps + 2):
        if i == 2:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _, _ = enc(x, mask, 0.75)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "dreamdiffusion"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    print(f"device: {name}; torch {torch.__version__}; {'bf16 autocast' if device.type == 'cuda' else 'float32'}")
    for p in args.presets:
        model = EegModel(EegModelConfig(preset(p), cross_attention_dim=1024, clip_projection_dim=768)).to(device).eval()
        n = sum(q.numel() for q in model.encoder.encoder_parameters()) / 1e6
        repeats = args.repeats if p != "dreamdiffusion" or device.type == "cuda" else max(5, args.repeats // 5)
        times = time_inference(model, device, repeats)
        p50 = statistics.median(times)
        p95 = sorted(times)[int(0.95 * (len(times) - 1))]
        if device.type == "cuda":
            print(f"{p:>15}: inference, bf16 autocast, eager: p50 {p50:7.2f} ms, p95 {p95:7.2f} ms")
            for graph in (False, True):
                t = time_prompt_encoder(model, device, repeats, graph)
                print(f"{p:>15}: inference, PromptEncoder bf16 weights, {'CUDA graph' if graph else 'eager'}: "
                      f"p50 {statistics.median(t):7.2f} ms, p95 {sorted(t)[int(0.95 * (len(t) - 1))]:7.2f} ms")
        steps = args.train_steps if p != "dreamdiffusion" or device.type == "cuda" else 2
        batch = args.batch if p != "dreamdiffusion" or device.type == "cuda" else 8
        rate = time_pretraining(model, device, batch, steps)
        print(f"{p:>15}: {n:6.1f} M encoder parameters; inference per window p50 {p50:7.2f} ms, p95 {p95:7.2f} ms; "
              f"pretraining {rate:8.1f} windows/s (batch {batch})")


if __name__ == "__main__":
    main()
