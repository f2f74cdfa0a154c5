"""Read muselsl CSV recordings: ``timestamps,TP9,AF7,AF8,TP10,Right AUX[,Marker0,...]``.

* ``times`` are the file's timestamps (LSL clock seconds) exactly as written, even where they go
  backwards (muselsl stamps whole BLE packets and they arrive out of order now and then).
* ``sfreq`` is estimated by a least-squares line through the timestamps (robust to that jitter)
  and snapped to a nominal rate (256 Hz for Muse EEG) when within 1 %.
* ``Right AUX`` (and any ``AUX`` column) is dropped; ``Marker*`` columns give markers: every
  non-zero value becomes a marker with the value as text (``1.0`` → ``"1"``).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError
from bci_dream.core.types import Marker
from bci_dream.io.recording import Recording

log = logging.getLogger(__name__)

#: Rates that an estimate snaps to when it lies within 1 % of one.
NOMINAL_RATES = (256.0, 220.0, 250.0, 128.0, 200.0, 500.0, 512.0, 1000.0, 1024.0, 2048.0, 64.0, 52.0)


def estimate_sfreq(times: np.ndarray) -> float:
    """Sampling rate from jittery timestamps: 1 / slope of a line fitted to ``times`` against sample index."""
    n = times.shape[0]
    if n < 2:
        raise ValueError("at least two samples are needed to estimate a sampling rate")
    idx = np.arange(n, dtype=np.float64)
    slope = np.polyfit(idx, times - times[0], 1)[0]
    if not slope > 0:
        raise ValueError("the timestamps do not increase")
    rate = 1.0 / slope
    for nominal in NOMINAL_RATES:
        if abs(rate - nominal) <= 0.01 * nominal:
            return nominal
    return float(round(rate, 3))


def read_muse_csv(path: str | Path):
    """Read a muselsl CSV recording; see the module docstring."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    header = [h.strip() for h in header]
    if not header or header[0].lower() not in ("timestamps", "timestamp"):
        raise RecordingError(f"{path} is not a muselsl CSV (its first column is not 'timestamps')")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise RecordingError(f"{path} has rows that are not numbers ({e}); the file may be damaged") from e
    if table.shape[0] < 2:
        raise RecordingError(f"{path} holds fewer than two samples")
    if table.shape[1] != len(header):
        raise RecordingError(f"{path}: the header names {len(header)} columns but rows have {table.shape[1]}")
    eeg_cols = [j for j, h in enumerate(header)
                if j > 0 and "aux" not in h.lower() and not h.lower().startswith("marker")]
    marker_cols = [j for j, h in enumerate(header) if h.lower().startswith("marker")]
    if not eeg_cols:
        raise RecordingError(f"{path} has no EEG columns (columns: {', '.join(header)})")
    times = table[:, 0].copy()
    if not np.isfinite(times).all():
        raise RecordingError(f"{path} has missing timestamps; the file may be damaged")
    try:
        sfreq = estimate_sfreq(times)
    except ValueError as e:
        raise RecordingError(f"{path}: cannot estimate the sampling rate: {e}") from e
    backwards = int(np.count_nonzero(np.diff(times) < 0))
    markers: list[Marker] = []
    for j in marker_cols:
        values = np.nan_to_num(table[:, j])
        for i in np.flatnonzero(values != 0):
            markers.append(Marker(float(times[i]), f"{values[i]:g}", header[j]))
    log.info("%s: muselsl CSV, %d ch, %g Hz, %d samples, %d markers, timestamps go backwards %d times",
             path.name, len(eeg_cols), sfreq, table.shape[0], len(markers), backwards)
    return Recording(
        data=table[:, eeg_cols].astype(np.float32), sfreq=sfreq, ch_names=tuple(header[j] for j in eeg_cols),
        markers=markers, times=times, path=path, source_format="muselsl-csv",
        info={"timestamps_backwards": backwards},
    )
