"""LSL consumers side by side (issue 18): the CPU that receiving, filtering and reading windows costs, in bci-dream,
in mne-lsl, and in a bare pylsl pull (the floor).

One outlet (``tests/lsl_outlet_process.py``, a process of its own, 10-ms chunks) streams for the whole run; each
consumer runs in a fresh process of its own for ``--seconds`` after a three-second settle, and reports the CPU time
of its process (all threads, liblsl's included) as % of one core. Consumers, alternating over ``--rounds``:

- ``floor``: ``pylsl.StreamInlet.pull_chunk`` blocking (50-ms timeout) into a numpy ring, nothing else;
- ``bci-dream``: ``LslSource`` → ``LiveStream`` (band-pass 1-45 Hz + notch + signal quality, the defaults) and a
  ``Windower`` (2-s windows resampled to 256 Hz, the encoder's) read 20 times a second;
- ``bci-dream-nowindows``: the same without the window reads;
- ``mne-lsl``: ``mne_lsl.stream.StreamLSL`` with a 1-40 Hz filter and ``get_data(2.0)`` 20 times a second (mne-lsl is
  not a dependency: ``pip install mne-lsl`` where this runs; without it that consumer is skipped).

Printed: the median of each consumer over the rounds, its ratio to the floor, and bci-dream against mne-lsl, at
each ``--configs`` (16 ch @ 250 Hz and 128 ch @ 1 kHz by default). Goals: bci-dream at most 2x the floor with
windows on, at least 3x below mne-lsl.

    python benchmarks/lsl_consumers.py [--seconds 8] [--rounds 3] [--configs 16x250,128x1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("floor", "bci-dream", "bci-dream-nowindows", "mne-lsl")
READS_PER_S = 20


def consume(kind: str, name: str, channels: int, rate: float, seconds: float, pull_interval: float | None) -> dict:
    """Run one consumer in this process; returns its CPU % of one core over ``seconds``."""
    import numpy as np

    reads = 0
    tick = [time.monotonic()]

    def pace() -> None:  # (READS_PER_S reads a second whatever each takes: the next one on its own schedule)
        tick[0] += 1 / READS_PER_S
        time.sleep(max(0.0, tick[0] - time.monotonic()))

    if kind == "floor":
        import pylsl

        info = pylsl.resolve_bypred(f"name='{name}'", minimum=1, timeout=10)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=10)
        inlet.open_stream(timeout=10)
        chunk = np.zeros((int(rate), channels), np.float32)
        ring = np.zeros((int(rate * 10), channels), np.float32)
        at = 0

        def step() -> None:
            nonlocal at
            _, stamps = inlet.pull_chunk(timeout=0.05, max_samples=len(chunk), dest_obj=chunk)
            n = len(stamps)
            if n:
                idx = (at + np.arange(n)) % len(ring)
                ring[idx] = chunk[:n]
                at += n
        close = inlet.close_stream
    elif kind.startswith("bci-dream"):
        from bci_dream.acquisition.live import LiveStream
        from bci_dream.acquisition.lsl_source import LslSource

        options = {} if pull_interval is None else {"pull_interval": pull_interval}
        live = LiveStream(LslSource(stream_name=name, timeout=10, **options))
        live.open()
        windower = live.windower(window_s=2.0, hop_s=1 / READS_PER_S, target_sfreq=256.0)
        live.start()
        windows = kind == "bci-dream"

        def step() -> None:
            nonlocal reads
            pace()
            if windows and windower.latest() is not None:
                reads += 1
        close = live.stop
    else:
        from mne_lsl.stream import StreamLSL

        stream = StreamLSL(bufsize=5.0, name=name).connect(acquisition_delay=0.001, timeout=10)
        stream.filter(1.0, 40.0, picks="all")

        def step() -> None:
            nonlocal reads
            pace()
            stream.get_data(2.0)
            reads += 1
        close = stream.disconnect
    settle = time.monotonic() + 3.0  # (a full 2-s window held before measuring)
    while time.monotonic() < settle:
        step()
    reads = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    tick[0] = wall0
    stop_at = wall0 + seconds
    while time.monotonic() < stop_at:
        step()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    close()
    return {"cpu_percent": 100 * cpu / wall, "reads_per_s": reads / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--configs", default="16x250,128x1000", help="CHANNELSxRATE, comma-separated")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--pull-interval", type=float, help="LslSource's seconds between pulls (default: its own)")
    p.add_argument("--role", default="main", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--channels", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "consumer":
        print(json.dumps(consume(args.kind, args.name, args.channels, args.rate, args.seconds, args.pull_interval)),
              flush=True)
        return

    import importlib.util

    kinds = [k for k in args.kinds.split(",") if k != "mne-lsl" or importlib.util.find_spec("mne_lsl")]
    if "mne-lsl" in args.kinds and "mne-lsl" not in kinds:
        print("mne-lsl is not installed (pip install mne-lsl): that consumer is skipped", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    summary = []
    for config in args.configs.split(","):
        channels, rate = (int(x) for x in config.split("x"))
        name = f"bench-{os.getpid()}-{channels}x{rate}"
        total = (args.seconds + 6) * args.rounds * len(kinds) + 10
        outlet = subprocess.Popen([sys.executable, str(ROOT / "tests/lsl_outlet_process.py"), "--name", name,
                                   "--channels", str(channels), "--rate", str(rate), "--seconds", str(total)],
                                  stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert outlet.stdout.readline().strip() == "ready"
            results: dict[str, list[dict]] = {k: [] for k in kinds}
            for r in range(args.rounds):
                for kind in kinds if r % 2 == 0 else list(reversed(kinds)):
                    done = subprocess.run([sys.executable, __file__, "--role", "consumer", "--kind", kind, "--name",
                                           name, "--channels", str(channels), "--rate", str(rate), "--seconds",
                                           str(args.seconds)]
                                          + ([] if args.pull_interval is None else
                                             ["--pull-interval", str(args.pull_interval)]),
                                          capture_output=True, text=True, env=env,
                                          timeout=args.seconds + 60)
                    if done.returncode != 0:
                        print(f"  {kind} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
                        continue
                    results[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
        finally:
            outlet.terminate()
            outlet.wait(10)
        medians = {k: statistics.median(x["cpu_percent"] for x in v) for k, v in results.items() if v}
        print(f"{channels} ch @ {rate} Hz, {args.rounds} rounds of {args.seconds:g} s each (% of one core, median; "
              "each round's in brackets):", flush=True)
        floor = medians.get("floor")
        for kind, value in medians.items():
            each = ", ".join(f"{x['cpu_percent']:.1f}" for x in results[kind])
            ratio = f", {value / floor:.2f}x the floor" if floor and kind != "floor" else ""
            rps = statistics.median(x["reads_per_s"] for x in results[kind])
            reads = f", {rps:.1f} window reads/s" if rps else ""
            print(f"  {kind:20s} {value:5.1f} % [{each}]{ratio}{reads}", flush=True)
        line = f"{channels}x{rate}: bci-dream {medians.get('bci-dream', float('nan')):.1f} %"
        if floor:
            line += f" = {medians.get('bci-dream', float('nan')) / floor:.2f}x floor (goal <= 2)"
        if "mne-lsl" in medians:
            line += f", mne-lsl / bci-dream {medians['mne-lsl'] / medians['bci-dream']:.2f} (goal >= 3)"
        summary.append(line)
    print("SUMMARY lsl_consumers.py: " + "; ".join(summary), flush=True)


if __name__ == "__main__":
    main()
