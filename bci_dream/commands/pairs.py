"""``bci-dream make-pairs``: an EEG–image pairs manifest from a recording's category markers."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-pairs", help="write an EEG-image pairs manifest from the markers of a recording",
        description="One row per occurrence of each given marker text, with the image shown: the one its "
                    "'stim:<class>/<file>' marker names (the calibration wizard logs them), from that class's "
                    "folder. For logs that record only the category shown, --round-robin pairs each trial with "
                    "an image of its class in turn (a seeded shuffle). The manifest (CSV: "
                    "recording,onset,marker,image,class) is what 'bci-dream finetune --pairs' reads.")
    p.add_argument("recording", type=Path, help="the recording with the stimulus markers")
    p.add_argument("--class", dest="classes", action="append", required=True, metavar="MARKER=FOLDER",
                   help="marker text and the folder of images of that class (repeat for each class)")
    p.add_argument("--label", dest="labels", action="append", default=[], metavar="MARKER=NAME",
                   help="class name for a marker (default: the folder's name)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the manifest to write (.csv)")
    add_round_robin_arg(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the --round-robin shuffle")
    p.set_defaults(func=run)


def add_round_robin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--round-robin", action="store_true",
                   help="trials whose log names no image get an image of their class in turn (their CLIP targets "
                        "are then guesses; a warning counts them)")


def parse_pairs_arg(values: list[str], option: str) -> dict[str, str]:
    from bci_dream.training.pairs import PairsError

    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise PairsError(f"{option} {v!r} must look like MARKER=VALUE (e.g. {option} 2=faces)")
        if key in out:
            raise PairsError(f"{option} {key}=... is given twice")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from bci_dream.io.readers import read_recording
    from bci_dream.training.pairs import make_pairs, write_pairs

    classes = parse_pairs_arg(args.classes, "--class")
    labels = parse_pairs_arg(args.labels, "--label")
    recording = read_recording(args.recording)
    pairs = make_pairs(recording, {k: Path(v) for k, v in classes.items()}, labels, seed=args.seed,
                       round_robin=args.round_robin)
    write_pairs(args.output, pairs)
    counts = Counter(p.label for p in pairs)
    images = len({p.image for p in pairs})
    print(f"wrote {len(pairs)} pairs ({', '.join(f'{n} {label}' for label, n in counts.items())}; "
          f"{images} distinct images) to {args.output}")
    return 0
