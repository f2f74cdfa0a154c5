"""The streaming commands: ``devices``, ``stream``, ``record``, ``replay`` and ``impedance``.

They import no model library: ``replay --headless`` loads the engine's models only when it runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bci_dream.commands.common import (
    EXIT_INPUT_PROBLEMS,
    EXIT_OK,
    add_aux_arg,
    add_channel_args,
    add_connection_args,
    add_device_args,
    add_filter_args,
    add_generation_args,
    check_headless,
    connection_params,
    filters_from_args,
    naming_from_args,
    open_live,
    run_engine,
    run_live,
    source_options,
)
from bci_dream.core.errors import BciDreamError
from bci_dream.devices import get_profile, impedance_unavailable, list_profiles


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the headset profiles")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("stream", help="stream a device headless, printing rate, drops, latency and quality")
    add_device_args(p)
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("record", help="record a device to .xdf (EEG, markers, app events)")
    add_device_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="the .xdf file to write")
    p.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("replay", help="replay a recorded session (.xdf, EDF, BDF, FIF, OpenBCI, Muse ...) headless and "
                                      "print statistics")
    p.add_argument("file", type=Path, help="the recording (.xdf, or any format bci-dream reads)")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 2 = twice as fast, 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--stream", help="name or type of the EEG stream (default: type EEG, else the fastest)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--publish", action="store_true", help="publish the replay as LSL streams")
    add_channel_args(p)
    add_filter_args(p)
    add_generation_args(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("impedance", help="measure electrode impedance in kΩ (OpenBCI Cyton, Cyton + Daisy, Ganglion)")
    p.add_argument("--device", "-d", default="cyton",
                   help="device profile name (see 'bci-dream devices') or a .toml profile file (default: cyton)")
    g = p.add_argument_group("connection (what each device needs: 'bci-dream devices')")
    add_connection_args(g)
    add_aux_arg(g)
    p.add_argument("--only", metavar="CHANNELS", help="measure only these channels (comma-separated names)")
    p.set_defaults(func=cmd_impedance)


def cmd_devices(args: argparse.Namespace) -> int:
    profiles = list_profiles()
    width = max(len(n) for n in profiles) if profiles else 8
    for name, p in profiles.items():
        needs = ", ".join("--" + x.replace("_", "-") for x in p.required) or "-"
        print(f"{name:<{width}}  {p.description}  [needs: {needs}]")
    return EXIT_OK


def cmd_stream(args: argparse.Namespace) -> int:
    return run_live(open_live(args), args.seconds)


def cmd_record(args: argparse.Namespace) -> int:
    live = open_live(args)
    try:
        live.start_recording(args.output, overwrite=args.overwrite)
    except BciDreamError:
        live.stop()
        raise
    print(f"recording to {args.output}; Ctrl-C to stop", flush=True)
    return run_live(live, args.seconds)


def cmd_replay(args: argparse.Namespace) -> int:
    from bci_dream.acquisition.live import LiveStream
    from bci_dream.acquisition.xdf_replay import XdfReplaySource

    generating = args.headless or args.out is not None
    if generating:
        check_headless(args)
    source = XdfReplaySource(args.file, speed=args.speed, loop=args.loop, stream=args.stream)
    live = LiveStream(source, filters=filters_from_args(args, None), publish=args.publish, buffer_seconds=60.0,
                      naming=naming_from_args(args))
    info = live.open()
    session = source.session
    n_file = session.eeg.data.shape[0]
    n_markers = sum(len(m.texts) for m in session.markers)
    print(f"{args.file}: '{info.name}' {info.n_channels} channels ({', '.join(info.ch_names)}), {info.sfreq:g} Hz, "
          f"{n_file} samples ({source.duration:.1f} s), {n_markers} markers in {len(session.markers)} streams",
          flush=True)
    started = time.monotonic()
    code = run_engine(live, args) if generating else run_live(live, args.seconds, interval=1.0)
    took = time.monotonic() - (live.started_at or started)  # (not counting the loading of models)
    stats = live.pipeline.stats
    speed = stats.samples / info.sfreq / took if took > 0 else 0.0
    line = (f"replayed {stats.samples} samples and {stats.markers} markers in {took:.2f} s "
            f"({speed:.1f}x real time)")
    if source.loops_done >= 1 and not args.loop:
        line += (f"; lost {max(n_file - stats.samples, 0)}, duplicated {max(stats.samples - n_file, 0)} "
                 f"of {n_file} samples in the file")
    else:
        line += f"; {source.loops_done} full pass(es)"
    if stats.effective_rate is not None:
        line += f"; effective rate {stats.effective_rate:.1f} of nominal {info.sfreq:g} Hz"
        line += f", {stats.gaps_text()}" if stats.gaps else ", no gaps"
    print(line, flush=True)
    if session.damage and code == EXIT_OK:
        print(f"bci-dream: warning: {args.file} is damaged ({'; '.join(session.damage)}); what could be read was "
              "replayed (exit status 3)", file=sys.stderr, flush=True)
        return EXIT_INPUT_PROBLEMS
    return code


def cmd_impedance(args: argparse.Namespace) -> int:
    from bci_dream.acquisition.impedance import ImpedanceMeter
    from bci_dream.acquisition.live import make_source

    profile = get_profile(args.device)
    why = impedance_unavailable(profile)
    if why:
        raise BciDreamError(f"{why} ('bci-dream stream' prints it)")
    source = make_source(profile, connection_params(args), reconnect=False, **source_options(args))
    info = source.open()
    source.start(lambda chunk: None)
    try:
        meter = ImpedanceMeter(source)
        only = [c.strip() for c in args.only.split(",") if c.strip()] if args.only else None
        n = len(only) if only is not None else info.n_channels
        print(f"{profile.name}: measuring {n} electrode(s), about {meter.estimated_seconds(n):.0f} s "
              f"({profile.impedance}) ...", flush=True)
        report = meter.measure(only, progress=lambda done, total, name: name and print(
            f"  {done + 1}/{total} {name}", flush=True))
    finally:
        source.stop()
    width = max(len(e.name) for e in report.electrodes)
    for e in report.electrodes:
        value = f"{e.kohm:8.1f} kΩ" if e.rating != "none" else "     not measured"
        print(f"{e.name:<{width}} {value}  {e.rating}")
    print(report.thresholds.describe())
    poor = [e.name for e in report.electrodes if e.rating == "poor"]
    print(f"{len(poor)} electrode(s) poor: {', '.join(poor)}; re-seat them (more gel, part the hair) and measure again"
          if poor else "every electrode measured is good or fair", flush=True)
    return EXIT_OK
