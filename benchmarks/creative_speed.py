"""What creative mode adds per window on the CPU: band-power features, steering, and the prompt blend.

For a 16-channel, 2-s window at 250 Hz (BrainFlow's synthetic board's shape), times over ``--windows`` windows:

- features: :class:`~bci_dream.signal.band_features.BandFeatureExtractor` (Welch in numpy, every band per channel
  group, asymmetry, engagement, artefact shares) + :class:`~bci_dream.signal.feature_tracker.FeatureTracker`
  (smoothing, z-scores);
- steering + blend: :meth:`Creative.apply <bci_dream.runtime.creative.Creative.apply>` as the engine calls it:
  the steering weights of two prompt rules and the anchor, the weighted sum of three cached prompt encodings
  [1, 77, 1024] (SD-Turbo's width) and the blend with the EEG's embedding, on the CPU;

goal: both together under 0.5 ms per window (issue 15). Median and p95 in ms; one process, one thread.

    python benchmarks/creative_speed.py [--windows 2000] [--channels 16] [--width 1024]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=2000)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--width", type=int, default=1024, help="prompt-embedding width (SD-Turbo 1024, SDXL 2048)")
    args = p.parse_args()

    from bci_dream.generation.text_prompt import TextConditioning
    from bci_dream.runtime.creative import Creative, CreativeSettings
    from bci_dream.runtime.steering import parse_rule
    from bci_dream.signal.band_features import BandFeatureExtractor
    from bci_dream.signal.feature_tracker import FeatureTracker

    torch.set_num_threads(1)
    names = ["Fz", "C3", "Cz", "C4", "Pz", "PO7", "Oz", "PO8", "F5", "F7", "F3", "F1", "F2", "F4", "F6", "F8",
             *(f"EXG{i}" for i in range(max(0, args.channels - 16)))][:args.channels]
    rng = np.random.default_rng(0)
    windows = rng.normal(0, 10, (64, args.channels, 500))
    extractor, tracker = BandFeatureExtractor(250.0, names, 500), FeatureTracker()

    class Encodings:  # (the generator's cached prompt encodings: random here, the shape of SD-Turbo's)
        device = torch.device("cpu")

        def encode_texts(self, prompts):
            return [TextConditioning(p, torch.randn(1, 77, args.width)) for p in prompts]

    class Monitor:  # (FeatureMonitor's interface: the features of the window just computed)
        latest = None

        def add_listener(self, listener):
            pass

    monitor = Monitor()
    creative = Creative(Encodings(), CreativeSettings(prompt="a red cat", eeg_influence=0.5, rules=(
        parse_rule("alpha=calm ocean at dusk"), parse_rule("beta=busy city at noon"))), monitor=monitor)
    eeg = torch.randn(1, 77, args.width)
    features_ms, blend_ms = [], []
    for i in range(args.windows + 50):
        t0 = time.perf_counter()
        monitor.latest = tracker.update(extractor(windows[i % len(windows)]), i * 0.25)
        t1 = time.perf_counter()
        creative.apply(eeg, i * 0.25)
        t2 = time.perf_counter()
        if i >= 50:  # (warm-up)
            features_ms.append((t1 - t0) * 1000)
            blend_ms.append((t2 - t1) * 1000)
    total = [a + b for a, b in zip(features_ms, blend_ms)]
    print(f"{args.channels} channels, 2-s windows at 250 Hz, {args.windows} windows; prompt width {args.width}, "
          "3 prompts; CPU, 1 thread", flush=True)
    print(f"features + tracker: median {statistics.median(features_ms):.3f} ms, p95 {pct(features_ms, 95):.3f} ms",
          flush=True)
    print(f"steering + blend:   median {statistics.median(blend_ms):.3f} ms, p95 {pct(blend_ms, 95):.3f} ms",
          flush=True)
    print(f"SUMMARY creative_speed.py: {statistics.median(total):.3f} ms per window (median; p95 "
          f"{pct(total, 95):.3f} ms; goal < 0.5 ms)", flush=True)


if __name__ == "__main__":
    main()
