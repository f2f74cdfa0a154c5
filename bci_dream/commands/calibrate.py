"""``bci-dream calibrate``: per-subject calibration, in the wizard or headless from a recorded session."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.commands.common import (
    add_aux_arg,
    add_channel_args,
    add_connection_args,
    add_filter_args,
    connection_params,
    filters_from_args,
    filters_given,
    naming_from_args,
    source_options,
)
from bci_dream.commands.finetune import add_training_args, settings_from_args
from bci_dream.commands.pairs import add_round_robin_arg, parse_pairs_arg
from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.devices import get_profile
from bci_dream.models.subject_profile import check_subject_id


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fine-tune the EEG model for one subject from a calibration session",
        description="Without --headless: open the calibration wizard on --device (subject, signal check, a "
                    "full-screen stimulus session recorded to .xdf with a marker at each frame, fine-tuning, "
                    "validation, the saved profile); an interrupted session can be resumed from the wizard. "
                    "With --headless: from a recorded session, split its EEG-image trials into training and "
                    "held-out validation trials, fine-tune the per-subject parts, report n-way identification of "
                    "the held-out images in CLIP space against chance, draw held-out stimuli beside the images "
                    "generated from their EEG, and save the subject profile (use it with 'bci-dream app "
                    "--checkpoint SUBJECT_FOLDER'). Running it again resumes an interrupted fine-tuning.")
    p.add_argument("--subject", help="subject id (letters, digits, '_', '-', '.'); needed with --headless")
    p.add_argument("--headless", action="store_true", help="no wizard: calibrate from --recording")
    w = p.add_argument_group("wizard")
    w.add_argument("--device", "-d", default="synthetic",
                   help="headset profile name (see 'bci-dream devices') or a .toml profile file")
    add_connection_args(w)
    add_aux_arg(w)
    w.add_argument("--protocol", default="default",
                   help="calibration protocol: a shipped one (default, quick) or a .toml file")
    w.add_argument("--windowed", action="store_true", help="present the stimuli in a window, not full screen")
    w.add_argument("--photodiode", metavar="CHANNEL",
                   help="a photodiode on the screen's bottom-left square is recorded on this channel (an EEG "
                        "channel, or an aux one such as a Cyton's A5 with --aux analog): true onsets are measured "
                        "against the markers")
    add_channel_args(p)
    add_filter_args(p)
    p.add_argument("--recording", type=Path, help="the calibration session (.xdf)")
    p.add_argument("--pairs", type=Path, help="its EEG-image pairs manifest (see 'bci-dream make-pairs')")
    p.add_argument("--class", dest="classes", action="append", default=[], metavar="MARKER=FOLDER",
                   help="instead of --pairs: a marker text and the folder of that class's images (repeat)")
    add_round_robin_arg(p)
    p.add_argument("--validation-fraction", type=float, default=defaults.VALIDATION_FRACTION, help="share of each class's trials held out")
    p.add_argument("--n-way", type=int, default=defaults.N_WAY, help="identification: n-way (reduced to the held-out images)")
    p.add_argument("--figure-rows", type=int, default=defaults.VALIDATION_FIGURE_ROWS, help="held-out trials drawn in validation.png")
    p.add_argument("--subjects-dir", type=Path,
                   help="where subject folders live (default: $BCI_DREAM_SUBJECTS, else the user data folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_training_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.calibrate.headless import calibrate_headless

    if not args.headless:
        return run_wizard(args)
    if args.subject is None:
        raise BciDreamError("--headless needs --subject ID")
    check_subject_id(args.subject)
    if args.recording is None:
        raise BciDreamError("--headless needs --recording FILE.xdf, the calibration session")
    classes = parse_pairs_arg(args.classes, "--class") if args.classes else None
    settings = settings_from_args(args)
    settings.check()
    result = calibrate_headless(args.recording, args.subject, settings, pairs=args.pairs, classes=classes,
                                init=args.init, validation_fraction=args.validation_fraction, n_way=args.n_way,
                                figure_rows=args.figure_rows,
                                subjects_dir=args.subjects_dir / args.subject if args.subjects_dir else None,
                                progress=not args.no_progress, naming=naming_from_args(args),
                                round_robin=args.round_robin)
    v = result.profile.validation
    if v.get("accuracy") is not None:
        line = (f"held-out identification: {v['n_way']}-way top-1 accuracy {v['accuracy']:.3f} (chance "
                f"{v['chance']:.3f}, p = {v['p_value']:.3g}; {v['n_items']} trials)")
        a = v.get("averaged_over_repetitions")
        if a:
            line += (f", averaged over repetitions {a['accuracy']:.3f} (chance {a['chance']:.3f}, p = {a['p_value']:.3g}; "
                     f"{a['n_items']} images)")
    else:
        line = "no identification (see the notes in profile.json)"
    print(f"calibrated subject {args.subject} on {result.n_train} trials ({result.n_validation} held out); {line}; "
          f"profile in {result.folder}" + (f", figure {result.figure}" if result.figure else ""), flush=True)
    return 0


def run_wizard(args: argparse.Namespace) -> int:
    """Open the calibration wizard; exit status 0 when a profile was saved, 1 (one line) when it was closed before."""
    from bci_dream.calibrate.protocol import load_protocol

    if args.recording is not None or args.pairs is not None or args.classes:
        raise BciDreamError("--recording, --pairs and --class are for --headless; the wizard records its own session")
    if args.subject:
        check_subject_id(args.subject)
    profile = get_profile(args.device)  # an unknown device is said here, before a window opens
    load_protocol(args.protocol)
    settings = settings_from_args(args)
    settings.check()
    params = connection_params(args)
    filters = filters_from_args(args, profile) if filters_given(args) else None

    from bci_dream.gui.app import run_calibration
    from bci_dream.gui.calibration_wizard import WizardOptions

    options = WizardOptions(subject=args.subject or "", device=args.device, params=params, protocol=args.protocol,
                            settings=settings, init=args.init, validation_fraction=args.validation_fraction,
                            n_way=args.n_way, figure_rows=args.figure_rows, subjects_dir=args.subjects_dir,
                            fullscreen=not args.windowed, filters=filters, photodiode=args.photodiode,
                            naming=naming_from_args(args), source_options=source_options(args))
    wizard = run_calibration(options)
    if wizard.result is None:
        kept = f"; the session is kept in {wizard.session.folder} and can be resumed" if wizard.session else ""
        raise BciDreamError(f"the calibration wizard was closed before a profile was saved{kept}")
    print(f"calibrated subject {wizard.subject}: profile in {wizard.result.folder}", flush=True)
    return 0
