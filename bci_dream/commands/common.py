"""What the subcommands share: exit statuses, option groups, opening a device, the status loop, and running
the engine headless. Imports only argparse and light bci_dream modules at load time: the heavy libraries
(torch, diffusers) load inside the functions that need them, so that ``bci-dream devices`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from bci_dream.acquisition.filter_settings import FROM_PROFILE, NO_FILTERS, FilterSettings, choose_filters
from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.devices import AUX_KINDS, CONNECTION_PARAMETERS, DeviceProfile, get_profile, parse_aux_kinds
from bci_dream.models.subject_profile import checkpoint_of
from bci_dream.runtime.steering import parse_rule
from bci_dream.runtime.styles import load_style

log = logging.getLogger("bci_dream")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT_PROBLEMS = 0, 1, 2, 3
#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT).
EXIT_INTERRUPTED = 130

PARAM_HELP = {
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


class Terminate(Exception):
    """Raised in the main thread by SIGTERM (see :mod:`bci_dream.cli`), so that recordings are closed properly."""


# -- option groups --------------------------------------------------------------------------------

def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device``, its connection parameters, the channel names, the filters and ``--publish``."""
    p.add_argument("--device", "-d", default="synthetic",
                   help="device profile name (see 'bci-dream devices') or a .toml profile file")
    g = p.add_argument_group("connection (what each device needs: 'bci-dream devices')")
    add_connection_args(g)
    add_aux_arg(g)
    add_channel_args(p)
    add_filter_args(p)
    p.add_argument("--publish", action="store_true", help="re-publish the EEG and markers as LSL streams")


def add_connection_args(g) -> None:
    """``--serial-port``, ``--mac-address`` ...: one option per connection parameter, on a parser or group ``g``."""
    for name in CONNECTION_PARAMETERS:
        kind = int if name in ("ip_port",) else float if name == "timeout" else str
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=PARAM_HELP[name])


def add_aux_arg(g) -> None:
    """``--aux KINDS``: the board's non-EEG rows to record, each as a stream of its own."""
    g.add_argument("--aux", metavar="KINDS",
                   help=f"a BrainFlow board's other rows to record beside the EEG, each as its own .xdf stream: any of "
                        f"{', '.join(AUX_KINDS)} (comma-separated; 'none' for none; default: the profile's [aux] "
                        "record). An analog input can then be --photodiode's channel")


def source_options(args: argparse.Namespace) -> dict:
    """Options for :func:`~bci_dream.acquisition.live.make_source` from the command line (``aux`` when given)."""
    kinds = parse_aux_kinds(getattr(args, "aux", None))
    return {} if kinds is None else {"aux": kinds}


def connection_params(args: argparse.Namespace) -> dict:
    """The connection parameters given on the command line (those left out are not in the dict)."""
    return {name: getattr(args, name) for name in CONNECTION_PARAMETERS if getattr(args, name) is not None}


def add_channel_args(p: argparse.ArgumentParser) -> None:
    """``--channels``, ``--channels-file``, ``--layout``: what the channels are when their labels do not say."""
    g = p.add_argument_group("channel names (when the stream's or the file's own labels are not 10-05 names)")
    g.add_argument("--channels", metavar="NAMES",
                   help="10-05 names in stream order, comma-separated; '-' leaves a channel out (e.g. Fp1,Fp2,-,C3)")
    g.add_argument("--channels-file", type=Path, metavar="FILE",
                   help="one name per line; a BIDS channels.tsv or electrodes.tsv; or a montage or digitisation "
                        "file MNE reads (positions: each channel becomes the nearest 10-05 site)")
    g.add_argument("--layout", metavar="PROFILE",
                   help="the channels of a device profile, for an unlabelled stream of that headset (e.g. cyton "
                        "or cyton-daisy for the OpenBCI GUI's LSL output)")


def naming_from_args(args: argparse.Namespace):
    """The :class:`~bci_dream.signal.channels.ChannelNaming` the command line gives, or None."""
    given = [x for x in (args.channels, args.channels_file, args.layout) if x]
    if len(given) > 1:
        raise BciDreamError("give one of --channels, --channels-file and --layout")
    if not given:
        return None
    from bci_dream.io.channels_file import read_channels_file  # (numpy, and MNE for montage files)
    from bci_dream.signal.channels import layout_naming, parse_channel_list

    if args.channels:
        return parse_channel_list(args.channels)
    if args.channels_file:
        return read_channels_file(args.channels_file)
    return layout_naming(get_profile(args.layout))


