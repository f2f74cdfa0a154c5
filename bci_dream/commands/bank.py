"""``bci-dream bank``: an image bank for the CLIP-embedding routes, built once from a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.commands.common import EXIT_OK, add_compute_device_arg
from bci_dream.core import defaults


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bank", help="embed a folder of images with CLIP into an image bank (.safetensors)",
        description="Every image under FOLDER (recursively) is embedded with the CLIP vision model the EEG model's "
                    "CLIP head is trained against; the bank (embeddings, the CLIP model, the images' paths) is what "
                    "'--bank' takes: the ip-adapter route pulls its embedding towards the bank, and '--route "
                    "retrieval' shows the nearest bank image.")
    p.add_argument("folder", type=Path, help="the images (e.g. the calibration stimuli)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the bank to write (.safetensors)")
    p.add_argument("--clip-model", default=defaults.CLIP_MODEL, metavar="MODEL",
                   help="CLIPVisionModelWithProjection (hub id or folder; default %(default)s)")
    add_compute_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.generation.image_bank import BANK_SUFFIX, ImageBankError, build_bank
    from bci_dream.loading.compute_device import resolve_device

    if args.output.suffix != BANK_SUFFIX:
        raise ImageBankError(f"the bank is written as {BANK_SUFFIX}: name it like {args.output.stem}{BANK_SUFFIX}")
    bank = build_bank(args.folder, args.clip_model, device=str(resolve_device(args.gpu)))
    bank.save(args.output)
    print(f"image bank: {len(bank)} images from {args.folder}, width {bank.width} ({args.clip_model}) → "
          f"{args.output}", flush=True)
    return EXIT_OK
