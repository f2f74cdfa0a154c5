"""Throughput of StreamPipeline.push, as a multiple of real time, on one core and one thread.

What one push does: validate the chunk, check its timestamps, write the raw ring buffer, run the causal
band-pass (1-45 Hz Butterworth, order 4) and the 50 Hz notch, write the filtered ring buffer, and once
per second of signal assess the per-channel signal quality.

Cases: 16 channels at 250 Hz and 128 channels at 1000 Hz, each with chunks of 1 sample, 20 ms (what live
sources deliver) and 100 ms. Input data (noise with a DC offset) and timestamps are precomputed; the
timed loop only slices them and builds the Chunk a source would build. The ring buffers are filled
once before timing (one big push), so the figures are for the steady state after their first wrap.

Goal: at least 200x real time for 128 channels at 1 kHz (20 ms chunks) on one core.

Run: python benchmarks/ingest_throughput.py [--seconds 4] [--cpu 0]
"""

from __future__ import annotations

import os

# Single-threaded numerics: must be set before numpy/scipy load their BLAS/OpenMP runtimes.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.core.types import Chunk, StreamInfo
from bci_dream.signal.filters import OnlineFilter, design_filter
from bci_dream.signal.quality import assess_quality

GOAL_X = 200.0
CONFIGS = ((16, 250.0), (128, 1000.0))
CHUNK_LABELS = ("1 sample", "20 ms", "100 ms")


def chunk_sizes(sfreq: float) -> list[int]:
    return [1, max(1, round(0.020 * sfreq)), max(1, round(0.100 * sfreq))]


def make_signal(n: int, n_ch: int, seed: int = 0) -> np.ndarray:
    """EEG-like float32 [n, n_ch]: 10 µV noise on a per-channel DC offset of up to ±20 mV."""
    rng = np.random.default_rng(seed)
    dc = rng.uniform(-20000, 20000, n_ch).astype(np.float32)
    return (rng.standard_normal((n, n_ch)).astype(np.float32) * np.float32(10.0)) + dc


def n_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


class Case:
    """One pipeline fed with one chunk size."""

    def __init__(self, n_ch: int, sfreq: float, chunk: int, buffer_seconds: float) -> None:
        self.n_ch, self.sfreq, self.chunk = n_ch, sfreq, chunk
        info = StreamInfo("bench", tuple(f"Ch{i + 1}" for i in range(n_ch)), sfreq, units="uV")
        self.pipeline = StreamPipeline(info, buffer_seconds=buffer_seconds, filters=FilterSettings((1.0, 45.0), 50.0))
        # A 10 s cycle of signal, as views of whole chunks, reused round-robin.
        cycle = int(10 * sfreq) // chunk * chunk
        block = make_signal(cycle, n_ch)
        self.views = [block[k:k + chunk] for k in range(0, cycle, chunk)]
        self.next_sample = 0  # absolute sample index (drives the timestamps)
        # Fill (and wrap) the ring buffers once, so that page faults of first touch are not timed.
        fill = round(buffer_seconds * sfreq) + chunk
        self._push_block(make_signal(fill, n_ch, seed=1))

    def _timestamps(self, n: int) -> np.ndarray:
        ts = (self.next_sample + np.arange(n, dtype=np.float64)) / self.sfreq + 1000.0
        self.next_sample += n
        return ts

    def _push_block(self, data: np.ndarray) -> None:
        self.pipeline.push(Chunk(data, self._timestamps(data.shape[0])))

    def run(self, n_chunks: int, push: bool = True) -> tuple[float, float]:
        """Push ``n_chunks`` chunks; return (wall s, cpu s). Timestamps are precomputed before timing."""
        c = self.chunk
        ts = self._timestamps(n_chunks * c)
        views = self.views
        nv = len(views)
        sink = self.pipeline.push if push else (lambda chunk: None)
        c0, t0 = time.process_time(), time.perf_counter()
        for k in range(n_chunks):
            sink(Chunk(views[k % nv], ts[k * c:(k + 1) * c]))
        return time.perf_counter() - t0, time.process_time() - c0


def measure(n_ch: int, sfreq: float, chunk: int, seconds: float, buffer_seconds: float) -> dict:
    case = Case(n_ch, sfreq, chunk, buffer_seconds)
    # Calibrate (also warms up): about 0.3 s of pushing, then size the timed run to ``seconds``.
    n_cal = 16
    while True:
        wall, _ = case.run(n_cal)
        if wall > 0.3:
            break
        n_cal *= 2
    per_chunk = wall / n_cal
    n_chunks = max(10, int(seconds / per_chunk))
    wall, cpu = case.run(n_chunks)
    samples = n_chunks * chunk
    harness_wall, _ = case.run(n_chunks, push=False)
    return {
        "samples": samples,
        "wall": wall,
        "cpu": cpu,
        "rate": samples / wall,
        "x_rt": samples / wall / sfreq,
        "us_per_chunk": wall / n_chunks * 1e6,
        "harness_us_per_chunk": harness_wall / n_chunks * 1e6,
        "quality_channels": len(case.pipeline.quality),
    }


