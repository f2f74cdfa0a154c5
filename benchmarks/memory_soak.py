"""Memory over a long headless run: does the process grow while it streams and generates?

Starts ``bci-dream run --device synthetic --headless --model tiny`` (the real command, BrainFlow's synthetic
board, the tiny preview model) for ``--minutes``, samples the child's resident memory (``VmRSS``) every
``--every`` seconds, and prints the RSS at the first minute and at the end, and the growth per hour after the
first minute (least-squares slope of RSS against time). Goal: at most 50 MB per hour.

    python benchmarks/memory_soak.py [--minutes 15] [--every 5] [--keep-images]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (r - mr) for t, r in samples) / var * 3600 if var else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the slope")
    parser.add_argument("--keep-images", action="store_true", help="keep the PNGs (default: a temporary folder)")
    parser.add_argument("--trace", action="store_true", help="print every RSS sample")
    a = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bci-dream-soak-"))
    seconds = a.minutes * 60
    cmd = [sys.executable, "-m", "bci_dream.cli", "run", "--device", "synthetic", "--headless", "--out", str(out),
           "--model", "tiny", "--seconds", str(seconds)]
    env = {**os.environ, "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(out / "cache"))}
    log_path = out / "run.log"  # (a file, not a pipe: a pipe nobody reads fills up and blocks the status prints)
    log_file = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, text=True, env=env)
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        time.sleep(a.every)
        rss = rss_mb(proc.pid)
        if rss is not None:
            samples.append((time.monotonic() - start, rss))
            if a.trace:
                print(f"{samples[-1][0]:7.1f} s  {rss:7.1f} MB", flush=True)
    log_file.close()
    output = log_path.read_text()
    after = [(t, r) for t, r in samples if t >= a.warmup]
    frames = sum(1 for _ in out.glob("*.png"))
    print(output.strip().splitlines()[-1] if output.strip() else "(no output)")
    if not after:
        print("too short a run for a slope")
        return
    growth = slope_per_hour(after)
    print(f"RSS: {after[0][1]:.0f} MB at {after[0][0]:.0f} s, {after[-1][1]:.0f} MB at {after[-1][0]:.0f} s "
          f"(max {max(r for _, r in samples):.0f} MB); {frames} images")
    print(f"SUMMARY memory_soak.py: {growth:+.1f} MB per hour after the first {a.warmup:.0f} s "
          f"({a.minutes:g} min headless run, synthetic board, tiny model; goal <= 50 MB/h); exit {proc.returncode}")
    if not a.keep_images:
        for p in out.glob("*.png"):
            p.unlink()


if __name__ == "__main__":
    main()
