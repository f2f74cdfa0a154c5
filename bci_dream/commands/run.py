"""``bci-dream run``: a device through the engine, writing images headless (the window is ``bci-dream app``)."""

from __future__ import annotations

import argparse

from bci_dream.commands.common import add_device_args, add_generation_args, check_headless, open_live, run_engine


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="stream a device through the EEG encoder and the diffusion model")
    add_device_args(p)
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    add_generation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_headless(args)
    return run_engine(open_live(args), args)
