"""Latency from a sample pushed into a real LSL outlet to the first Window that contains it.

An outlet runs in a subprocess (this script started again with ``--role outlet``): 16 channels at 250 Hz,
float32, pushed in real time in small chunks (every ``--push-ms``); channel 0 holds the sample index and
the outlet records ``pylsl.local_clock()`` just before each ``push_chunk`` (the push time of every sample
in it). ``local_clock`` is the system's monotonic clock, the same in both processes.

Two phases, each with a fresh outlet, same conditions:

1. LSL transport alone: a bare pylsl inlet loop (wait up to 50 ms for one sample, then take what else is
   there, into a numpy buffer: the same pulls LslSource makes) records when each sample index is first
   seen.
2. The app path: ``LslSource`` -> ``LiveStream`` (``StreamPipeline``: filters, ring buffers, quality) and a
   consumer thread that waits with ``pipeline.wait_for_samples(...)`` and calls ``Windower.latest()`` on
   every new data (no hop). For every sample newly covered by a window it records ``local_clock()`` right
   after the window was made minus the sample's push time. The ring index -> sample index mapping is read
   from the raw ring buffer (channel 0) after the clock is read. With a pull interval (LslSource's default,
   50 ms) new data comes that often to a reader that waits for it: this is the latency of the consumers that
   do not read windows (recorder, re-publisher, quality, the GUI's traces).

``--read-ms R`` adds two phases with a reader on its own schedule, every R ms, as the engine reads a window per
hop: a bare inlet that takes whatever it holds at each read, and ``LiveStream.windower().latest()``, which drains
the source first. Each records the age of the newest sample it holds at each read (read time - its push time); the
difference of the two is what the app adds for a window reader at any pull interval.

Samples in the first ``--warmup`` seconds (connection backlog, first full window) are left out.
Goal: p99 of (window latency) - p99 of (transport latency) under 5 ms.

Run: python benchmarks/lsl_latency.py [--seconds 20] [--push-ms 4] [--pull-interval S] [--read-ms 50]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

N_CHANNELS = 16
RATE = 250.0
LABELS = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8")
GOAL_MS = 5.0


# ----------------------------------------------------------------------------------------------- outlet


def run_outlet(args: argparse.Namespace) -> int:
    """Push 16 ch at 250 Hz in real time until stdin closes; save per-sample push times to ``--times``."""
    import pylsl

    info = pylsl.StreamInfo(args.name, "EEG", N_CHANNELS, RATE, "float32", args.name)
    chans = info.desc().append_child("channels")
    for label in LABELS[:N_CHANNELS]:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    outlet = pylsl.StreamOutlet(info)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    max_n = int(RATE * args.max_seconds)
    push_times = np.full(max_n, np.nan)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((int(RATE), N_CHANNELS)) * 10).astype(np.float32)
    period = args.push_ms / 1000.0
    print("ready", flush=True)
    t0 = pylsl.local_clock()
    next_index = 0
    while not stop.is_set() and next_index < max_n:
        due = min(int((pylsl.local_clock() - t0) * RATE) + 1, max_n)
        if due > next_index:
            idx = np.arange(next_index, due)
            samples = noise[idx % noise.shape[0]].copy()
            samples[:, 0] = idx
            t_push = pylsl.local_clock()
            outlet.push_chunk(samples, t0 + (due - 1) / RATE)
            push_times[next_index:due] = t_push
            next_index = due
        time.sleep(period)
    np.save(args.times, push_times[:next_index])
    del outlet
    return 0


class Outlet:
    """The outlet subprocess: started on enter, stopped (stdin closed) on :meth:`finish`."""

    def __init__(self, name: str, push_ms: float, max_seconds: float, times_path: Path) -> None:
        self.times_path = times_path
        cmd = [sys.executable, os.path.abspath(__file__), "--role", "outlet", "--name", name,
               "--push-ms", str(push_ms), "--max-seconds", str(max_seconds), "--times", str(times_path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"outlet process did not start (said {line!r})")

    def finish(self) -> np.ndarray:
        """Stop the outlet (after the inlets of this process are closed) and return its push times."""
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        return np.load(self.times_path)


# ---------------------------------------------------------------------------------------------- phases


def phase_transport(name: str, seconds: float) -> dict[int, float]:
    """Bare pylsl inlet: local_clock() when each sample index is first seen."""
    import pylsl

    found = pylsl.resolve_bypred(f"name='{name}'", minimum=1, timeout=10.0)
    if not found:
        raise RuntimeError("outlet not found")
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, max_chunklen=0, recover=True,
                              processing_flags=pylsl.proc_clocksync | pylsl.proc_dejitter)
    inlet.open_stream(timeout=10.0)
    buf = np.zeros((int(RATE), N_CHANNELS), np.float32)
    seen: dict[int, float] = {}
    end = pylsl.local_clock() + seconds
    while pylsl.local_clock() < end:
        _, first = inlet.pull_chunk(timeout=0.05, max_samples=1, dest_obj=buf)
        if len(first) == 0:
            continue
        t = pylsl.local_clock()
        _, rest = inlet.pull_chunk(timeout=0.0, max_samples=buf.shape[0] - 1, dest_obj=buf[1:])
        n = 1 + len(rest)
        for i in buf[:n, 0].astype(np.int64).tolist():
            seen.setdefault(i, t)
    inlet.close_stream()
    del inlet
    return seen


def phase_app(name: str, seconds: float, pull_interval: float) -> tuple[dict[int, float], list[float], dict]:
    """LslSource -> LiveStream -> Windower.latest() on every new data; when each sample index is first in a window."""
    from pylsl import local_clock

    from bci_dream.acquisition.live import LiveStream
    from bci_dream.acquisition.lsl_source import LslSource

    pulled: dict[int, float] = {}
    filtered: dict[int, float] = {}

    class TimedLslSource(LslSource):
        """LslSource that also notes when each sample index left its inlet pull (for the stage split)."""

        def _pull(self, inlet, buffer, *args):
            n, ts = super()._pull(inlet, buffer, *args)
            if n:
                t = local_clock()
                for i in buffer[:n, 0].astype(np.int64).tolist():
                    pulled.setdefault(i, t)
            return n, ts

    source_cls = TimedLslSource if hasattr(LslSource, "_pull") else LslSource
    live = LiveStream(source_cls(stream_name=name, stream_type="EEG", timeout=10.0, pull_interval=pull_interval))
    live.open()
    pipe = live.pipeline

    def after_filter(chunk) -> None:
        t = local_clock()
        for i in chunk.samples[:, 0].astype(np.int64).tolist():
            filtered.setdefault(i, t)

    pipe.add_listener(after_filter)
    windower = live.windower()  # (it drains the source before each read, as the engine's does)
    covered: dict[int, float] = {}
    window_ms: list[float] = []
    stop = threading.Event()
    counts = {"windows": 0, "wakeups": 0, "index_gaps": 0}

    def consume() -> None:
        seen_total = 0
        prev_end: int | None = None
        while not stop.is_set():
            total = pipe.wait_for_samples(seen_total, timeout=0.2)
            if total <= seen_total:
                continue
            seen_total = total
            counts["wakeups"] += 1
            t_a = time.perf_counter()
            window = windower.latest()
            t = local_clock()
            window_ms.append((time.perf_counter() - t_a) * 1e3)
            if window is None:
                continue
            counts["windows"] += 1
            start = window.index_end - windower.n_core if prev_end is None else prev_end
            if window.index_end > start:
                res = pipe.raw.range(start, window.index_end)
                for i in res.data[:, 0].astype(np.int64).tolist():
                    covered.setdefault(i, t)
            prev_end = window.index_end

    consumer = threading.Thread(target=consume, name="consumer", daemon=True)
    consumer.start()
    live.start()
    time.sleep(seconds)
    stop.set()
    consumer.join(5)
    live.stop()  # closes the inlet before the outlet goes
    counts["dropped"] = live.source.dropped_samples
    counts["samples"] = pipe.stats.samples
    counts["chunks"] = pipe.stats.chunks
    counts["window_T"] = windower.n_samples
    counts["window_src"] = windower.n_core
    counts["pulled"] = pulled
    counts["filtered"] = filtered
    return covered, window_ms, counts


def phase_scheduled(name: str, seconds: float, pull_interval: float, read_ms: float, app: bool) -> list[tuple[float, int]]:
    """A reader on its own schedule (every ``read_ms``, as the engine reads a window per hop): at each read, the
    newest sample it got and when. ``app``: ``LiveStream.windower().latest()`` (drains the source, then the window);
    else a bare inlet taking whatever it holds (``pull_chunk(timeout=0)``) at the same moments."""
    import pylsl

    reads: list[tuple[float, int]] = []
    if app:
        from bci_dream.acquisition.live import LiveStream
        from bci_dream.acquisition.lsl_source import LslSource

        live = LiveStream(LslSource(stream_name=name, stream_type="EEG", timeout=10.0, pull_interval=pull_interval))
        live.open()
        windower = live.windower()
        live.start()

        def read() -> int | None:
            window = windower.latest()
            if window is None:
                return None
            return int(live.pipeline.raw.range(window.index_end - 1, window.index_end).data[0, 0])
    else:
        found = pylsl.resolve_bypred(f"name='{name}'", minimum=1, timeout=10.0)
        inlet = pylsl.StreamInlet(found[0], max_buflen=60, max_chunklen=0, recover=True,
                                  processing_flags=pylsl.proc_clocksync | pylsl.proc_dejitter)
        inlet.open_stream(timeout=10.0)
        buf = np.zeros((int(RATE), N_CHANNELS), np.float32)
        newest = [None]

        def read() -> int | None:
            _, stamps = inlet.pull_chunk(timeout=0.0, max_samples=buf.shape[0], dest_obj=buf)
            if len(stamps):
                newest[0] = int(buf[len(stamps) - 1, 0])
            return newest[0]
    tick = time.monotonic()
    end = tick + seconds
    while tick < end:
        tick += read_ms / 1000
        time.sleep(max(0.0, tick - time.monotonic()))
        index = read()
        if index is not None:
            reads.append((pylsl.local_clock(), index))
    if app:
        live.stop()
    else:
        inlet.close_stream()
    return reads


def ages(reads: list[tuple[float, int]], push_times: np.ndarray, warmup: float) -> np.ndarray:
    """ms from the push of the newest sample a read held to the read, after the first ``warmup`` seconds."""
    t = np.array([r[0] for r in reads])
    idx = np.array([r[1] for r in reads], np.int64)
    ok = (idx >= 0) & (idx < push_times.shape[0])
    t, idx = t[ok], idx[ok]
    if idx.size == 0:
        return np.empty(0)
    keep = t >= t[0] + warmup
    return (t[keep] - push_times[idx[keep]]) * 1e3


# ------------------------------------------------------------------------------------------------ report


def latencies(first_seen: dict[int, float], push_times: np.ndarray, warmup: float) -> np.ndarray:
    idx = np.fromiter(first_seen.keys(), np.int64, len(first_seen))
    t = np.fromiter(first_seen.values(), np.float64, len(first_seen))
    ok = (idx >= 0) & (idx < push_times.shape[0])
    idx, t = idx[ok], t[ok]
    if idx.size == 0:
        return np.empty(0)
    t_start = push_times[idx].min() + warmup
    keep = push_times[idx] >= t_start
    return (t[keep] - push_times[idx[keep]]) * 1e3


def stage_split(covered: dict[int, float], pulled: dict[int, float], filtered: dict[int, float],
                push_times: np.ndarray, warmup: float) -> dict[str, np.ndarray]:
    """Per-sample ms of push -> pulled by LslSource -> through the pipeline -> in a window."""
    idx = np.array(sorted(set(covered) & set(pulled) & set(filtered)), np.int64)
    idx = idx[(idx >= 0) & (idx < push_times.shape[0])]
    if idx.size == 0:
        return {}
    t_push = push_times[idx]
    keep = t_push >= t_push.min() + warmup
    idx, t_push = idx[keep], t_push[keep]
    if idx.size == 0:
        return {}
    t_pull = np.array([pulled[i] for i in idx.tolist()])
    t_filt = np.array([filtered[i] for i in idx.tolist()])
    t_win = np.array([covered[i] for i in idx.tolist()])
    return {
        "push -> pulled by LslSource (transport, in the app)": (t_pull - t_push) * 1e3,
        "pulled -> through StreamPipeline (filters, ring buffers)": (t_filt - t_pull) * 1e3,
        "pipeline -> in a Window (quality, wake-up, Windower.latest)": (t_win - t_filt) * 1e3,
    }


def describe(ms: np.ndarray) -> str:
    if ms.size == 0:
        return "no samples"
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return (f"n={ms.size}  p50 {p50:.2f} ms  p90 {p90:.2f} ms  p99 {p99:.2f} ms  "
            f"max {ms.max():.2f} ms  min {ms.min():.2f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="seconds measured in each phase (default 20)")
    p.add_argument("--push-ms", type=float, default=4.0, help="outlet push period in ms (default 4: ~1 sample a push)")
    p.add_argument("--pull-interval", type=float, default=None,
                   help="LslSource's seconds between pulls that bring samples (default: its PULL_INTERVAL)")
    p.add_argument("--read-ms", type=float, default=0.0,
                   help="also read on a schedule, every this many ms: newest-sample age, bare inlet vs window")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of samples left out at the start (default 3)")
    p.add_argument("--role", default="main", choices=("main", "outlet"), help=argparse.SUPPRESS)
    p.add_argument("--name", default="", help=argparse.SUPPRESS)
    p.add_argument("--max-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--times", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "outlet":
        return run_outlet(args)
    logging.basicConfig(level=logging.WARNING)
    if args.pull_interval is None:
        from bci_dream.acquisition.lsl_source import PULL_INTERVAL

        args.pull_interval = PULL_INTERVAL

    import tempfile

    import pylsl

    print(f"outlet: {N_CHANNELS} ch float32 at {RATE:g} Hz in a subprocess, push every {args.push_ms:g} ms; "
          f"{args.seconds:g} s per phase, first {args.warmup:g} s left out; LslSource pull interval "
          f"{args.pull_interval * 1000:g} ms; pylsl {pylsl.__version__}, "
          f"liblsl {pylsl.library_version()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    max_seconds = args.seconds + 30.0
    with tempfile.TemporaryDirectory() as tmp:
        name = f"bench-transport-{os.getpid()}"
        outlet = Outlet(name, args.push_ms, max_seconds, Path(tmp) / "t1.npy")
        try:
            seen = phase_transport(name, args.seconds)
        finally:
            push1 = outlet.finish()
        transport = latencies(seen, push1, args.warmup)
        lost1 = push1.shape[0] - len(seen)

        name = f"bench-app-{os.getpid()}"
        outlet = Outlet(name, args.push_ms, max_seconds, Path(tmp) / "t2.npy")
        try:
            covered, window_ms, counts = phase_app(name, args.seconds, args.pull_interval)
        finally:
            push2 = outlet.finish()
        app = latencies(covered, push2, args.warmup)

        scheduled = {}
        if args.read_ms > 0:
            for label, app_side in (("bare inlet", False), ("window (drain + Windower.latest)", True)):
                name = f"bench-read-{int(app_side)}-{os.getpid()}"
                outlet = Outlet(name, args.push_ms, max_seconds, Path(tmp) / f"r{int(app_side)}.npy")
                try:
                    reads = phase_scheduled(name, args.seconds, args.pull_interval, args.read_ms, app_side)
                finally:
                    pushed = outlet.finish()
                scheduled[label] = ages(reads, pushed, args.warmup)

    print(f"load average after the run: {os.getloadavg()[0]:.2f} (other processes on this machine add latency spikes)")
    idx = np.array(sorted(covered), np.int64)
    gaps = int(np.count_nonzero(np.diff(idx) != 1)) if idx.size > 1 else 0
    wms = np.asarray(window_ms)
    print()
    print(f"LSL transport alone (bare inlet, first seen in a pull): {describe(transport)}")
    print(f"  samples pushed {push1.shape[0]}, seen {len(seen)} (the difference was pushed before the inlet "
          f"connected or after it closed: {lost1})")
    print(f"push -> Window (LslSource, LiveStream, Windower.latest): {describe(app)}")
    print(f"  samples pushed {push2.shape[0]}, received {counts['samples']} in {counts['chunks']} chunks, "
          f"covered by windows {len(covered)} (index gaps {gaps}), wake-ups {counts['wakeups']}, "
          f"windows {counts['windows']} of {counts['window_T']} samples ({counts['window_src']} source samples)")
    if wms.size:
        print(f"  Windower.latest() itself: p50 {np.percentile(wms, 50):.2f} ms  p99 {np.percentile(wms, 99):.2f} ms")
    stages = stage_split(covered, counts["pulled"], counts["filtered"], push2, args.warmup)
    if stages:
        print("  the same samples, stage by stage (p50 / p99 / max ms):")
        for label, ms in stages.items():
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"    {label:<58} {p50:6.2f} / {p99:6.2f} / {ms.max():6.2f}")
    if scheduled:
        print(f"reads every {args.read_ms:g} ms, age of the newest sample held at each read:")
        for label, ms in scheduled.items():
            print(f"  {label:<36} {describe(ms)}")
        if all(ms.size for ms in scheduled.values()):
            (b50, b99), (w50, w99) = (np.percentile(ms, [50, 99]) for ms in scheduled.values())
            print(f"  window beyond the bare inlet: p50 {w50 - b50:+.2f} ms  p99 {w99 - b99:+.2f} ms  "
                  f"(goal: p99 < {GOAL_MS:g} ms)")
    if transport.size and app.size:
        t50, t99 = np.percentile(transport, [50, 99])
        a50, a99 = np.percentile(app, [50, 99])
        print(f"beyond the LSL transport: p50 {a50 - t50:+.2f} ms  p99 {a99 - t99:+.2f} ms  (goal: p99 < {GOAL_MS:g} ms)")
        if stages:
            own = sum(ms for label, ms in stages.items() if not label.startswith("push"))
            print(f"  per sample, pulled by LslSource -> in a Window: p50 {np.percentile(own, 50):.2f} ms  "
                  f"p99 {np.percentile(own, 99):.2f} ms  max {own.max():.2f} ms")
        verdict = "meets" if a99 - t99 < GOAL_MS else "misses"
        print()
        line = (f"SUMMARY lsl_latency: push->window on new data p50 {a50:.2f} ms / p99 {a99:.2f} ms; transport p50 "
                f"{t50:.2f} ms / p99 {t99:.2f} ms; beyond transport p99 {a99 - t99:+.2f} ms ({verdict} the "
                f"{GOAL_MS:g} ms goal)")
        if scheduled and all(ms.size for ms in scheduled.values()):
            (b50, b99), (w50, w99) = (np.percentile(ms, [50, 99]) for ms in scheduled.values())
            line += (f"; reads every {args.read_ms:g} ms: window beyond the bare inlet p99 {w99 - b99:+.2f} ms "
                     f"({'meets' if w99 - b99 < GOAL_MS else 'misses'} the {GOAL_MS:g} ms goal)")
        print(line)
    else:
        print()
        print("SUMMARY lsl_latency: no latencies measured (see above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