def time_call(fn, min_seconds: float = 0.25) -> float:
    """Seconds per call of ``fn()`` (repeated for at least ``min_seconds``)."""
    fn()
    n, total = 0, 0.0
    t0 = time.perf_counter()
    while total < min_seconds:
        fn()
        n += 1
        total = time.perf_counter() - t0
    return total / n


def breakdown(n_ch: int, sfreq: float, chunk: int) -> dict[str, float]:
    """Cost of each stage, in milliseconds per second of signal, measured on its own through public APIs."""
    per_s = sfreq / chunk  # chunks per second of signal
    x = make_signal(chunk, n_ch)
    ts = np.arange(chunk, dtype=np.float64) / sfreq
    raw = Chunk(x, ts)
    filt = OnlineFilter(design_filter(sfreq, bandpass=(1.0, 45.0), notch=50.0), n_ch)
    ring = RingBuffer(int(60 * sfreq), n_ch)
    for _ in range(int(70 * sfreq) // chunk):  # wrap once
        ring.write(x, ts)
    one_s = make_signal(int(sfreq), n_ch, seed=2)
    filt_one_s = OnlineFilter(design_filter(sfreq), n_ch).process(one_s)
    names = [f"Ch{i + 1}" for i in range(n_ch)]
    out = {
        "Chunk.validated": time_call(lambda: raw.validated(n_ch)) * per_s,
        "RingBuffer.write (x2: raw + filtered)": 2 * time_call(lambda: ring.write(x, ts)) * per_s,
        "OnlineFilter.process (band-pass + notch)": time_call(lambda: filt.process(x)) * per_s,
        "RingBuffer.latest(1 s) (x2, for quality)": 2 * time_call(lambda: ring.latest(int(sfreq))),
        "assess_quality (1 s, once per second)": time_call(lambda: assess_quality(one_s, filt_one_s, sfreq, names)),
    }
    return {k: v * 1e3 for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="wall seconds of timed pushing per case (default 4)")
    p.add_argument("--cpu", type=int, default=None, help="core to pin to (default: core 0 if allowed)")
    p.add_argument("--buffer-seconds", type=float, default=60.0, help="ring buffer history (default 60, as the app)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-stage breakdown")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else (0 if 0 in allowed else allowed[0])
    os.sched_setaffinity(0, {cpu})
    print(f"pinned to core {cpu} (of {len(allowed)} allowed); threads in process: {n_threads()}; "
          f"numpy {np.__version__}; python {sys.version.split()[0]}")
    print(f"timed pushing per case: {args.seconds:g} s wall; ring buffers {args.buffer_seconds:g} s, "
          "filled before timing; quality once per second of signal")
    print()
    print(f"{'channels':>8} {'rate':>7} {'chunk':>9} {'samples/s':>12} {'x real time':>12} "
          f"{'us/chunk':>9} {'harness us':>10} {'cpu/wall':>8}")
    results = {}
    for n_ch, sfreq in CONFIGS:
        for label, chunk in zip(CHUNK_LABELS, chunk_sizes(sfreq)):
            r = measure(n_ch, sfreq, chunk, args.seconds, args.buffer_seconds)
            results[(n_ch, sfreq, label)] = r
            print(f"{n_ch:>8} {sfreq:>5.0f}Hz {label:>9} {r['rate']:>12,.0f} {r['x_rt']:>11.1f}x "
                  f"{r['us_per_chunk']:>9.1f} {r['harness_us_per_chunk']:>10.2f} {r['cpu'] / r['wall']:>8.2f}")
    print("(harness us = slicing precomputed data + building the Chunk, without push; included in the figures; "
          f"threads in process now: {n_threads()})")

    if not args.no_breakdown:
        for n_ch, sfreq in CONFIGS:
            chunk = chunk_sizes(sfreq)[1]
            parts = breakdown(n_ch, sfreq, chunk)
            r = results[(n_ch, sfreq, "20 ms")]
            total_ms = 1e3 / r["x_rt"]
            print()
            print(f"breakdown, {n_ch} ch at {sfreq:.0f} Hz, 20 ms chunks: ms of CPU per second of signal "
                  f"(each stage timed alone; whole push = {total_ms:.2f} ms; 200x needs <= {1e3 / GOAL_X:.2f} ms)")
            for name, ms in parts.items():
                print(f"  {name:<44} {ms:8.3f} ms  ({100 * ms / total_ms:5.1f}% of push)")
            rest = total_ms - sum(parts.values())
            print(f"  {'rest (Python glue, stats, timestamps check)':<44} {rest:8.3f} ms  ({100 * rest / total_ms:5.1f}% of push)")

    goal = results[(128, 1000.0, "20 ms")]["x_rt"]
    verdict = "meets" if goal >= GOAL_X else "misses"
    print()
    print(f"SUMMARY ingest_throughput: 128 ch @ 1 kHz, 20 ms chunks: {goal:.1f}x real time on one core "
          f"({verdict} the {GOAL_X:.0f}x goal); 16 ch @ 250 Hz, 20 ms chunks: "
          f"{results[(16, 250.0, '20 ms')]['x_rt']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
