"""``bci-dream dataset build`` and ``bci-dream dataset info``: the window store that pretraining streams from."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bci_dream.commands.common import add_channel_args, naming_from_args
from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.models.encoder_config import PRESETS, preset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="build or describe a window store for corpus-scale pretraining",
                       description="Preprocess recordings once into a window store (float16 safetensors shards and "
                                   "a manifest) that 'bci-dream pretrain --store' streams from.")
    commands = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    b = commands.add_parser("build", help="add recordings to a store (resumes a killed build)",
                            description="Cut every window of the recordings with the live path's preprocessing, in "
                                        "parallel worker processes. Sources already in the store are not built "
                                        "again; unreadable ones are skipped and listed.")
    b.add_argument("data", nargs="*", type=str,
                   help="recordings, folders, globs ('data/**/*.edf') or BIDS dataset roots")
    b.add_argument("-o", "--output", type=Path, required=True, help="the store folder (created or extended)")
    b.add_argument("--moabb", default="", metavar="NAMES",
                   help="MOABB datasets by name, comma-separated (MOABB downloads them on this machine)")
    b.add_argument("--moabb-subjects", default="", metavar="N,N", help="only these subjects of the MOABB datasets")
    b.add_argument("--subject-pattern", metavar="REGEX",
                   help="a regular expression with groups (?P<subject>...) and (?P<session>...) matched against "
                        "the paths, for trees that are neither BIDS nor TUH")
    b.add_argument("--preset", default="small", choices=tuple(PRESETS), help="the encoder the windows are for")
    b.add_argument("--hop", type=float, default=1.0, help="seconds between windows")
    b.add_argument("--notch", type=float, default=defaults.NOTCH_HZ, help="line-noise notch in Hz (0: none)")
    b.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per core)")
    add_channel_args(b)
    b.set_defaults(func=run_build)
    i = commands.add_parser("info", help="summarise a store")
    i.add_argument("store", type=Path)
    i.set_defaults(func=run_info)


def run_build(args: argparse.Namespace) -> int:
    from bci_dream.io.readers import SUPPORTED
    from bci_dream.training.corpus_sources import file_items, moabb_items
    from bci_dream.training.store_build import build_store
    from bci_dream.training.windows import WindowSpec

    if not args.data and not args.moabb:
        raise BciDreamError("give recordings, folders, globs or BIDS roots, or --moabb NAMES")
    try:
        subjects = [int(s) for s in args.moabb_subjects.split(",") if s.strip()] or None
    except ValueError as e:
        raise BciDreamError(f"--moabb-subjects takes numbers, not {args.moabb_subjects!r}") from e
    items = file_items(args.data, args.subject_pattern) if args.data else []
    items += moabb_items([n.strip() for n in args.moabb.split(",") if n.strip()], subjects)
    if not items:
        where = ", ".join(map(str, args.data)) or args.moabb
        raise BciDreamError(f"no recordings found in {where}; give recording files or the folders that hold them "
                            f"({SUPPORTED})")
    config = preset(args.preset)
    spec = WindowSpec(window_s=config.window_seconds, target_sfreq=config.sfreq, notch=args.notch or None)
    report = build_store(items, args.output, spec, args.hop, jobs=max(1, args.jobs), naming=naming_from_args(args))
    print(report.summary())
    print(report.store.summary())
    if report.built + report.reused == 0:
        raise BciDreamError(f"none of the {len(report.skipped)} recording(s) could be built into {args.output} "
                            "(each reason is above); fix or leave them out and build again")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from bci_dream.training.window_store import WindowStore

    print(WindowStore.open(args.store).summary())
    return 0
