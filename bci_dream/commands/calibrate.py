"""``bci-dream calibrate``: per-subject calibration (headless from a recorded session; the wizard comes later)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from bci_dream.commands.finetune import add_training_args

    p = sub.add_parser(
        "calibrate", help="fine-tune the EEG model for one subject from a calibration session",
        description="With --headless: from a recorded session, split its EEG-image trials into training and "
                    "held-out validation trials, fine-tune the per-subject parts, report n-way identification of "
                    "the held-out images in CLIP space against chance, draw held-out stimuli beside the images "
                    "generated from their EEG, and save the subject profile (use it with 'bci-dream app "
                    "--checkpoint SUBJECT_FOLDER'). Running it again resumes an interrupted fine-tuning.")
    p.add_argument("--subject", required=True, help="subject id (letters, digits, '_', '-', '.')")
    p.add_argument("--headless", action="store_true", help="no wizard: calibrate from --recording")
    p.add_argument("--recording", type=Path, help="the calibration session (.xdf)")
    p.add_argument("--pairs", type=Path, help="its EEG-image pairs manifest (see 'bci-dream make-pairs')")
    p.add_argument("--class", dest="classes", action="append", default=[], metavar="MARKER=FOLDER",
                   help="instead of --pairs: a marker text and the folder of that class's images (repeat)")
    p.add_argument("--validation-fraction", type=float, default=0.2, help="share of each class's trials held out")
    p.add_argument("--n-way", type=int, default=50, help="identification: n-way (reduced to the held-out images)")
    p.add_argument("--figure-rows", type=int, default=4, help="held-out trials drawn in validation.png")
    p.add_argument("--subjects-dir", type=Path, help="the subject's folder (default: the user data folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_training_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.calibrate.headless import calibrate_headless
    from bci_dream.calibrate.subject import check_subject_id
    from bci_dream.commands.finetune import settings_from_args
    from bci_dream.commands.pairs import _pairs_arg
    from bci_dream.errors import BciDreamError

    check_subject_id(args.subject)
    if not args.headless:
        raise BciDreamError("the calibration wizard is not available yet; record a session with 'bci-dream record' "
                            "and run 'bci-dream calibrate --headless --recording FILE.xdf --class MARKER=FOLDER ...'")
    if args.recording is None:
        raise BciDreamError("--headless needs --recording FILE.xdf, the calibration session")
    classes = _pairs_arg(args.classes, "--class") if args.classes else None
    settings = settings_from_args(args)
    settings.check()
    result = calibrate_headless(args.recording, args.subject, settings, pairs=args.pairs, classes=classes,
                                init=args.init, validation_fraction=args.validation_fraction, n_way=args.n_way,
                                figure_rows=args.figure_rows, subjects_dir=args.subjects_dir,
                                progress=not args.no_progress)
    v = result.profile.validation
    if v.get("accuracy") is not None:
        line = (f"held-out identification: {v['n_way']}-way top-1 accuracy {v['accuracy']:.3f} (chance "
                f"{v['chance']:.3f}, p = {v['p_value']:.3g}; {v['n_items']} trials)")
    else:
        line = "no identification (see the notes in profile.json)"
    print(f"calibrated subject {args.subject} on {result.n_train} trials ({result.n_validation} held out); {line}; "
          f"profile in {result.folder}" + (f", figure {result.figure}" if result.figure else ""), flush=True)
    return 0
