"""Start-up time of the streaming commands, and which heavy libraries each one imports.

Runs each command ``--runs`` times in a fresh interpreter and prints the median wall time (process start to
exit), plus the model and GUI libraries the process had imported by its end (none is the goal: the streaming
commands need only numpy, scipy, pylsl, pyxdf and brainflow).

    python benchmarks/startup.py [--runs 7] [--data ../shared/data]
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

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface_hub", "mne",
         "PIL", "PySide6", "pyqtgraph", "tqdm")

PROBE = """
import sys, json
from bci_dream.cli import main
try:
    code = main(sys.argv[1:])
finally:
    heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(%r)))
    sys.stderr.write('HEAVY ' + json.dumps(heavy) + '\\n')
sys.exit(code)
"""


def run(args: list[str]) -> tuple[float, list[str], int]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PROBE % json.dumps(HEAVY), *args], capture_output=True, text=True)
    took = time.perf_counter() - t0
    heavy = next((json.loads(line[6:]) for line in p.stderr.splitlines() if line.startswith("HEAVY ")), ["?"])
    return took, heavy, p.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("BCI_DREAM_DATA", "../shared/data")))
    a = parser.parse_args()
    xdf = a.data / "bci-essentials" / "ssvep_example.xdf"
    commands = {
        "bci-dream --version": ["--version"],
        "bci-dream devices": ["devices"],
        f"bci-dream replay {xdf.name} --speed 0": ["replay", str(xdf), "--speed", "0"],
        "bci-dream stream --seconds 1": ["stream", "--seconds", "1"],
    }
    print(f"python {sys.version.split()[0]}, {a.runs} runs each (median, min)")
    medians = {}
    for label, argv in commands.items():
        times, heavy, code = [], [], 0
        for _ in range(a.runs):
            took, heavy, code = run(argv)
            times.append(took)
        medians[label.split()[1]] = statistics.median(times)
        print(f"{label:<48} {statistics.median(times):6.2f} s  (min {min(times):.2f})  exit {code}  "
              f"heavy imports: {', '.join(heavy) or 'none'}")
    print("SUMMARY startup.py: " + ", ".join(f"{name} {s:.2f} s" for name, s in medians.items()))


if __name__ == "__main__":
    main()
