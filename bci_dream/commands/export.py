"""``bci-dream export``: a recording to EDF, BDF or FIF, with its markers as annotations; a calibration session to
EEG-BIDS."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.commands.common import add_channel_args, naming_from_args
from bci_dream.core.errors import BciDreamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a recording (.xdf or any format bci-dream reads) as EDF, BDF or FIF, "
                                      "or a calibration session as EEG-BIDS",
                       description="Markers become annotations; stretches where samples never arrived become "
                                   "BAD_gap annotations; channels keep their names (or get --channels ...). With "
                                   "--bids ROOT, FILE is a calibration session folder (SUBJECT/sessions/<started>): "
                                   "each recording part becomes a BIDS run (EDF), its trials events with their "
                                   "class, marker and image (stim_file), the images are copied to ROOT/stimuli.")
    p.add_argument("file", type=Path, help="the recording (.xdf, or any other format bci-dream reads), or with "
                                           "--bids a calibration session folder")
    p.add_argument("-o", "--output", type=Path, help="the file to write: .edf, .bdf or .fif")
    p.add_argument("--bids", type=Path, metavar="ROOT", help="write the calibration session FILE as EEG-BIDS under ROOT")
    p.add_argument("--subject", help="--bids: the subject label (default: the session's subject, letters and digits)")
    p.add_argument("--task", default="calibration", help="--bids: the task label (default: calibration)")
    p.add_argument("--stream", help="XDF: name or type of the EEG stream (default: type EEG, else the fastest)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    add_channel_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.bids is None) == (args.output is None):
        raise BciDreamError("give -o OUT.edf|.bdf|.fif to export a recording, or --bids ROOT to export a calibration "
                            "session folder")
    if args.bids is not None:
        return _run_bids(args)
    from bci_dream.io.export import export_format, export_recording  # (numpy and MNE)

    export_format(args.output)  # a format that cannot be written is said before the recording is read
    out = export_recording(args.file, args.output, stream=args.stream, naming=naming_from_args(args),
                           overwrite=args.overwrite)
    print(f"exported {args.file} to {out}", flush=True)
    return 0


def _run_bids(args: argparse.Namespace) -> int:
    from bci_dream.calibrate.bids import export_session_bids  # (numpy, MNE and mne-bids)

    if not args.file.is_dir():
        raise BciDreamError(f"--bids exports a calibration session folder (SUBJECT/sessions/<started>); {args.file} "
                            "is not a folder (export a single recording with -o OUT.edf)")
    written = export_session_bids(args.file, args.bids, subject=args.subject, task=args.task,
                                  naming=naming_from_args(args), overwrite=args.overwrite)
    print(f"exported {len(written)} run{'s' if len(written) != 1 else ''} of {args.file} to the BIDS dataset "
          f"{args.bids}:", flush=True)
    for path in written:
        print(f"  {path}", flush=True)
    return 0
