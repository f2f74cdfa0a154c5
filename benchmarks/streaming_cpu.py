"""CPU used while streaming 16 channels at 250 Hz in real time, with filters and quality on.

Three runs of ``--seconds`` each, in one process, nothing reading the buffers (the main thread sleeps):

a. replay of a 16-channel 250 Hz .xdf (written into a temporary folder first) at speed 1 through
   ``LiveStream(XdfReplaySource(...))``;
b. BrainFlow's synthetic board through ``LiveStream(BrainFlowSource(get_profile("synthetic")))``.
   BrainFlow generates the synthetic signal on a thread of its own inside this process; its CPU time is
   included in the process figure (and shown on its own line in the per-thread table);
c. an idle baseline: the same process with no stream, for the same time (run last, so that any thread
   left behind by the streams shows up).

Each run waits ``--settle`` seconds after start (file reading, board start-up) before measuring.
Figures: process CPU time (``time.process_time``) over wall time as % of one core, user/system split and
context switches (``resource.getrusage``), and CPU per thread (``/proc/self/task``).

Goal: at most 3% of one core while streaming.

With ``--decompose``, also times paced loops (a thread that only wakes every 4/20/50/100 ms, and one that
also pushes a precomputed chunk into a StreamPipeline) to separate wake-up cost from per-chunk work.
With ``--profile``, cProfiles the streaming threads (inflates the figures).

Run: python benchmarks/streaming_cpu.py [--seconds 30] [--decompose] [--profile]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.acquisition.live import LiveStream

GOAL_PERCENT = 3.0
LABELS = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every thread of this process: {tid: (name, seconds)}."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out = {}
    for tid_s in os.listdir("/proc/self/task"):
        tid = int(tid_s)
        base = f"/proc/self/task/{tid_s}"
        try:
            with open(f"{base}/schedstat") as f:  # nanoseconds on CPU (finer than the stat ticks)
                secs = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            try:
                with open(f"{base}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                secs = (int(fields[11]) + int(fields[12])) / CLK_TCK
            except (OSError, ValueError, IndexError):
                continue
        try:
            with open(f"{base}/comm") as f:
                comm = f.read().strip()
        except OSError:
            comm = "?"
        if tid == os.getpid():
            name = "main (incl. these /proc reads)"
        else:
            name = names.get(tid, f"native:{comm}")
        out[tid] = (name, secs)
    return out


@dataclass
class Usage:
    wall: float
    cpu: float
    user: float
    system: float
    voluntary_switches: int
    involuntary_switches: int
    threads: list[tuple[str, float]]  # (name, cpu seconds during the run), threads alive at both ends

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu / self.wall


def measure(seconds: float) -> Usage:
    """Sleep ``seconds`` on the main thread and report what the process used meanwhile."""
    th0, r0 = thread_cpu(), resource.getrusage(resource.RUSAGE_SELF)
    c0, t0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = time.process_time(), time.perf_counter()
    th1, r1 = thread_cpu(), resource.getrusage(resource.RUSAGE_SELF)
    threads = [(name, secs - th0[tid][1]) for tid, (name, secs) in th1.items() if tid in th0]
    threads.sort(key=lambda x: -x[1])
    return Usage(t1 - t0, c1 - c0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime,
                 r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw, threads)


def report(label: str, u: Usage, extra: str = "") -> None:
    print(f"{label}: {u.percent:.2f}% of one core  (CPU {u.cpu:.3f} s in {u.wall:.1f} s wall; user {u.user:.3f} s, "
          f"system {u.system:.3f} s; context switches {u.voluntary_switches / u.wall:.0f}/s voluntary, "
          f"{u.involuntary_switches / u.wall:.1f}/s involuntary)")
    if extra:
        print(f"  {extra}")
    for name, secs in u.threads:
        if secs > 0 or len(u.threads) <= 8:
            print(f"    thread {name:<36} {100 * secs / u.wall:6.2f}% of one core")


def write_xdf(path: Path, seconds: float, sfreq: float = 250.0, n_ch: int = 16) -> None:
    from bci_dream.io.xdf_writer import XdfWriter

    rng = np.random.default_rng(0)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    # 10 Hz alpha + noise + a DC offset, in µV
    data = (20 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.standard_normal((n, n_ch)) * 5 + 1000).astype(np.float32)
    with XdfWriter(path) as w:
        sid = w.add_stream("CpuBench", "EEG", n_ch, sfreq, channel_labels=list(LABELS[:n_ch]),
                           channel_units="microvolts")
        for start in range(0, n, int(sfreq)):
            w.write_samples(sid, data[start:start + int(sfreq)], 1000.0 + t[start:start + int(sfreq)])


class ThreadProfiler:
    """cProfile on every thread started from now on (threading.setprofile hook), merged at the end."""

    def __init__(self) -> None:
        import cProfile

        self._cProfile = cProfile
        self.profiles = []
        self._lock = threading.Lock()

    def _hook(self, frame, event, arg):
        threading.setprofile(None)
        import sys as _sys

        _sys.setprofile(None)
        prof = self._cProfile.Profile()
        with self._lock:
            self.profiles.append(prof)
        prof.enable()

    def start(self) -> None:
        threading.setprofile(self._hook)

    def stop_and_print(self, top: int = 25) -> None:
        import io
        import pstats

        threading.setprofile(None)
        for prof in self.profiles:
            try:
                prof.disable()
            except Exception:  # noqa: BLE001, S110 - a profiler of a thread that already ended
                pass
        if not self.profiles:
            print("  (no thread was profiled)")
            return
        buf = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=buf)
        for prof in self.profiles[1:]:
            try:
                stats.add(prof)
            except TypeError:
                pass
        stats.sort_stats("tottime").print_stats(top)
        print("\n".join("  " + line for line in buf.getvalue().splitlines() if line.strip()))


def run_stream(live: LiveStream, seconds: float, settle: float) -> tuple[Usage, str]:
    live.start()
    time.sleep(settle)
    pipe = live.pipeline
    n0, k0 = pipe.stats.samples, pipe.stats.chunks
    u = measure(seconds)
    n1, k1 = pipe.stats.samples, pipe.stats.chunks
    state = live.source.state.value
    live.stop()
    rate = (n1 - n0) / u.wall
    chunks = (k1 - k0) / u.wall
    extra = (f"source state {state}; {rate:.1f} samples/s received, {chunks:.1f} chunks/s "
             f"({(n1 - n0) / max(k1 - k0, 1):.1f} samples per chunk); quality channels: {len(pipe.quality)}")
    return u, extra


def paced_loop(seconds: float, period: float, n: int | None) -> tuple[float, int, float, float]:
    """A thread that wakes every ``period`` s and, if ``n``, pushes a precomputed ``n``-sample chunk into a
    StreamPipeline (16 ch, 250 Hz, filters and quality on).

    Returns (thread CPU s, iterations, median µs of one push when paced, median µs of one push back to back).
    """
    from bci_dream.acquisition.pipeline import StreamPipeline
    from bci_dream.core.types import Chunk, StreamInfo

    pipe = StreamPipeline(StreamInfo("paced", LABELS, 250.0), filters=FilterSettings((1.0, 45.0), 50.0))
    data = (np.random.default_rng(0).standard_normal((max(n or 1, 1), 16)) * 10).astype(np.float32)
    stop = threading.Event()
    out = {}

    def loop() -> None:
        t = 0.0
        hot, paced = [], []
        for _ in range(300 if n else 0):  # back to back: caches warm
            a = time.perf_counter()
            pipe.push(Chunk(data, t + np.arange(n) / 250.0))
            hot.append(time.perf_counter() - a)
            t += n / 250.0
        c0, k = time.thread_time(), 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            stop.wait(period)
            if n:
                a = time.perf_counter()
                pipe.push(Chunk(data, t + np.arange(n) / 250.0))
                paced.append(time.perf_counter() - a)
                t += n / 250.0
            k += 1
        out["cpu"], out["k"] = time.thread_time() - c0, k
        out["paced"] = float(np.median(paced)) * 1e6 if paced else float("nan")
        out["hot"] = float(np.median(hot)) * 1e6 if hot else float("nan")

    th = threading.Thread(target=loop, name="paced")
    th.start()
    th.join()
    return out["cpu"], out["k"], out["paced"], out["hot"]


def decompose(seconds: float) -> None:
    """Where the streaming CPU goes: wake-ups alone vs wake-ups that push a chunk, at several paces."""
    print()
    print(f"decomposition ({seconds:g} s each; one Python thread, thread CPU time; 'push' = StreamPipeline.push "
          "of a precomputed chunk, filters and quality on):")
    for period, n in ((0.004, None), (0.004, 1), (0.02, None), (0.02, 5), (0.05, None), (0.05, 12), (0.1, None), (0.1, 25)):
        cpu, k, paced, hot = paced_loop(seconds, period, n)
        what = f"wake every {period * 1e3:>3.0f} ms" + (f", push {n:>2} samples" if n else ", nothing else    ")
        line = f"  {what}: {100 * cpu / seconds:5.2f}% of one core, {cpu / max(k, 1) * 1e6:6.0f} us CPU per wake-up"
        if n:
            line += f"; one push takes {paced:6.0f} us paced vs {hot:4.0f} us back to back (median)"
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run (default 30)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after start before measuring (default 2)")
    p.add_argument("--only", choices=("replay", "synthetic", "idle"), action="append",
                   help="run only these (repeatable)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile the streaming threads (adds overhead; figures then are not the real ones)")
    p.add_argument("--decompose", action="store_true",
                   help="also time paced loops (wake-ups alone, wake-ups that push a chunk) to show where CPU goes")
    p.add_argument("--decompose-seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    runs = args.only or ["replay", "synthetic", "idle"]
    print(f"16 ch at 250 Hz in real time, filters (1-45 Hz band-pass, 50 Hz notch) and quality on; "
          f"{args.seconds:g} s per run after {args.settle:g} s settling; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}")
    profiler = ThreadProfiler() if args.profile else None
    if profiler:
        print("PROFILING: cProfile hooks slow every Python call down, so the CPU figures below are inflated")
        profiler.start()
    results: dict[str, float] = {}

    if "replay" in runs:
        from bci_dream.acquisition.xdf_replay import XdfReplaySource

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cpu_bench.xdf"
            write_xdf(path, args.seconds + args.settle + 10)
            live = LiveStream(XdfReplaySource(path, speed=1.0), filters=FilterSettings((1.0, 45.0), 50.0))
            live.open()
            u, extra = run_stream(live, args.seconds, args.settle)
        print()
        report("(a) .xdf replay at speed 1 via LiveStream", u, extra)
        results["replay"] = u.percent

    if "synthetic" in runs:
        from bci_dream.acquisition.brainflow_source import BrainFlowSource
        from bci_dream.devices import get_profile

        profile = get_profile("synthetic")
        try:
            live = LiveStream(BrainFlowSource(profile), filters=FilterSettings(profile.bandpass, profile.notch),
                              rail_uv=profile.rail_uv)
            live.open()
        except Exception as e:  # noqa: BLE001 - e.g. brainflow cannot load its library (it needs setuptools<81 for pkg_resources)
            print()
            print(f"(b) BrainFlow synthetic board: SKIPPED, could not open it: {type(e).__name__}: {e}")
        else:
            u, extra = run_stream(live, args.seconds, args.settle)
            print()
            report("(b) BrainFlow synthetic board via LiveStream", u, extra)
            print("  note: BrainFlow's synthetic generator thread (native, not Python) runs in this process and "
                  "is included above; a real headset's driver thread would take its place")
            results["synthetic"] = u.percent

    if profiler:
        print()
        print("profile of the streaming threads (tottime order):")
        profiler.stop_and_print()

    if "idle" in runs:
        u = measure(args.seconds)
        print()
        report("(c) idle baseline, same process, no stream", u,
               f"threads alive: {len(os.listdir('/proc/self/task'))}")
        results["idle"] = u.percent

    if args.decompose:
        decompose(args.decompose_seconds)

    print()
    parts = [f"{k} {v:.2f}%" for k, v in results.items()]
    worst = max((v for k, v in results.items() if k != "idle"), default=None)
    verdict = "" if worst is None else (" (meets" if worst <= GOAL_PERCENT else " (misses") + f" the {GOAL_PERCENT:g}% goal)"
    print(f"SUMMARY streaming_cpu: % of one core over {args.seconds:g} s: " + ", ".join(parts) + verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
