"""``bci-dream import-dreamdiffusion CKPT -o OUT``: DreamDiffusion's EEG encoder and heads → our checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.core.errors import BciDreamError

# DreamDiffusion's windows: 440 samples at 1 kHz stretched to 512 (kept in sync with
# bci_dream.models.dreamdiffusion_import.DEFAULT_SFREQ, which needs torch to import).
_DEFAULT_SFREQ = 1000.0 * 512 / 440


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-dreamdiffusion",
        help="convert DreamDiffusion's generation checkpoint (EEG encoder + heads) into a bci-dream checkpoint",
        description="Reads the EEG side (cond_stage_model.*) of DreamDiffusion's checkpoint.pth and writes a "
                    "bci-dream checkpoint folder. The result expects DreamDiffusion's 128-channel order and "
                    "sampling: fine-tune it on your own pairs before live use.")
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="DreamDiffusion's checkpoint.pth (or a state dict)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the bci-dream checkpoint")
    p.add_argument("--unsafe-load", action="store_true",
                   help="unpickle the whole file (runs code from it; the released file needs this because it "
                        "also holds a pickled config object). Only for files from a source you trust")
    p.add_argument("--sfreq", type=float, default=_DEFAULT_SFREQ, metavar="HZ",
                   help="sampling rate of the windows the model was trained on (default %(default).1f Hz: "
                        "DreamDiffusion's 20-460 ms at 1 kHz interpolated to 512 samples)")
    p.add_argument("--num-heads", type=int, default=16,
                   help="attention heads of the encoder (not stored in the weights; default %(default)s)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from bci_dream.models.dreamdiffusion_import import import_dreamdiffusion

    if not args.sfreq > 0:
        raise BciDreamError(f"--sfreq must be positive, got {args.sfreq:g}")
    report = import_dreamdiffusion(args.checkpoint, args.output, unsafe_load=args.unsafe_load,
                                   sfreq=args.sfreq, num_heads=args.num_heads)
    enc = report.config.encoder
    n_params = sum(p.numel() for p in report.model.parameters())
    print(f"imported {len(report.mapped)} tensors from {args.checkpoint}: encoder {enc.n_channels} ch x "
          f"{enc.n_samples} samples (patch {enc.patch_size}, width {enc.embed_dim}, depth {enc.depth}, "
          f"{enc.num_heads} heads), conditioning {report.config.out_tokens} x {report.config.cross_attention_dim}, "
          f"CLIP {report.config.clip_projection_dim}; {n_params / 1e6:.1f} M parameters", flush=True)
    if report.pos_embed_max_diff is not None:
        print(f"mae.pos_embed vs our sin-cos positions: max |diff| {report.pos_embed_max_diff:.2g}", flush=True)
    # report.warnings were logged already (unknown keys, differing positions)
    print("note: the MAE decoder is not in the generation checkpoint (left at init); windows must follow "
          f"DreamDiffusion's channel order and {enc.sfreq:g} Hz sampling — fine-tune before live use", flush=True)
    print(f"wrote {report.output}", flush=True)
    return 0
