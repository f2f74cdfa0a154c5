"""``bci-dream app`` (also ``bci-dream`` alone): the desktop app."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.commands.common import (
    add_device_args,
    add_generation_args,
    connection_params,
    creative_options,
    filters_from_args,
    filters_given,
    naming_from_args,
    route_options,
    source_options,
)
from bci_dream.core.errors import BciDreamError
from bci_dream.devices import get_profile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="the desktop app: live traces beside the generated images (the default command)")
    add_device_args(p)
    p.add_argument("--replay", type=Path, metavar="FILE.xdf", help="open a recorded session instead of a device")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    p.add_argument("--no-generate", action="store_true", help="only show the traces until Generate is pressed")
    add_generation_args(p, headless=False)
    p.add_argument("--show", type=int, metavar="SCREEN",
                   help="open the full-screen show window on this screen (0 the first; a second monitor or a "
                        "projector is 1)")
    p.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    from bci_dream.gui.app import run
    from bci_dream.gui.main_window import AppOptions

    if args.replay is not None and not args.replay.is_file():
        raise BciDreamError(f"{args.replay} does not exist; give the path of a recorded .xdf session")
    params = connection_params(args)
    filters = None  # (the settings' or the device's)
    if filters_given(args):
        filters = filters_from_args(args, None if args.replay else get_profile(args.device))
    if args.publish:
        raise BciDreamError("--publish is for the headless commands ('bci-dream stream --publish')")
    options = AppOptions(device=args.device, params=params, replay=args.replay, speed=args.speed, model=args.model,
                         checkpoint=args.checkpoint, gpu=args.gpu, size=args.size, seed=args.seed, hop=args.hop,
                         similarity=args.similarity, compile=args.compile, steps=args.steps,
                         interpolate=args.interpolate, filters=filters, generate=not args.no_generate,
                         naming=naming_from_args(args), source_options=source_options(args),
                         route=route_options(args), bank_k=args.bank_k, bank_temperature=args.bank_temperature,
                         creative=creative_options(args), osc=args.osc, osc_listen=args.osc_listen, video=args.video,
                         lsl_frames=args.lsl_frames, show_screen=args.show)
    return run(options)
