"""The ``bci-dream`` command: one group of subcommands.

Errors the user can fix (a missing file, an unknown device, a port that does not exist, ...) are
printed as one line on stderr and end the command with exit status 1; a stream that ran to its end
but carried NaN/inf values or timestamps that jumped or ran backwards ends with exit status 3 (all
samples kept); ``-v`` shows more logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from bci_dream import __version__
from bci_dream.commands import COMMAND_MODULES
from bci_dream.devices import CONNECTION_PARAMETERS, DeviceProfile, get_profile, list_profiles
from bci_dream.errors import BciDreamError

log = logging.getLogger("bci_dream")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT_PROBLEMS = 0, 1, 2, 3

_PARAM_HELP = {
    "serial_port": "serial port of the dongle, e.g. /dev/ttyUSB0 or COM3",
    "mac_address": "Bluetooth MAC address of the headset",
    "serial_number": "serial number or Bluetooth name of the headset (e.g. Muse-1A2B)",
    "ip_address": "IP address of the board",
    "ip_port": "IP port of the board",
    "file": "file to play back (BrainFlow CSV for the playback device)",
    "master_board": "board that recorded the playback file (BoardIds name, default SYNTHETIC_BOARD)",
    "timeout": "seconds to wait when connecting or resolving",
    "other_info": "extra board-specific BrainFlow parameter",
    "stream_name": "LSL stream name to resolve",
    "stream_type": "LSL stream type to resolve (default EEG)",
    "source_id": "LSL source_id to resolve",
    "marker_stream": "name of an LSL marker stream to read too",
}


class _Terminate(Exception):
    """Raised in the main thread by SIGTERM so that recordings are closed properly."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise _Terminate()


# -- argument groups ------------------------------------------------------------------------------

def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", "-d", default="synthetic",
                   help="device profile name (see 'bci-dream devices') or a .toml profile file")
    _add_connection_args(p.add_argument_group("connection (what each device needs: 'bci-dream devices')"))
    _add_filter_args(p)
    p.add_argument("--publish", action="store_true", help="re-publish the EEG and markers as LSL streams")


def _add_connection_args(g) -> None:
    """``--serial-port``, ``--mac-address`` ...: one option per connection parameter, on a parser or group ``g``."""
    for name in CONNECTION_PARAMETERS:
        kind = int if name in ("ip_port",) else float if name == "timeout" else str
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=_PARAM_HELP[name])


