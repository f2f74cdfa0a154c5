"""Damaged recordings never crash, hang or print a library's traceback.

Over 200 variants of the shared .xdf recordings — cut off at random offsets, with bytes flipped, with ranges
zeroed — are replayed by ``bci-dream replay FILE --speed 0`` in one child process (the real command, with its
real logging set-up on a real stderr). Each must end with a documented exit status: 0 (read whole), 3 (damage
found, what could be read was replayed, said in one warning line) or 1 (unreadable: one ``bci-dream: error:``
line); none may print a traceback or a Python warning, and none may run past its time limit.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bci_dream.io.xdf_reader import whole_chunks_size

SOURCES = ("xdf-example-files/minimal.xdf", "xdf-example-files/empty_streams.xdf",
           "xdf-jl/twochannel_string_marker.xdf", "bci-essentials/sub-P001_ses-S001_task-T1_run-001_eeg_old1.xdf")
#: The large real recording is cut to its first whole chunks after this many bytes (keeps the run short).
PREFIX_BYTES = 120_000
VARIANTS_PER_KIND = 18  # x 3 kinds x 4 sources = 216 files

DRIVER = r"""
import json, signal, sys
from bci_dream.cli import main

class Hang(BaseException):
    pass

def on_alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, on_alarm)
codes = {}
for path in sys.argv[1:]:
    print(f"=== {path}", file=sys.stderr, flush=True)
    signal.alarm(20)
    try:
        codes[path] = main(["replay", path, "--speed", "0"])
    except Hang:
        codes[path] = "hang"
    except SystemExit as e:
        codes[path] = e.code
    finally:
        signal.alarm(0)
print(json.dumps(codes))
"""


def _base(shared_data: Path, rel: str, tmp: Path) -> bytes:
    data = (shared_data / rel).read_bytes()
    if len(data) <= PREFIX_BYTES:
        return data
    cut = tmp / "prefix.xdf"
    cut.write_bytes(data[:PREFIX_BYTES])
    good, _ = whole_chunks_size(cut)
    return data[:good]


def _variants(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    out = []
    for i in range(VARIANTS_PER_KIND):
        out.append((f"cut{i}", data[:rng.randrange(1, len(data))]))
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 24)):
            flipped[rng.randrange(len(flipped))] ^= rng.randint(1, 255)
        out.append((f"flip{i}", bytes(flipped)))
        zeroed = bytearray(data)
        start = rng.randrange(len(zeroed))
        length = rng.randint(1, min(4096, len(zeroed) - start))
        zeroed[start:start + length] = bytes(length)
        out.append((f"zero{i}", bytes(zeroed)))
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_damaged_recordings_end_with_a_documented_status_and_no_traceback(shared_data, tmp_path):
    rng = random.Random(20261201)
    files = []
    for rel in SOURCES:
        base = _base(shared_data, rel, tmp_path)
        for name, content in _variants(base, rng):
            path = tmp_path / f"{Path(rel).stem}-{name}.xdf"
            path.write_bytes(content)
            files.append(str(path))
    assert len(files) >= 200
    result = subprocess.run([sys.executable, "-c", DRIVER, *files], capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, result.stderr[-3000:]
    codes = json.loads(result.stdout.strip().splitlines()[-1])
    sections = dict(part.split("\n", 1) if "\n" in part else (part, "")
                    for part in result.stderr.split("=== ")[1:])
    assert set(codes) == set(files)
    problems = []
    for path in files:
        err = sections.get(path, "")
        code = codes[path]
        if code not in (0, 1, 3):
            problems.append(f"{Path(path).name}: exit {code}")
        if "Traceback" in err or "Warning:" in err.replace("bci-dream: warning:", ""):
            problems.append(f"{Path(path).name}: {err[-400:]!r}")
        if code == 1 and sum(line.startswith("bci-dream: error:") for line in err.splitlines()) != 1:
            problems.append(f"{Path(path).name}: exit 1 without exactly one error line: {err[-300:]!r}")
        if code == 3 and "bci-dream: warning:" not in err:
            problems.append(f"{Path(path).name}: exit 3 without its warning line: {err[-300:]!r}")
    assert problems == []
    counts = {c: list(codes.values()).count(c) for c in (0, 1, 3)}
    print(f"{len(files)} damaged variants: {counts[0]} read whole (exit 0), {counts[3]} replayed with damage said "
          f"(exit 3), {counts[1]} refused in one line (exit 1)")
