"""``bci-dream evaluate``: n-way identification in CLIP space and DreamDiffusion's generated-image accuracy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bci_dream.commands.common import add_channel_args, add_compute_device_arg, naming_from_args
from bci_dream.core import defaults


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="n-way top-1 accuracies of an EEG model on EEG-image pairs",
        description="EEG->image identification: the EEG model's CLIP-space embedding of each pair's window must be "
                    "closer (cosine) to its image's CLIP embedding than to n-1 other images of the pairs. With "
                    "--generated, also DreamDiffusion's metric: a pretrained classifier labels each ground-truth "
                    "image; the generated image must give that class a higher probability than n-1 random other "
                    "classes. Generated images are read from DIR/{row:05d}.png, row = 0-based manifest row.")
    p.add_argument("--pairs", type=Path, required=True, metavar="MANIFEST",
                   help="pairs manifest (CSV: recording,onset,marker,image,class)")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="bci-dream checkpoint folder")
    p.add_argument("--generated", type=Path, metavar="DIR",
                   help="folder of generated images named {row:05d}.png after the manifest row (0-based)")
    p.add_argument("--classifier", default=defaults.CLASSIFIER, metavar="MODEL",
                   help="image classifier for --generated (hub id or local folder; default %(default)s)")
    p.add_argument("--clip-model", default=defaults.CLIP_MODEL, metavar="MODEL",
                   help="CLIPVisionModelWithProjection for identification (hub id or local folder; default "
                        "%(default)s); 'none' to skip identification")
    p.add_argument("--n-way", type=int, default=defaults.N_WAY, help="n of the n-way tests (default %(default)s)")
    p.add_argument("--trials", type=int, default=defaults.N_WAY_TRIALS, help="random draws of distractors per item (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the distractor draws")
    p.add_argument("--offset", type=float, metavar="S",
                   help="seconds from image onset to window start (default: the checkpoint's, as it was trained)")
    add_compute_device_arg(p, old_device_flag=True)
    add_channel_args(p)  # (default: the naming the checkpoint was trained with)
    p.add_argument("--bank", type=Path, metavar="FILE",
                   help="an image bank ('bci-dream bank') whose images are retrieval candidates too")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from bci_dream.training.evaluate import evaluate

    clip_model = None if str(args.clip_model).lower() == "none" else args.clip_model
    report = evaluate(args.pairs, args.checkpoint, generated=args.generated, classifier=args.classifier,
                      clip_model=clip_model, n_way=args.n_way, trials=args.trials, seed=args.seed,
                      offset_s=args.offset, device=args.gpu, naming=naming_from_args(args), bank=args.bank)
    for line in report.lines():
        print(line, flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {args.json}", flush=True)
    return 0