def add_filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (default: the device profile's)")
    g.add_argument("--bandpass", nargs=2, type=float, metavar=("LOW", "HIGH"), help="band-pass edges in Hz")
    g.add_argument("--notch", type=float, help="line-noise notch in Hz (50 or 60; 0 to switch off)")
    g.add_argument("--no-filter", action="store_true", help="no band-pass and no notch")


def filters_given(args: argparse.Namespace) -> bool:
    """Whether the command line says anything about the filters."""
    return bool(args.no_filter or args.bandpass or args.notch is not None)


def filters_from_args(args: argparse.Namespace, profile: DeviceProfile | None) -> FilterSettings:
    """The filters the command line asks for, the rest from ``profile`` (see :func:`choose_filters`). Without filter
    options and with a ``--checkpoint``, the band-pass is the one the EEG model was trained with."""
    bandpass = tuple(args.bandpass) if args.bandpass else FROM_PROFILE
    if not filters_given(args) and getattr(args, "checkpoint", None) is not None:
        bandpass = checkpoint_band_pass(args.checkpoint, choose_filters(profile).bandpass)
    return choose_filters(profile, NO_FILTERS if args.no_filter else None, bandpass=bandpass,
                          notch=args.notch if args.notch is not None else FROM_PROFILE)


def checkpoint_band_pass(checkpoint: Path, default: tuple[float, float] | None):
    """The band-pass the EEG model at ``checkpoint`` (or a subject folder) was trained with (said in one line when it
    is not ``default``); ``default`` when the checkpoint cannot say (its loading reports that)."""
    from bci_dream.models.checkpoint import model_config, read_config  # (torch)

    try:
        band = model_config(read_config(checkpoint_of(checkpoint)), checkpoint).preprocessing.bandpass
    except BciDreamError:
        return default
    if band != (tuple(default) if default else None):
        text = f"{band[0]:g}-{band[1]:g} Hz" if band else "no band-pass"
        print(f"filters: {text}, as the EEG model in {checkpoint} was trained", flush=True)
    return band


def add_compute_device_arg(p: argparse.ArgumentParser, *, old_device_flag: bool = False) -> None:
    """``--gpu``: the torch device the models run on, one name in every command (``--device`` is the headset).

    ``old_device_flag``: also take ``--device``, which ``finetune`` and ``evaluate`` used to call it, with a
    warning (only in commands that have no headset).
    """
    p.add_argument("--gpu", default="auto", metavar="DEVICE",
                   help="torch device for the models: auto (CUDA when available), cpu, cuda, cuda:1, ...")
    if old_device_flag:
        p.add_argument("--device", dest="gpu", action=_OldDeviceFlag, help=argparse.SUPPRESS)


class _OldDeviceFlag(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        log.warning("--device is now --gpu in this command too (--device names the "
                                               "headset elsewhere); using --gpu %s", values)
        setattr(namespace, self.dest, values)


def add_generation_args(p: argparse.ArgumentParser, headless: bool = True) -> None:
    """Options shared by ``run``, ``replay --headless`` and ``app`` (``headless``: add --headless and --out)."""
    g = p.add_argument_group("generation")
    if headless:
        g.add_argument("--headless", action="store_true", help="no window: write images and frames.jsonl to --out")
        g.add_argument("--out", type=Path, help="folder for the images and frames.jsonl")
    g.add_argument("--model", default="auto", help="diffusion model: auto (SD-Turbo if available, else the tiny "
                   "preview model), a name from 'bci-dream models list', a hub id or a folder")
    g.add_argument("--checkpoint", type=Path, help="EEG model (from 'bci-dream finetune') or subject folder; "
                   "without it the conditioning is untrained")
    g.add_argument("--size", type=int, help="image side in pixels (default: the model's; smaller on a CPU)")
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's, 1 for SD-Turbo)")
    g.add_argument("--seed", type=int, default=0, help="noise seed of the session")
    g.add_argument("--hop", type=float, default=defaults.HOP_S, help="seconds between windows")
    g.add_argument("--similarity", type=float, default=defaults.SIMILARITY_THRESHOLD,
                   help="skip a window whose embedding has at least this cosine similarity to the last one")
    g.add_argument("--interpolate", type=int, default=0, help="frames generated between successive embeddings")
    g.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile the UNet and decoder (CUDA); MODE 'reduce-overhead' adds CUDA graphs, the "
                   "fastest measured (about 11 ms from window to 512x512 image on an H100); default mode 'default'")
    g.add_argument("--backend", choices=defaults.BACKENDS, default=defaults.BACKEND,
                   help="how frames run: eager (step by step), graph (the whole frame planned; one CUDA graph on "
                   "CUDA), compile, int8 / fp8 (torchao), tensorrt (torch-tensorrt), auto (the fastest installed); "
                   "one that cannot run here falls back, said in one line")
    g.add_argument("--encoder-precision", choices=defaults.PRECISIONS, default=defaults.PRECISION,
                   help="the EEG encoder's arithmetic: auto (bf16 on CUDA and on CPUs with AVX-512 BF16 or AMX, "
                   "float32 elsewhere), fp32, bf16")
    add_compute_device_arg(g)
    add_route_args(p)
    add_creative_args(p)
    add_output_args(p)


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--osc``, ``--osc-listen``, ``--video``, ``--markers-udp``, ``--markers-lsl``, ``--lsl-frames`` (and
    ``--show`` for the app)."""
    g = p.add_argument_group("outputs")
    g.add_argument("--osc", metavar="HOST:PORT",
                   help="send band powers, signal quality, steering weights and frame events over OSC (UDP)")
    g.add_argument("--osc-listen", type=int, metavar="PORT",
                   help="take OSC commands on this UDP port: /bci-dream/eeg_influence, /prompt, /seed, /generate, "
                        "/marker")
    g.add_argument("--video", type=Path, metavar="FILE.mp4",
                   help="write the images to a video as they come (with FILE.mp4.frames.csv of frame times)")
    g.add_argument("--markers-udp", type=int, metavar="PORT",
                   help="take markers as UDP datagrams on this port (each datagram's text is one marker), for any "
                        "source")
    g.add_argument("--markers-lsl", metavar="NAME",
                   help="take markers from the LSL marker stream NAME, for any source")
    g.add_argument("--virtual-camera", action="store_true",
                   help="send the images to a virtual camera (needs pip install 'bci-dream[show]' and a camera "
                        "driver: v4l2loopback on Linux, OBS's on Windows and macOS)")
    g.add_argument("--ndi", nargs="?", const="bci-dream", metavar="NAME",
                   help="send the images as an NDI source (default name bci-dream; needs pip install "
                        "'bci-dream[show]')")
    g.add_argument("--spout", nargs="?", const="bci-dream", metavar="NAME",
                   help="share the images as a Spout sender, Windows (default name bci-dream; needs pip install "
                        "'bci-dream[show]')")
    g.add_argument("--syphon", nargs="?", const="bci-dream", metavar="NAME",
                   help="share the images as a Syphon server, macOS (default name bci-dream; needs pip install "
                        "'bci-dream[show]')")
    g.add_argument("--lsl-frames", action="store_true",
                   help="publish each image as a sample of the LSL stream bci-dream-frames (frame index and the "
                        "window's t_end), so that recordings line the images up with the EEG")


def add_creative_args(p: argparse.ArgumentParser) -> None:
    """Creative mode: ``--prompt``, ``--negative-prompt``, ``--guidance``, ``--eeg-influence``, ``--style``,
    ``--steer``, ``--baseline``, ``--hold-artefact``, ``--sham``, ``--sham-shift``."""
    g = p.add_argument_group("creative mode", "prompts blended with the EEG, steered by band power (no calibration)")
    g.add_argument("--prompt", metavar="TEXT",
                   help="a text prompt the EEG's conditioning is blended with (--eeg-influence); on the ip-adapter "
                        "route it goes beside the image embedding (default: none, the empty prompt)")
    g.add_argument("--negative-prompt", metavar="TEXT",
                   help="what classifier-free guidance steers away from (needs --guidance above 1)")
    g.add_argument("--guidance", type=float, metavar="G",
                   help="guidance scale (default: the model's, 0 for SD-Turbo); above 1 runs the UNet twice per step")
    g.add_argument("--eeg-influence", type=float, default=1.0, metavar="W",
                   help="the EEG's share of the conditioning, 0 (the prompt alone) to 1 (the EEG alone, default); on "
                        "the ip-adapter route, the adapter's strength")
    g.add_argument("--style", metavar="NAME|FILE",
                   help="a style preset's words after the prompt and its negative prompt (dreamlike, photo, ink, "
                        "neon, or a .toml file)")
    g.add_argument("--steer", action="append", default=[], metavar="RULE",
                   help="brain-state steering, repeatable: FEATURE=PROMPT (e.g. 'alpha=calm ocean at dusk'), "
                        "FEATURE>ip_scale or FEATURE>seed; features: delta theta alpha beta gamma (also .frontal, "
                        ".occipital ...), alpha_asymmetry, engagement, artefact")
    g.add_argument("--baseline", type=float, default=0.0, metavar="S",
                   help="record a baseline over the first S seconds (30-60 recommended) and z-score the features "
                        "against it (default: against the running session mean)")
    g.add_argument("--hold-artefact", type=float, metavar="SHARE",
                   help="hold generation while the artefact share (blinks, EMG, line noise; 0-1) is above SHARE")
    g.add_argument("--sham", choices=("shifted", "shuffled"),
                   help="feed the EEG model EEG from another time of the session instead of the live one (a control)")
    g.add_argument("--sham-shift", type=float, default=30.0, metavar="S", help="the shifted sham's lag (default 30 s)")


def creative_options(args: argparse.Namespace) -> dict:
    """The command line's creative-mode settings (plain fields: the app's start-up must not import torch): the
    prompt with the style's words, the negative prompt, and the rest of
    :class:`~bci_dream.runtime.creative.CreativeSettings`.

    Raises:
        StyleError, SteeringError: a style or rule that cannot be read (one line).
    """
    prompt, negative = args.prompt, args.negative_prompt
    if args.style:
        style = load_style(args.style)
        prompt = style.apply(prompt)
        if (args.guidance or 0) > 1:  # (a negative prompt acts only through classifier-free guidance)
            negative = negative or style.negative_prompt or None
    return {"prompt": prompt or None, "negative_prompt": negative or None, "guidance": args.guidance,
            "eeg_influence": args.eeg_influence, "rules": tuple(parse_rule(r) for r in args.steer),
            "baseline_s": args.baseline, "hold_artefact": args.hold_artefact, "sham": args.sham,
            "sham_shift_s": args.sham_shift}


def add_route_args(p: argparse.ArgumentParser) -> None:
    """``--route``, ``--ip-adapter``, ``--ip-adapter-scale``, ``--bank``, ``--bank-k``, ``--bank-temperature``,
    ``--bank-clip-model``."""
    g = p.add_argument_group("conditioning route")
    g.add_argument("--route", choices=defaults.ROUTES,
                   help="dreamdiffusion: the EEG model's prompt embeddings in the UNet's cross-attention; ip-adapter: "
                        "its CLIP image embedding through an IP-Adapter on a frozen model; retrieval: the nearest "
                        "image of --bank itself (default: the checkpoint's route)")
    g.add_argument("--ip-adapter", metavar="FILE", help="IP-Adapter weights (or their folder) for --route ip-adapter")
    g.add_argument("--ip-adapter-scale", type=float, default=1.0, metavar="S",
                   help="the IP-Adapter's strength (default %(default)s)")
    g.add_argument("--bank", metavar="FOLDER|FILE", help="image bank: a folder of images or a file from "
                                                          "'bci-dream bank'; the CLIP embedding is pulled towards it")
    g.add_argument("--bank-k", type=int, default=defaults.BANK_K, metavar="K",
                   help="bank images mixed (default %(default)s)")
    g.add_argument("--bank-temperature", type=float, default=defaults.BANK_TEMPERATURE, metavar="T",
                   help="softmax temperature of their cosines (default %(default)s)")
    g.add_argument("--bank-clip-model", metavar="MODEL",
                   help="CLIP model a bank folder is embedded with (default: the checkpoint's)")


def route_options(args: argparse.Namespace) -> dict:
    """The fields of :class:`~bci_dream.generation.session_models.RouteChoice` the command line gives (a plain dict:
    making the choice itself imports torch, which the app's start-up must not wait for)."""
    return {"route": args.route, "ip_adapter": args.ip_adapter, "ip_adapter_scale": args.ip_adapter_scale,
            "prompt": args.prompt, "negative_prompt": args.negative_prompt, "bank": args.bank,
            "clip_model": args.bank_clip_model}


def check_headless(args: argparse.Namespace) -> None:
    """Refuse a headless generation command without ``--headless --out DIR`` (one line)."""
    if not args.headless:
        raise BciDreamError("this command writes images headless: add --headless --out DIR (the window is "
                            "'bci-dream app')")
    if args.out is None:
        raise BciDreamError("--headless needs --out DIR for the images and frames.jsonl")


# -- a live stream ----------------------------------------------------------------------------------

def open_live(args: argparse.Namespace):
    """Open the device of ``--device`` with the command line's connection parameters and filters; prints a line
    describing the stream. Returns the opened (not started) :class:`~bci_dream.acquisition.live.LiveStream`."""
    from bci_dream.acquisition.live import LiveStream, make_source

    profile = get_profile(args.device)
    params = {name: getattr(args, name) for name in CONNECTION_PARAMETERS}
    source = make_source(profile, params, **source_options(args))
    live = LiveStream(source, filters=filters_from_args(args, profile), rail_uv=profile.rail_uv,
                      publish=args.publish, naming=naming_from_args(args))
    info = live.open()
    print(f"{profile.name}: {info.name}, {info.n_channels} channels ({', '.join(info.ch_names)}), "
          f"{info.sfreq:g} Hz, {info.units}", flush=True)
    for aux in live.aux_infos:
        print(f"  + {aux.name}: {', '.join(aux.ch_names)} at {aux.sfreq:g} Hz (recorded as a stream of its own)",
              flush=True)
    return live


def quality_text(quality) -> str:
    """``quality 7/8 ok (bad: O1 flat)`` from per-channel quality assessments."""
    if not quality:
        return "quality pending"
    bad = [f"{q.name} {q.status.replace('_', ' ')}" for q in quality if not q.ok]
    text = f"quality {len(quality) - len(bad)}/{len(quality)} ok"
    return text + (f" (bad: {', '.join(bad)})" if bad else "")


def status_line(elapsed: float, status) -> str:
    """One line of ``bci-dream stream``: time, state, rate, drops, latency, quality, problems, recording."""
    # (a replay faster than real time stamps samples ahead of the clock: no latency to show)
    latency = f"{status.latency_ms:.0f} ms" if status.latency_ms is not None and status.latency_ms >= 0 else "-"
    parts = [f"{elapsed:6.1f} s", f"{status.state.value:<12}",
             f"rate {status.measured_rate:6.1f}/{status.nominal_rate:g} Hz",
             f"dropped {status.dropped}", f"latency {latency}", quality_text(status.quality)]
    if status.nonfinite:
        parts.append(f"non-finite {status.nonfinite}")
    if status.gaps:
        parts.append(f"gaps {status.gaps} ({status.gap_seconds:.2f} s, longest {status.longest_gap_s:.2f} s)")
    if status.timestamps_backwards or status.timestamp_jumps:
        parts.append(f"time steps back {status.timestamps_backwards} jumps {status.timestamp_jumps}")
    if status.recording is not None:
        parts.append(f"recording {status.recording:.1f} s")
    return "  ".join(parts)


def run_live(live, seconds: float | None, interval: float = 1.0, on_status=None) -> int:
    """Start ``live`` and print a status line every ``interval`` s until ``seconds`` pass, Ctrl-C, or the source
    ends; stop it and return the exit status (problems in the stream: :data:`EXIT_INPUT_PROBLEMS`). ``on_status``
    is also given each status (OSC's signal quality)."""
    live.start()
    start = time.monotonic()
    next_print = start + interval
    ended = False
    try:
        while seconds is None or time.monotonic() - start < seconds:
            wake = min(next_print, start + seconds) if seconds is not None else next_print
            if live.source.wait(max(0.0, wake - time.monotonic())):
                ended = True  # the source ended by itself: a replay reached its end, or the device failed
                break
            if time.monotonic() >= next_print:
                status = live.status()
                print(status_line(time.monotonic() - start, status), flush=True)
                if on_status is not None:
                    on_status(status)
                next_print += interval
    except (KeyboardInterrupt, Terminate):
        print("stopping", flush=True)
    silent = "" if ended else silence(live, time.monotonic() - start)
    with interrupts_held():  # (a second Ctrl-C must not cut the recording's close short)
        summary = live.stop()
    if summary is not None:
        aux = f" (and {summary.aux_samples} aux samples)" if summary.aux_samples else ""
        print(f"recorded {summary.samples} samples and {summary.markers} markers{aux} in {summary.seconds:.1f} s "
              f"to {summary.path}", flush=True)
    error = live.source.error or live.chunk_error or (live.recorder.error if live.recorder else None)
    if error is not None:
        print(f"bci-dream: error: {error}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    stats = live.pipeline.stats
    problems = [f"{n} {what}" for n, what in ((stats.nonfinite_values, "NaN or infinite values"),
                                              (stats.timestamps_backwards, "timestamps that ran backwards"),
                                              (stats.timestamp_jumps, "timestamp jumps")) if n]
    low = rate_shortfall(stats, live.info.sfreq)
    if low:
        print(f"bci-dream: warning: {low}: samples were lost before they reached bci-dream (a weak Bluetooth link, "
              "a busy USB hub); what arrived was kept (exit status 3)", file=sys.stderr, flush=True)
    if problems:
        print(f"bci-dream: warning: the stream had {', '.join(problems)}; every sample was kept "
              "(exit status 3)", file=sys.stderr, flush=True)
    if silent:
        print(f"bci-dream: warning: {silent}; what arrived was kept (exit status 3)", file=sys.stderr, flush=True)
    return EXIT_INPUT_PROBLEMS if problems or low or silent else EXIT_OK


def silence(live, ran_s: float) -> str:
    """``"the stream sent nothing for the last 10.2 s ..."`` when ``live``'s samples stopped coming well before
    it was stopped (a device switched off, an LSL outlet that went away), else ``""``."""
    from pylsl import local_clock

    last = live.pipeline.stats.last_arrival
    limit = max(2.0, live.source.stall_timeout)
    if last is None:
        return f"no samples arrived in {ran_s:.1f} s (is the device on, the outlet pushing?)" if ran_s > limit else ""
    quiet = local_clock() - last
    if quiet <= limit:
        return ""
    return (f"the stream sent nothing for the last {quiet:.1f} s before it was stopped (the device or the LSL "
            "outlet went away)")


@contextlib.contextmanager
def interrupts_held():
    """Ctrl-C is ignored inside (on the main thread; elsewhere nothing changes): shutting down finishes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def rate_shortfall(stats, nominal: float) -> str:
    """``"only 40 % of the nominal 125 Hz arrived (50.1 Hz; 812 gaps, ...)"`` when a stream's effective rate is far
    below its nominal one (samples lost on the way: Bluetooth, a busy USB hub), else ``""``."""
    from bci_dream.acquisition.pipeline import LOW_RATE_SHARE  # (the pipeline loads scipy: only once streaming)

    rate = stats.effective_rate
    if not nominal or rate is None or stats.samples < 2 * nominal or rate >= LOW_RATE_SHARE * nominal:
        return ""
    gaps = f"; {stats.gaps_text()}" if stats.gaps else ""
    return f"only {100 * rate / nominal:.0f} % of the nominal {nominal:g} Hz arrived ({rate:.1f} Hz{gaps})"


def run_engine(live, args: argparse.Namespace) -> int:
    """Load the models, run the engine over ``live`` until it ends, write images and ``frames.jsonl`` to
    ``args.out`` and print the summary. The stream is stopped whatever happens (a model that cannot be
    loaded, Ctrl-C while compiling)."""
    from bci_dream.generation.session_models import RouteChoice, load_generation_models
    from bci_dream.runtime.creative import creative_settings, start_creative
    from bci_dream.runtime.engine import Engine
    from bci_dream.runtime.frame_writer import FrameWriter, summary, write_session
    from bci_dream.runtime.outputs import SessionOutputs
    from bci_dream.runtime.routes import RouteSettings

    engine = writer = monitor = outputs = None
    try:
        # (settings and outputs that cannot work are said before the models load: a port in use, a bad address)
        creative_opts = creative_options(args)
        creative_settings(creative_opts).check()
        if args.negative_prompt and not (args.guidance or 0) > 1:
            raise BciDreamError("a negative prompt needs classifier-free guidance: a guidance scale above 1 "
                                "(--guidance); distilled models such as SD-Turbo run without it")
        outputs = SessionOutputs(osc=args.osc, osc_listen=args.osc_listen, video=args.video,
                                 markers=Path(args.out) / "markers.jsonl", lsl_frames=args.lsl_frames, live=live,
                                 markers_udp=args.markers_udp, markers_lsl=args.markers_lsl, ndi=args.ndi,
                                 spout=args.spout, syphon=args.syphon,
                                 virtual_camera=(args.size or 0) if args.virtual_camera else None)
        writer = FrameWriter(args.out)
        choice = RouteChoice(**{**route_options(args), "prompt": creative_opts["prompt"],
                                "negative_prompt": creative_opts["negative_prompt"]})
        models = load_generation_models(args.model, args.checkpoint, device=args.gpu, size=args.size,
                                        steps=args.steps, seed=args.seed, compile=args.compile or False,
                                        choice=choice, guidance=creative_opts["guidance"], backend=args.backend,
                                        encoder_precision=args.encoder_precision)
        generator = models.generator
        creative, monitor = start_creative(live, generator, models.route, creative_opts,
                                           features=bool(args.osc), commands=args.osc_listen is not None)
        route = RouteSettings(models.route, bank=models.bank, k=args.bank_k, temperature=args.bank_temperature)
        engine = Engine(live, models.eeg_model, generator, hop_s=args.hop, similarity_threshold=args.similarity,
                        interpolation_steps=args.interpolate, untrained_conditioning=models.untrained,
                        device=generator.device, encoder=models.encoder, channel_naming=models.channel_naming,
                        route=route, creative=creative)
        engine.add_listener(writer)
        outputs.set_monitor(monitor)
        outputs.attach(engine, creative)
        write_session(args.out, model=generator.model_id, route=models.route, seed=args.seed,
                      training=models.training, creative=creative_opts if creative is not None else None)
        if generator.is_preview:
            why = "SD-Turbo is not available" if generator.notice else "random weights: the images mean nothing"
            print(f"generating with the untrained preview model '{generator.model_id}' ({why})", flush=True)
        bank = f", bank of {len(models.bank)} images" if models.bank is not None else ""
        text = f" · {generator.text.label}" if models.route == "ip-adapter" and generator.text is not None else ""
        backend = f" · back end {generator.backend} (largest pixel difference from eager " \
                  f"{generator.backend_difference} of 255)" if generator.backend != "eager" else ""
        encoder = f"EEG encoder {models.encoder.precision}"
        print(f"model {generator.model_id} · route {models.route}{bank}{text}{backend} · {encoder} · "
              f"{models.training}", flush=True)
        if creative is not None:
            print(f"creative mode: {creative.describe()}", flush=True)
        if outputs.describe():
            print(f"outputs: {outputs.describe()}", flush=True)
        engine.start()
        if generator.compiled:
            print("compiling the diffusion model for this session (a minute or more the first time) ...", flush=True)
            while not engine.ready.wait(0.5):
                pass  # (a wait with a timeout, so that Ctrl-C still ends it)
        started = time.monotonic()
        code = run_live(live, args.seconds, on_status=outputs.quality)
    except BaseException:
        live.stop()
        raise
    finally:
        if engine is not None:
            engine.stop()
        if monitor is not None:
            monitor.stop()
        if outputs is not None:
            outputs.close()
        if writer is not None:
            writer.close()
    if engine.error is not None:
        print(f"bci-dream: error: generation stopped: {engine.error}", file=sys.stderr, flush=True)
        code = EXIT_ERROR
    print(f"{summary(writer.tally, time.monotonic() - started)}; images and frames.jsonl in {args.out}",
          flush=True)
    return code
