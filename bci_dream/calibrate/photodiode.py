"""True stimulus onsets from a photodiode: how long after its marker each image actually lit the screen.

Software knows when a frame was handed to the window system, not when the display showed it (the next
refresh, plus the monitor's own lag). With the protocol's ``photodiode = true`` the presenter draws a square
in the bottom-left corner of the screen that is white while an image is on and black otherwise; a
photodiode taped over it and wired to an AUX/analog input of the amplifier (e.g. an OpenBCI Cyton's analog
pins) is recorded with the EEG. :func:`photodiode_offsets` finds each light onset after its marker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from bci_dream.core.errors import BciDreamError
from bci_dream.io.readers import read_recording


def photodiode_offsets(times: np.ndarray, signal: np.ndarray, markers: Sequence[float], *,
                       search_s: tuple[float, float] = (-0.02, 0.25)) -> np.ndarray:
    """Milliseconds from each marker to the photodiode's rising edge after it (NaN where none is found).

    Args:
        times: float64 [n] sample times (s, the markers' clock).
        signal: [n] the photodiode channel (any unit; light = high. An inverted sensor: pass ``-signal``).
        markers: marker times (s).
        search_s: where to look for the edge, relative to each marker (s).

    The threshold is halfway between the signal's 1st and 99th percentiles; the crossing time is interpolated
    linearly between the two samples around it.
    """
    times = np.asarray(times, dtype=np.float64)
    x = np.asarray(signal, dtype=np.float64)
    low, high = np.nanpercentile(x, [1, 99])
    if not high > low:
        return np.full(len(markers), np.nan)
    threshold = (low + high) / 2
    above = x > threshold
    rising = np.flatnonzero(~above[:-1] & above[1:]) + 1  # first sample above the threshold
    edge_times = times[rising - 1] + (threshold - x[rising - 1]) / (x[rising] - x[rising - 1]) * \
        (times[rising] - times[rising - 1])
    out = np.full(len(markers), np.nan)
    for k, m in enumerate(markers):
        i = np.searchsorted(edge_times, m + search_s[0])
        if i < len(edge_times) and edge_times[i] <= m + search_s[1]:
            out[k] = (edge_times[i] - m) * 1e3
    return out


def recorded_photodiode_offsets(recording: str | os.PathLike, channel: str, markers: Sequence[float]) -> np.ndarray:
    """:func:`photodiode_offsets` of the channel named ``channel`` of a recording file: an EEG channel, or a channel
    of one of its aux streams (a BrainFlow board's analog inputs recorded with ``--aux analog``).

    Raises:
        BciDreamError: the recording has no such channel (the line names the channels it has).
    """
    rec = read_recording(recording)
    found = rec.channel(channel)
    if found is None:
        raise BciDreamError(f"{recording} has no channel '{channel}' for the photodiode (channels: "
                            f"{', '.join(rec.all_channel_names)})")
    return photodiode_offsets(*found, markers)
