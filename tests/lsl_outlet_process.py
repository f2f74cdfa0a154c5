"""A real LSL outlet in a process of its own, for the LSL tests.

Run::

    python tests/lsl_outlet_process.py --name X --source-id Y --channels 8 --rate 250 --seconds 5 \
        [--type EEG] [--start-index K] [--markers NAME] [--marker-interval 0.2] \
        [--pause-after S --pause-for P] [--deduced-first K]

It creates an EEG outlet (float32, channel labels Fp1, Fp2, ..., 10-05 names up to 128 channels, or Ch1, Ch2, ..., unit
microvolts) and pushes chunks in real time. Channel 0 holds the running sample index (exact in
float32 up to 2**24) and channel ``c > 0`` holds :func:`expected_samples` of it, so a receiver can
check every sample it gets. Each sample's timestamp is ``t0 + (index - start_index) / rate``.

With ``--markers NAME`` it also creates a string marker outlet and pushes ``"m<i>@<timestamp>"``
every ``--marker-interval`` seconds, stamped with that same timestamp. With ``--pause-after`` it
stops pushing for ``--pause-for`` seconds (outlet and connection stay up; those samples are never
sent, so the counter jumps). With ``--deduced-first K`` it waits for an inlet and first sends K samples
without a timestamp ("deduced", as the tail of a chunk whose first sample went before the inlet
connected), so the inlet's first samples are stamped by liblsl from nothing.

It prints ``ready`` (flushed) once the outlets exist. The outlets live in this process because
destroying an outlet before an inlet of the same process can crash liblsl.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

#: Labels used when the stream has at most this many channels.
#: liblsl's marker of a sample sent without a timestamp (``DEDUCED_TIMESTAMP`` in lsl_c.h).
DEDUCED_TIMESTAMP = -1.0

LABELS_1020 = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6")


def channel_labels(n_channels: int) -> list[str]:
    """``Fp1, Fp2, ...`` for up to 16 channels, else the first N of the canonical 128-site montage (10-05 names, as
    a 128-channel cap has), else ``Ch1..ChN``."""
    if n_channels <= len(LABELS_1020):
        return list(LABELS_1020[:n_channels])
    from bci_dream.signal.montage import CANONICAL_128

    if n_channels <= len(CANONICAL_128):
        return list(CANONICAL_128[:n_channels])
    return [f"Ch{i + 1}" for i in range(n_channels)]


def expected_samples(index: np.ndarray, n_channels: int) -> np.ndarray:
    """The samples the outlet sends for sample indices ``index`` (int64 [n]): float32 [n, n_channels].

    Channel 0 is the index itself; channel ``c`` is ``(index % 1009) * c * 0.5 - 100`` (exact in float32).
    """
    index = np.asarray(index, dtype=np.int64)
    out = np.empty((index.shape[0], n_channels), np.float32)
    out[:, 0] = index
    base = (index % 1009).astype(np.float32)
    for c in range(1, n_channels):
        out[:, c] = base * np.float32(c * 0.5) - np.float32(100.0)
    return out


def main(argv: list[str] | None = None) -> int:
    import pylsl

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--source-id", default="")
    p.add_argument("--type", default="EEG")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--rate", type=float, default=250.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--start-index", type=int, default=0)
    p.add_argument("--chunk-ms", type=float, default=10.0, help="push period in milliseconds")
    p.add_argument("--pause-after", type=float, default=0.0,
                   help="stop pushing after this many seconds (0: never) for --pause-for seconds; the samples "
                   "of the pause are never sent (the counter jumps), the connection stays up")
    p.add_argument("--pause-for", type=float, default=0.0)
    p.add_argument("--deduced-first", type=int, default=0,
                   help="wait for an inlet, then send this many samples without a timestamp first")
    p.add_argument("--markers", default=None, help="name of an additional string marker stream")
    p.add_argument("--marker-interval", type=float, default=0.2)
    args = p.parse_args(argv)

    info = pylsl.StreamInfo(args.name, args.type, args.channels, args.rate, "float32", args.source_id)
    channels = info.desc().append_child("channels")
    for label in channel_labels(args.channels):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    outlet = pylsl.StreamOutlet(info)

    marker_outlet = None
    if args.markers:
        minfo = pylsl.StreamInfo(
            args.markers, "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"{args.source_id}-markers" if args.source_id else ""
        )
        marker_outlet = pylsl.StreamOutlet(minfo)

    print("ready", flush=True)

    next_index = args.start_index
    if args.deduced_first:
        if not outlet.wait_for_consumers(10.0):
            return 1
        idx = np.arange(next_index, next_index + args.deduced_first, dtype=np.int64)
        for sample in expected_samples(idx, args.channels):
            outlet.push_sample(sample, DEDUCED_TIMESTAMP)
        next_index += args.deduced_first
    # Sample i is stamped t0 + (i - start_index) / rate; the deduced ones, if any, were due already.
    t0 = pylsl.local_clock() - (next_index - args.start_index) / args.rate
    next_marker_t = t0 + args.marker_interval
    marker_i = 0
    period = args.chunk_ms / 1000.0
    end = t0 + args.seconds
    pause_at = t0 + args.pause_after if args.pause_after > 0 else float("inf")
    while True:
        now = pylsl.local_clock()
        if now >= end:
            break
        if now >= pause_at:
            time.sleep(args.pause_for)
            pause_at = float("inf")
            now = pylsl.local_clock()
            next_index = args.start_index + int((now - t0) * args.rate)  # the paused samples are lost
        due = args.start_index + int((now - t0) * args.rate) + 1
        if due > next_index:
            idx = np.arange(next_index, due, dtype=np.int64)
            samples = expected_samples(idx, args.channels)
            last_ts = t0 + (due - 1 - args.start_index) / args.rate
            outlet.push_chunk(samples, last_ts)
            next_index = due
        if marker_outlet is not None and now >= next_marker_t:
            ts = next_marker_t
            marker_outlet.push_sample([f"m{marker_i}@{ts:.6f}"], ts)
            marker_i += 1
            next_marker_t += args.marker_interval
        time.sleep(period)
    del marker_outlet
    del outlet
    return 0


if __name__ == "__main__":
    sys.exit(main())
