"""Fine-tuning speed on the CPU: set-up time and seconds per 100 steps, per encoder size and path.

The data is the known-answer set of ``known_answer.py`` (real background EEG, injected responses) with 400 trials;
the diffusion model and CLIP are the tiny random-weight models in their real formats (the heads-only path never runs
the UNet, so its size does not matter there). Rows, for the tiny, small and full-size (DreamDiffusion, 152 M)
encoders, all ``--diffusion-weight 0``: the heads only with nothing in front of them learning (the encoder's tokens
are computed once and cached), the heads with the per-subject channel adapter (calibration's default: the frozen
encoder runs every step), and the heads with the encoder trained; then the tiny encoder with the diffusion loss (the
tiny UNet, ``inference`` objective).

    python benchmarks/finetune_speed.py [--steps 20] [--batch-size 16] [--presets tiny small dreamdiffusion] [--epoch 1]

Windows are calibration's stimulus-locked epochs (``--epoch`` seconds, the encoder resized to them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from known_answer import BACKGROUND, ROOT, make_session  # noqa: E402

from bci_dream.generation.tiny import build_tiny_clip_vision, build_tiny_sd_turbo  # noqa: E402
from bci_dream.io.readers import read_recording  # noqa: E402
from bci_dream.training.finetune import Finetuner  # noqa: E402
from bci_dream.training.settings import FinetuneSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("BCI_DREAM_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--steps", type=int, default=20, help="steps timed per row")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "dreamdiffusion"])
    parser.add_argument("--epoch", type=float, default=FinetuneSettings.epoch_s, help="epoch length in seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="finetune-speed-"))
    manifest = make_session(read_recording(args.data / BACKGROUND), work, 4.0, 80, 0)
    sd, clip = build_tiny_sd_turbo(work / "sd", seed=0), build_tiny_clip_vision(work / "clip", seed=0)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}; 400 trials, batch {args.batch_size}, "
          f"{args.steps} steps timed per row, {args.epoch:g}-s epochs")
    print(f"{'encoder':>15} {'path':>32} {'set-up s':>9} {'s / 100 steps':>14}")
    rows = [(p, "heads only, input side frozen", dict(diffusion_weight=0.0, train_encoder=False,
                                                       channel_adapter=False)) for p in args.presets]
    rows += [(p, "heads + channel adapter", dict(diffusion_weight=0.0, train_encoder=False)) for p in args.presets]
    rows += [(p, "heads only, encoder trained", dict(diffusion_weight=0.0, train_encoder=True)) for p in args.presets]
    rows.append(("tiny", "+ diffusion loss (tiny UNet)", dict(diffusion_weight=1.0, train_encoder=False)))
    for preset, path, options in rows:
        settings = FinetuneSettings(model=str(sd), clip_model=str(clip), preset=preset, max_steps=args.steps,
                                    batch_size=args.batch_size, resolution=64, device="cpu", val_fraction=0.0,
                                    checkpoint_every=10_000, eval_every=10_000, epoch_s=args.epoch, **options)
        started = time.perf_counter()
        run = Finetuner(manifest, work / f"{preset}-{len(path)}", settings)
        setup = time.perf_counter() - started
        run.train(progress=False)
        per_100 = (time.perf_counter() - started - setup) / args.steps * 100
        print(f"{preset:>15} {path:>32} {setup:9.1f} {per_100:14.1f}", flush=True)


if __name__ == "__main__":
    main()
