"""How well a Cyton's lead-off impedance is read back on top of real EEG, against the OpenBCI GUI's way.

Every 1-s stretch of every channel of the shared OpenBCI recording (90 s of a Cyton: blinks, jaw clenches, eyes-closed
alpha) gets the 31.25 Hz voltage a 6 nA lead-off current makes across a set impedance (plus the board's 2.2 kΩ), at
a random phase; the impedance is then read back

- by bci-dream (:func:`bci_dream.signal.impedance.lead_off_impedance_kohm`: the tone's amplitude at its one
  frequency over whole cycles), and
- as the OpenBCI GUI does (the standard deviation of the 5-50 Hz band-passed signal in the same formula),

and the absolute errors are summarised (median, 95th percentile, largest) for each set impedance.

    python benchmarks/impedance_accuracy.py [--seconds 1] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
from scipy import signal as sps

from bci_dream.io.readers import read_recording
from bci_dream.signal.impedance import LEAD_OFF_AMPS, LEAD_OFF_HZ, SERIES_RESISTOR_OHMS, lead_off_impedance_kohm

RECORDING = Path("openbci-gui") / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"
SET_KOHM = (2.0, 5.0, 20.0, 100.0)


def openbci_gui_kohm(x: np.ndarray, sfreq: float) -> float:
    """The OpenBCI GUI's reading: std of the 5-50 Hz band-passed signal, sqrt(2) * std / 6 nA - 2.2 kΩ."""
    sos = sps.butter(4, (5.0, 50.0), btype="bandpass", fs=sfreq, output="sos")
    std_uv = float(np.std(sps.sosfiltfilt(sos, x - x.mean())))
    return max(math.sqrt(2.0) * std_uv * 1e-6 / LEAD_OFF_AMPS - SERIES_RESISTOR_OHMS, 0.0) / 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.0, help="length of each stretch (the check's default: 1 s)")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("BCI_DREAM_DATA", Path(__file__).resolve()
                                                                    .parents[2] / "shared" / "data")))
    args = p.parse_args()
    rec = read_recording(args.data / RECORDING)
    x, sfreq = rec.data.astype(np.float64), rec.sfreq
    n = int(args.seconds * sfreq)
    rng = np.random.default_rng(0)
    print(f"{RECORDING.name}: {x.shape[1]} channels, {x.shape[0] / sfreq:.0f} s at {sfreq:g} Hz; "
          f"{x.shape[0] // n} stretches of {args.seconds:g} s per channel")
    print(f"{'set kΩ':>7}  {'bci-dream |error| kΩ: median  p95   max':42}  OpenBCI GUI's way: median  p95   max")
    for kohm in SET_KOHM:
        amplitude_uv = LEAD_OFF_AMPS * (kohm * 1e3 + SERIES_RESISTOR_OHMS) * 1e6
        ours, gui = [], []
        for start in range(0, x.shape[0] - n + 1, n):
            t = np.arange(start, start + n) / sfreq
            for c in range(x.shape[1]):
                seg = x[start:start + n, c] + amplitude_uv * np.sin(2 * np.pi * LEAD_OFF_HZ * t + rng.uniform(0, 6.3))
                ours.append(abs(lead_off_impedance_kohm(seg, sfreq) - kohm))
                gui.append(abs(openbci_gui_kohm(seg, sfreq) - kohm))
        a, b = np.array(ours), np.array(gui)
        print(f"{kohm:7g}  {'':22}{np.median(a):6.2f} {np.percentile(a, 95):5.2f} {a.max():5.2f}  "
              f"{'':18}{np.median(b):6.2f} {np.percentile(b, 95):5.2f} {b.max():5.2f}")


if __name__ == "__main__":
    main()