def _connection_params(args: argparse.Namespace) -> dict:
    """The connection parameters given on the command line (those left out are not in the dict)."""
    return {name: getattr(args, name) for name in CONNECTION_PARAMETERS if getattr(args, name) is not None}


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (default: the device profile's)")
    g.add_argument("--bandpass", nargs=2, type=float, metavar=("LOW", "HIGH"), help="band-pass edges in Hz")
    g.add_argument("--notch", type=float, help="line-noise notch in Hz (50 or 60; 0 to switch off)")
    g.add_argument("--no-filter", action="store_true", help="no band-pass and no notch")


def _filters(args: argparse.Namespace, profile: DeviceProfile | None):
    from bci_dream.acquisition.pipeline import FilterSettings

    if args.no_filter:
        return FilterSettings(None, None)
    bandpass = tuple(args.bandpass) if args.bandpass else (profile.bandpass if profile else (1.0, 45.0))
    notch = args.notch if args.notch is not None else (profile.notch if profile else 50.0)
    return FilterSettings(bandpass, notch or None)


def _open_live(args: argparse.Namespace):
    from bci_dream.acquisition.live import LiveStream, make_source

    profile = get_profile(args.device)
    params = {name: getattr(args, name) for name in CONNECTION_PARAMETERS}
    source = make_source(profile, params)
    live = LiveStream(source, filters=_filters(args, profile), rail_uv=profile.rail_uv, publish=args.publish)
    info = live.open()
    print(f"{profile.name}: {info.name}, {info.n_channels} channels ({', '.join(info.ch_names)}), "
          f"{info.sfreq:g} Hz, {info.units}", flush=True)
    return live


# -- status lines ---------------------------------------------------------------------------------

def _quality_text(quality) -> str:
    if not quality:
        return "quality pending"
    bad = [f"{q.name} {q.status.replace('_', ' ')}" for q in quality if not q.ok]
    text = f"quality {len(quality) - len(bad)}/{len(quality)} ok"
    return text + (f" (bad: {', '.join(bad)})" if bad else "")


def _status_line(elapsed: float, status) -> str:
    # (a replay faster than real time stamps samples ahead of the clock: no latency to show)
    latency = f"{status.latency_ms:.0f} ms" if status.latency_ms is not None and status.latency_ms >= 0 else "-"
    parts = [f"{elapsed:6.1f} s", f"{status.state.value:<12}",
             f"rate {status.measured_rate:6.1f}/{status.nominal_rate:g} Hz",
             f"dropped {status.dropped}", f"latency {latency}", _quality_text(status.quality)]
    if status.nonfinite:
        parts.append(f"non-finite {status.nonfinite}")
    if status.timestamps_backwards or status.timestamp_jumps:
        parts.append(f"time steps back {status.timestamps_backwards} jumps {status.timestamp_jumps}")
    if status.recording is not None:
        parts.append(f"recording {status.recording:.1f} s")
    return "  ".join(parts)


def _run_live(live, seconds: float | None, interval: float = 1.0) -> int:
    """Print a status line every ``interval`` s until ``seconds`` pass, Ctrl-C, or the source ends."""
    live.start()
    start = time.monotonic()
    next_print = start + interval
    try:
        while seconds is None or time.monotonic() - start < seconds:
            wake = min(next_print, start + seconds) if seconds is not None else next_print
            if live.source.wait(max(0.0, wake - time.monotonic())):
                break  # the source ended by itself: a replay reached its end, or the device failed
            if time.monotonic() >= next_print:
                print(_status_line(time.monotonic() - start, live.status()), flush=True)
                next_print += interval
    except (KeyboardInterrupt, _Terminate):
        print("stopping", flush=True)
    summary = live.stop()
    if summary is not None:
        print(f"recorded {summary.samples} samples and {summary.markers} markers in {summary.seconds:.1f} s "
              f"to {summary.path}", flush=True)
    error = live.source.error or live.chunk_error or (live.recorder.error if live.recorder else None)
    if error is not None:
        print(f"bci-dream: error: {error}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    stats = live.pipeline.stats
    problems = [f"{n} {what}" for n, what in ((stats.nonfinite_values, "NaN or infinite values"),
                                              (stats.timestamps_backwards, "timestamps that ran backwards"),
                                              (stats.timestamp_jumps, "timestamp jumps")) if n]
    if problems:
        print(f"bci-dream: warning: the stream had {', '.join(problems)}; every sample was kept "
              "(exit status 3)", file=sys.stderr, flush=True)
        return EXIT_INPUT_PROBLEMS
    return EXIT_OK


# -- subcommands ----------------------------------------------------------------------------------

def cmd_devices(args: argparse.Namespace) -> int:
    profiles = list_profiles()
    width = max(len(n) for n in profiles) if profiles else 8
    for name, p in profiles.items():
        needs = ", ".join("--" + x.replace("_", "-") for x in p.required) or "-"
        print(f"{name:<{width}}  {p.description}  [needs: {needs}]")
    return EXIT_OK


def cmd_stream(args: argparse.Namespace) -> int:
    live = _open_live(args)
    return _run_live(live, args.seconds)


def cmd_record(args: argparse.Namespace) -> int:
    live = _open_live(args)
    try:
        live.start_recording(args.output, overwrite=args.overwrite)
    except BciDreamError:
        live.stop()
        raise
    print(f"recording to {args.output}; Ctrl-C to stop", flush=True)
    return _run_live(live, args.seconds)


def cmd_replay(args: argparse.Namespace) -> int:
    from bci_dream.acquisition.live import LiveStream
    from bci_dream.acquisition.xdf_replay import XdfReplaySource

    if args.headless or args.out is not None:
        from bci_dream.commands.run import check_headless

        check_headless(args)
    source = XdfReplaySource(args.file, speed=args.speed, loop=args.loop, stream=args.stream)
    live = LiveStream(source, filters=_filters(args, None), publish=args.publish,
                      buffer_seconds=60.0)
    info = live.open()
    session = source.session
    n_file = session.eeg.data.shape[0]
    n_markers = sum(len(m.texts) for m in session.markers)
    print(f"{args.file}: '{info.name}' {info.n_channels} channels ({', '.join(info.ch_names)}), {info.sfreq:g} Hz, "
          f"{n_file} samples ({source.duration:.1f} s), {n_markers} markers in {len(session.markers)} streams",
          flush=True)
    started = time.monotonic()
    if args.headless or args.out is not None:
        from bci_dream.commands.run import run_engine

        code = run_engine(live, args)
    else:
        code = _run_live(live, args.seconds, interval=1.0)
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
    print(line, flush=True)
    return code


# -- entry point ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bci-dream", description="Live EEG to images.")
    parser.add_argument("--version", action="version", version=f"bci-dream {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("devices", help="list the headset profiles")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("stream", help="stream a device headless, printing rate, drops, latency and quality")
    _add_device_args(p)
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("record", help="record a device to .xdf (EEG, markers, app events)")
    _add_device_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="the .xdf file to write")
    p.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("replay", help="replay a .xdf session headless and print statistics")
    p.add_argument("file", type=Path, help="the .xdf recording")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 2 = twice as fast, 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--stream", help="name or type of the EEG stream (default: type EEG, else the fastest)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--publish", action="store_true", help="publish the replay as LSL streams")
    _add_filter_args(p)
    from bci_dream.commands.run import add_generation_args

    add_generation_args(p)
    p.set_defaults(func=cmd_replay)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="bci-dream: %(levelname)s: %(message)s" if verbosity else
                        "bci-dream: %(message)s", stream=sys.stderr)
    if verbosity == 0:
        logging.getLogger("pyxdf").setLevel(logging.ERROR)  # its notes on clock segments are not for users
        # transformers notes that torchvision is missing each time diffusers imports an image processor class
        # (generation never uses one); brainflow imports pkg_resources, which warns of its own removal.
        logging.getLogger("transformers.utils.import_utils").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.command is None:  # the main job: the desktop app on the synthetic board with the default model
        args = parser.parse_args(["app"])
    if hasattr(args, "speed") and args.speed < 0:
        parser.error("--speed must be 0 or positive")
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _is_main_thread() else None
    try:
        return args.func(args)
    except BciDreamError as e:
        print(f"bci-dream: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except (KeyboardInterrupt, _Terminate):
        return 130
    except Exception as e:  # a bug: one line for the user, the traceback with -v
        log.debug("unexpected error", exc_info=True)
        print(f"bci-dream: internal error: {type(e).__name__}: {e} (please report it; -vv shows the traceback)",
              file=sys.stderr, flush=True)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
