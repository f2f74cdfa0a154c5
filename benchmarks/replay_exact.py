"""Sample-exact replay: write a long .xdf with XdfWriter, replay it at full speed, count every sample.

The recording (default 10 minutes, 16 channels at 250 Hz, float32) is written into a temporary folder
with ``bci_dream.io.xdf_writer.XdfWriter``: channel 0 holds the sample index (exact in float32
up to 2**24), the other channels noise, and a string marker stream holds one marker per second
(``"second <k>"`` at the time of sample ``k * 250``). It is replayed with ``XdfReplaySource(speed=0)``
through ``LiveStream`` (filters and quality on) with a chunk listener that checks that channel 0 is
exactly contiguous and that every marker arrives once, in order, with the chunk that holds its time.

Goal: zero lost or duplicated samples and markers.

Run: python benchmarks/replay_exact.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bci_dream.acquisition.live import LiveStream
from bci_dream.acquisition.xdf_replay import XdfReplaySource
from bci_dream.core.types import Chunk
from bci_dream.io.xdf_writer import XdfWriter

LABELS = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8")


def write_recording(path: Path, seconds: float, n_ch: int, sfreq: float, t0: float = 5000.0) -> tuple[int, list[str]]:
    """Write the test recording; return (samples, marker texts)."""
    n = round(seconds * sfreq)
    if n > 2 ** 24:
        raise SystemExit(f"{n} samples: channel 0 (float32) holds indices exactly only up to 2**24")
    rng = np.random.default_rng(0)
    markers: list[str] = []
    block = int(sfreq)  # write one second per Samples chunk, as a recorder would
    with XdfWriter(path) as w:
        eeg = w.add_stream("ReplayBench", "EEG", n_ch, sfreq, channel_labels=list(LABELS[:n_ch]) if n_ch <= 16
                           else [f"Ch{i + 1}" for i in range(n_ch)], channel_units="microvolts",
                           source_id="replay-bench")
        mk = w.add_stream("ReplayBenchMarkers", "Markers", 1, 0.0, channel_format="string")
        for start in range(0, n, block):
            stop = min(start + block, n)
            idx = np.arange(start, stop)
            data = (rng.standard_normal((stop - start, n_ch)) * 10).astype(np.float32)
            data[:, 0] = idx
            w.write_samples(eeg, data, t0 + idx / sfreq)
            k = start // block
            if start % block == 0:
                text = f"second {k}"
                w.write_strings(mk, [text], [t0 + start / sfreq])
                markers.append(text)
    return n, markers


class Checker:
    """Chunk listener: channel 0 must go 0, 1, 2, ... without gaps or repeats; markers once, in order."""

    def __init__(self) -> None:
        self.next_index = 0
        self.received = 0
        self.lost = 0
        self.duplicated = 0
        self.chunks = 0
        self.markers: list[str] = []
        self.markers_out_of_place = 0
        self.prev_last_ts = -np.inf
        self.first_error: str | None = None

    def __call__(self, chunk: Chunk) -> None:
        n = len(chunk)
        if n:
            self.chunks += 1
            self.received += n
            values = chunk.samples[:, 0].astype(np.float64)
            expected = self.next_index + np.arange(n)
            if not np.array_equal(values, expected):
                # count gaps (lost) and steps back or repeats (duplicated) across the chunk boundary too
                steps = np.diff(np.concatenate([[self.next_index - 1], values]))
                self.lost += int(np.sum(np.where(steps > 1, steps - 1, 0)))
                self.duplicated += int(np.sum(np.where(steps < 1, 1 - steps, 0)))
                if self.first_error is None:
                    self.first_error = f"chunk {self.chunks}: expected {self.next_index}.., got {values[:5].tolist()}.."
            self.next_index = int(values[-1]) + 1
        for m in chunk.markers:
            self.markers.append(m.text)
            # a marker belongs with the chunk whose samples cover its time (after the previous chunk's last sample)
            last_ts = chunk.timestamps[-1] if n else self.prev_last_ts
            # (1 µs of slack: pyxdf's dejittering moves sample times by picoseconds, so a marker stamped
            # exactly at a sample's time may come with that sample's chunk or the next one)
            if not (self.prev_last_ts - 1e-6 < m.timestamp <= last_ts + 1e-6):
                self.markers_out_of_place += 1
        if n:
            self.prev_last_ts = float(chunk.timestamps[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the recording (default 10)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--rate", type=float, default=250.0)
    p.add_argument("--speed", type=float, default=0.0,
                   help="replay speed (default 0: as fast as possible; e.g. 20 checks the real-time pacing path)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "replay_bench.xdf"
        t = time.perf_counter()
        n_expected, markers_expected = write_recording(path, args.minutes * 60, args.channels, args.rate)
        t_write = time.perf_counter() - t
        size_mb = path.stat().st_size / 1e6
        print(f"wrote {path.name}: {args.minutes:g} min, {args.channels} ch at {args.rate:g} Hz, "
              f"{n_expected} samples, {len(markers_expected)} markers, {size_mb:.1f} MB in {t_write:.2f} s")

        seconds = n_expected / args.rate
        source = XdfReplaySource(path, speed=args.speed)
        live = LiveStream(source)
        t = time.perf_counter()
        live.open()  # reads the file (pyxdf)
        t_read = time.perf_counter() - t
        checker = Checker()
        live.pipeline.add_listener(checker)
        c0, t0 = time.process_time(), time.perf_counter()
        live.start()
        finished = source.wait(max(600.0, 2 * seconds / args.speed if args.speed else 0.0))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        live.stop()

    stats = live.pipeline.stats
    missing_markers = len(set(markers_expected) - set(checker.markers))
    extra_markers = len(checker.markers) - (len(markers_expected) - missing_markers)
    in_order = checker.markers == markers_expected
    print(f"read with pyxdf (LiveStream.open): {t_read:.2f} s")
    print(f"replay speed setting: {args.speed:g} (0 = as fast as possible)")
    print(f"replay finished by itself: {finished}; source state {source.state.value}; error: {source.error}")
    print(f"samples expected {n_expected}, received {checker.received} (pipeline counted {stats.samples}, "
          f"ring buffer total {live.pipeline.raw.total_written}) in {checker.chunks} chunks")
    print(f"lost {checker.lost}, duplicated {checker.duplicated}, last index {checker.next_index - 1} "
          f"(expected {n_expected - 1})" + (f"; first error: {checker.first_error}" if checker.first_error else ""))
    print(f"markers expected {len(markers_expected)}, received {len(checker.markers)} (missing {missing_markers}, "
          f"extra {extra_markers}, in order: {in_order}, out of place: {checker.markers_out_of_place}); "
          f"pipeline counted {stats.markers}")
    print(f"timestamps: backwards {stats.timestamps_backwards}, jumps {stats.timestamp_jumps}; "
          f"non-finite {stats.nonfinite_values}")
    print(f"replay speed: {seconds:.0f} s of signal in {wall:.2f} s wall = {seconds / wall:.0f}x real time "
          f"(CPU {cpu:.2f} s, {100 * cpu / wall:.0f}% of one core; filters + quality on)")

    exact = (checker.lost == 0 and checker.duplicated == 0 and checker.received == n_expected
             and checker.next_index == n_expected)
    markers_ok = in_order and checker.markers_out_of_place == 0
    verdict = "meets" if exact and markers_ok else "misses"
    print()
    print(f"SUMMARY replay_exact: {checker.received}/{n_expected} samples, lost {checker.lost}, duplicated "
          f"{checker.duplicated}, markers {len(checker.markers)}/{len(markers_expected)}, "
          f"{seconds / wall:.0f}x real time ({verdict} the zero-loss goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
