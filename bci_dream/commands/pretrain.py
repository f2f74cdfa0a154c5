"""``bci-dream pretrain``: temporal masked-signal pretraining of the EEG encoder."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from bci_dream.commands.common import add_channel_args, naming_from_args
from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.models.encoder_config import PRESETS
from bci_dream.training.corpus_sources import expand_paths
from bci_dream.training.settings import PretrainSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain", help="pretrain the EEG encoder by masked signal modeling on any mix of recordings",
        description="Pretrain the EEG encoder on recordings (.xdf, FIF/EDF/BDF/BrainVision/EEGLAB/GDF, "
                    "OpenBCI GUI .txt, BrainFlow .csv, muselsl .csv). Unreadable files are skipped and "
                    "reported. Several GPUs or machines: start it with 'accelerate launch -m bci_dream.cli "
                    "pretrain ...' or 'torchrun --nproc-per-node N -m bci_dream.cli pretrain ...'.")
    p.add_argument("data", nargs="*", type=Path, help="recordings or folders of recordings (or --store)")
    p.add_argument("--store", type=Path, help="a window store ('bci-dream dataset build') to stream windows from")
    p.add_argument("--holdout-subjects", metavar="IDS|SHARE",
                   help="subjects of the store never trained on: ids (comma-separated) or a share (0.2)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes building the windows of DATA")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes reading the store")
    p.add_argument("--shuffle-buffer", type=int, default=4096, help="windows shuffled together")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint folder (resumed if it exists)")
    d = PretrainSettings
    p.add_argument("--preset", default=d.preset, choices=tuple(PRESETS), help="encoder size")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--mask-ratio", type=float, default=d.mask_ratio, help="share of time patches hidden")
    p.add_argument("--hop", type=float, default=d.hop_s, help="seconds between training windows")
    p.add_argument("--notch", type=float, default=d.notch, help="line-noise notch in Hz (0: none)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--holdout", nargs="*", type=Path, default=[],
                   help="recordings never trained on: report reconstruction error vs zero and interpolation")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--precision", choices=defaults.PRECISIONS, default=d.precision,
                   help="auto: bf16 autocast on CUDA and on CPUs with AVX-512 BF16 or AMX, float32 elsewhere")
    p.add_argument("--restart", action="store_true", help="overwrite a checkpoint in --output instead of resuming")
    add_channel_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.training.pretrain import pretrain

    if not 0.0 < args.mask_ratio < 1.0:
        raise BciDreamError(f"--mask-ratio must be between 0 and 1, not {args.mask_ratio}")
    if bool(args.data) == bool(args.store):
        raise BciDreamError("give recordings to pretrain on, or --store STORE (one of the two)")
    data, holdout = expand_paths(args.data), expand_paths(args.holdout)
    overlap = {p.resolve() for p in data} & {p.resolve() for p in holdout}
    data = [p for p in data if p.resolve() not in overlap]
    settings = PretrainSettings(preset=args.preset, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                                warmup_steps=min(args.warmup_steps, max(1, args.max_steps // 10)),
                                mask_ratio=args.mask_ratio, hop_s=args.hop, seed=args.seed,
                                checkpoint_every=args.checkpoint_every, notch=args.notch or None,
                                precision=args.precision)
    if args.store is not None:
        from bci_dream.training.window_store import WindowStore

        store = WindowStore.open(args.store)  # (the store's filters and hop, unless given otherwise)
        band = store.spec_dict.get("bandpass")
        settings = replace(settings, hop_s=store.hop_s, bandpass=tuple(band) if band else None,
                           notch=store.spec_dict.get("notch") if args.notch == PretrainSettings.notch
                           else args.notch or None)
    result = pretrain(data, args.output, settings, store=args.store, holdout=holdout,
                      holdout_subjects=args.holdout_subjects, restart=args.restart, naming=naming_from_args(args),
                      jobs=max(1, args.jobs), buffer=args.shuffle_buffer, workers=args.workers)
    if int(os.environ.get("RANK", "0")) != 0:  # (a process of a multi-process run: the first one reports)
        return 0
    print(f"pretrained '{args.preset}' for {result.steps} steps on {result.windows} windows; "
          f"final loss {result.final_loss:.4f}; checkpoint in {result.output}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} recordings:")
        for path, reason in result.skipped:
            print(f"  {path}: {reason}")
    if result.holdout is not None:
        h = result.holdout
        print(f"held-out masked-patch MSE on {h.windows} windows: model {h.model:.4f}, zeros {h.zeros:.4f}, "
              f"linear interpolation {h.interpolation:.4f}")
    if result.holdout_subjects is not None:
        subjects, h = result.holdout_subjects
        print(f"held-out subjects ({len(subjects)}: {', '.join(subjects[:8])}{' ...' if len(subjects) > 8 else ''}), "
              f"masked-patch MSE on {h.windows} windows: model {h.model:.4f}, zeros {h.zeros:.4f}, "
              f"linear interpolation {h.interpolation:.4f}")
    return 0
