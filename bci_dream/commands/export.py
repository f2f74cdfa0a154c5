"""``bci-dream export``: a recording to EDF, BDF or FIF, with its markers as annotations."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.commands.common import add_channel_args, naming_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a recording (.xdf or any format bci-dream reads) as EDF, BDF or FIF",
                       description="Markers become annotations; stretches where samples never arrived become "
                                   "BAD_gap annotations; channels keep their names (or get --channels ...).")
    p.add_argument("file", type=Path, help="the recording (.xdf, or any other format bci-dream reads)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the file to write: .edf, .bdf or .fif")
    p.add_argument("--stream", help="XDF: name or type of the EEG stream (default: type EEG, else the fastest)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    add_channel_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.io.export import export_format, export_recording  # (numpy and MNE)

    export_format(args.output)  # a format that cannot be written is said before the recording is read
    out = export_recording(args.file, args.output, stream=args.stream, naming=naming_from_args(args),
                           overwrite=args.overwrite)
    print(f"exported {args.file} to {out}", flush=True)
    return 0
