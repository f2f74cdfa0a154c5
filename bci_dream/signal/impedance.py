"""Electrode impedance from what an OpenBCI board measures, and the thresholds it is judged by.

Two boards can measure it through BrainFlow:

- **Cyton (and Daisy)**: the ADS1299 drives a 6 nA lead-off current at 31.25 Hz through one electrode at a time;
  the voltage it makes is read as EEG. :func:`lead_off_impedance_kohm` takes that channel's samples, measures the
  amplitude of their 31.25 Hz component and applies the OpenBCI GUI's formula ``Z = sqrt(2) * std / 6 nA - 2.2 kΩ``
  (the std of that component; 2.2 kΩ is the series resistor on the board), so that the numbers agree with the
  GUI's. The current's frequency comes from the amplifier's own clock, exactly an eighth of 250 Hz (a quarter of a
  Daisy's 125 Hz), so the amplitude is taken at that one frequency over whole cycles (a lock-in): EEG and muscle
  activity next to it (the GUI's 5-50 Hz band lets them in) hardly add to it.
- **Ganglion**: its firmware measures each channel and the reference itself and BrainFlow delivers the values in
  ``resistance_channels``; :func:`ganglion_impedance_kohm` halves them as the OpenBCI GUI does (the measurement
  runs through the driven-ground electrode, taken as comparable to the one measured).

:class:`~bci_dream.signal.impedance_thresholds.ImpedanceThresholds` rates a value good, fair or poor.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal as sps

#: The ADS1299's lead-off current as the Cyton's firmware sets it, in amperes.
LEAD_OFF_AMPS = 6.0e-9
#: Its frequency (the ADS1299's AC lead-off at fCLK / 2^16), in Hz.
LEAD_OFF_HZ = 31.25
#: The resistor in series with each Cyton input, in ohms.
SERIES_RESISTOR_OHMS = 2200.0

def lead_off_impedance_kohm(samples_uv: np.ndarray, sfreq: float) -> float:
    """Impedance of one electrode from its samples while the lead-off current flows through it.

    Args:
        samples_uv: ``[n]`` samples of the channel in µV, taken once the current has settled (a second or so:
            shorter stretches give a less steady figure).
        sfreq: their rate in Hz (above twice :data:`LEAD_OFF_HZ`).

    Returns:
        The impedance in kΩ (0 when it is below the series resistor), or NaN when the samples are too few (under
        0.25 s) or not finite.
    """
    x = np.asarray(samples_uv, dtype=np.float64)
    if x.ndim != 1 or x.size < sfreq / 4 or not np.isfinite(x).all() or sfreq <= 2 * LEAD_OFF_HZ:
        return math.nan
    period = sfreq / LEAD_OFF_HZ
    whole = round(period) if abs(period - round(period)) < 1e-9 else 0
    if whole:  # whole cycles, no window: the tone falls in one DFT bin, nothing of it leaks
        x = x[: x.size - x.size % whole]
        window = np.ones(x.size)
    else:
        window = np.hanning(x.size)
    x = sps.detrend(x)  # (the electrode's offset and its drift)
    phase = np.exp(-2j * np.pi * LEAD_OFF_HZ / sfreq * np.arange(x.size))
    amplitude_uv = 2.0 * abs(np.sum(x * window * phase)) / np.sum(window)
    ohms = amplitude_uv * 1e-6 / LEAD_OFF_AMPS - SERIES_RESISTOR_OHMS  # (= sqrt(2) * std of the tone / current)
    return max(ohms, 0.0) / 1000.0


def ganglion_impedance_kohm(values: np.ndarray) -> np.ndarray:
    """Impedances in kΩ from a Ganglion's ``resistance_channels`` values (4 channels, then the reference).

    Values of 0 (none measured yet) or below come out as NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values / 2.0, np.nan)
