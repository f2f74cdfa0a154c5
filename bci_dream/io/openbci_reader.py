"""Read OpenBCI GUI text recordings: GUI v6, v5, legacy v3/v4 "sampleData", old RAW, SD-card conversions.

Layouts recognised (``nch`` EEG channels, values in µV):

============  ============================================================  ==================
format        columns                                                       timestamp column
============  ============================================================  ==================
v6            a column-name row: ``Sample Index, EXG Channel 0..``, ...,     ``Timestamp``
              ``Timestamp, Marker Channel, Timestamp (Formatted)``
v5            index, nch EXG, accel, other ..., unix ms, formatted time       second to last
              (first data row may be an all-zero placeholder: dropped)
v3/v4         index, nch EXG, 3 aux, formatted time, unix ms                  last
RAW           index, nch EXG, 3 aux (index wraps 0..255, skips = drops)     none
SD-converted  index, nch EXG (last row often truncated: rows with the        none
              wrong column count are dropped)
============  ============================================================  ==================

Header lines ``%Sample Rate = 250 Hz`` and ``%Number of channels = 8`` are read when present; else
the rate and names come from the device profile for the channel count (8: ``cyton``, 16:
``cyton-daisy``, 4: ``ganglion``). Channel names are that profile's 10-20 list (the GUI's default
placement). ``times`` are the file's timestamps relative to the first sample when they are sane
(finite, non-decreasing, spanning roughly ``n / sfreq``), else the unwrapped sample counter / sfreq
(dropped samples then show as gaps in ``times``; the data themselves are not gap-filled).
Markers: non-zero values of the v6 ``Marker Channel``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np

from bci_dream.core.errors import DeviceError, RecordingError
from bci_dream.core.types import Marker
from bci_dream.devices import get_profile
from bci_dream.io.recording import Recording

log = logging.getLogger(__name__)

_RATE = re.compile(r"sample\s*rate\s*=\s*([0-9.]+)", re.IGNORECASE)
_NCH = re.compile(r"number\s+of\s+channels\s*=\s*(\d+)", re.IGNORECASE)
_BOARD = re.compile(r"board\s*=\s*(.+)$", re.IGNORECASE)
_PROFILE_BY_NCH = {8: "cyton", 16: "cyton-daisy", 4: "ganglion"}
_DEFAULT_RATE = {8: 250.0, 16: 125.0, 4: 200.0}


def _column(rows: list[list[str]], j: int) -> np.ndarray | None:
    """Column ``j`` as float64, or None when it is not numeric (e.g. a formatted time)."""
    values = [r[j] for r in rows]
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        pass
    out = np.full(len(values), np.nan)
    bad = 0
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except ValueError:
            bad += 1
    return None if bad > len(values) // 2 else out


def _profile_for(nch: int, board_line: str):
    name = _PROFILE_BY_NCH.get(nch)
    low = board_line.lower()
    if "ganglion" in low:
        name = "ganglion"
    elif "daisy" in low or (nch == 16 and "cyton" in low):
        name = "cyton-daisy"
    elif "cyton" in low and nch == 8:
        name = "cyton"
    if name is None:
        return None
    try:
        profile = get_profile(name)
    except DeviceError as e:
        log.warning("%s", e)
        return None
    return profile if len(profile.channels) == nch else None


def read_openbci(path: str | Path):
    """Read an OpenBCI GUI text recording; see the module docstring for the formats."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    header: list[str] = []
    body: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        (header if s.startswith("%") and not body else body).append(s)
    body = [s for s in body if not s.startswith("%")]
    column_names: list[str] | None = None
    if body and body[0].split(",")[0].strip()[:1].isalpha():
        column_names = [c.strip() for c in body[0].split(",")]
        body = body[1:]
    if not body:
        raise RecordingError(f"{path} holds no samples (an OpenBCI file with a header only)")

    head = "\n".join(header)
    rate_match, nch_match = _RATE.search(head), _NCH.search(head)
    board_line = ""
    for h in header:
        m = _BOARD.search(h.lstrip("%"))
        if m:
            board_line = m.group(1).strip()

    rows = [[v.strip() for v in ln.split(",")] for ln in body]
    counts = Counter(len(r) for r in rows)
    ncols = counts.most_common(1)[0][0]
    if column_names is not None and len(column_names) != ncols:
        raise RecordingError(f"{path}: the column row names {len(column_names)} columns but rows have {ncols}; "
                             "the file is damaged")
    dropped = len(rows) - counts[ncols]
    if dropped:
        log.info("%s: dropped %d row(s) without %d columns (a truncated or damaged line)", path.name, dropped, ncols)
        rows = [r for r in rows if len(r) == ncols]

    ts_col: int | None = None
    marker_col: int | None = None
    if column_names is not None:
        fmt = "openbci-v6"
        exg_cols = [j for j, c in enumerate(column_names) if c.lower().startswith(("exg channel", "eeg channel"))]
        lower = [c.lower() for c in column_names]
        ts_col = lower.index("timestamp") if "timestamp" in lower else None
        marker_col = lower.index("marker channel") if "marker channel" in lower else None
        nch = len(exg_cols)
        if not nch:
            raise RecordingError(f"{path} has a column row without 'EXG Channel' columns; not an OpenBCI GUI file")
    else:
        last_numeric = _column(rows[:50], ncols - 1) is not None
        prev_numeric = _column(rows[:50], ncols - 2) is not None if ncols > 2 else True
        if nch_match:
            nch = int(nch_match.group(1))
        else:
            nch = next((ncols - k for k in (4, 1) if ncols - k in _PROFILE_BY_NCH), 0)
            if not nch:
                raise RecordingError(f"{path}: cannot tell how many EEG channels {ncols} columns hold; add a "
                                     "'%Number of channels = N' header line")
        if not last_numeric and prev_numeric:
            fmt, ts_col = "openbci-v5", ncols - 2
        elif last_numeric and not prev_numeric:
            fmt, ts_col = "openbci-v4", ncols - 1
        elif ncols == nch + 1:
            fmt = "openbci-sd"
        else:
            fmt = "openbci-raw"
        exg_cols = list(range(1, nch + 1))
        if exg_cols[-1] >= ncols:
            raise RecordingError(f"{path}: header says {nch} channels but rows have only {ncols} columns")

    columns = [_column(rows, j) for j in exg_cols]
    eeg = np.stack([c if c is not None else np.full(len(rows), np.nan) for c in columns], axis=1)
    index = _column(rows, 0)
    ts = _column(rows, ts_col) if ts_col is not None else None
    markers_raw = _column(rows, marker_col) if marker_col is not None else None

    # GUI v5 starts with an all-zero placeholder row; drop leading all-zero rows.
    start = 0
    if (len(rows) > 1 and index is not None and index[0] == 0 and index[1] == 0 and not np.any(eeg[0])
            and (ts is None or not ts[0])):
        start = 1
    bad = ~np.isfinite(eeg).all(axis=1)
    keep = np.ones(len(rows), bool)
    keep[:start] = False
    keep &= ~bad
    if bad.any():
        log.warning("%s: dropped %d row(s) with unreadable values", path.name, int(bad.sum()))
    eeg = eeg[keep]
    index = index[keep] if index is not None else None
    ts = ts[keep] if ts is not None else None
    markers_raw = markers_raw[keep] if markers_raw is not None else None
    n = eeg.shape[0]
    if n == 0:
        raise RecordingError(f"{path} holds no readable samples")

    profile = _profile_for(nch, board_line)
    if rate_match:
        sfreq = float(rate_match.group(1))
    elif profile is not None and profile.sampling_rate:
        sfreq = float(profile.sampling_rate)
    elif nch in _DEFAULT_RATE:
        sfreq = _DEFAULT_RATE[nch]
    else:
        raise RecordingError(f"{path}: no '%Sample Rate' header and no default rate for {nch} channels")
    if not rate_match:
        log.info("%s: no sample-rate header; assuming %g Hz", path.name, sfreq)
    ch_names = profile.channels if profile is not None else tuple(f"Ch{i + 1}" for i in range(nch))

    times, time_source = _times(ts, index, sfreq, n)
    markers: list[Marker] = []
    if markers_raw is not None:
        for i in np.flatnonzero(np.nan_to_num(markers_raw) != 0):
            markers.append(Marker(float(times[i]), f"{markers_raw[i]:g}", "openbci-markers"))
    log.info("%s: %s, %d ch, %g Hz, %d samples, times from %s", path.name, fmt, nch, sfreq, n, time_source)
    return Recording(
        data=eeg.astype(np.float32), sfreq=sfreq, ch_names=ch_names, markers=markers, times=times,
        path=path, source_format=fmt,
        info={"board": board_line, "time_source": time_source, "dropped_rows": int(dropped + bad.sum() + start),
              "profile": profile.name if profile is not None else None},
    )


def _times(ts: np.ndarray | None, index: np.ndarray | None, sfreq: float, n: int) -> tuple[np.ndarray, str]:
    """Seconds since the first sample: from the timestamp column when sane, else from the sample counter."""
    if ts is not None and n > 1 and np.isfinite(ts).all() and (ts > 0).all():
        t = ts / 1000.0 if np.median(ts) > 1e11 else ts.copy()  # unix ms (v3-v5) or s (v6)
        span = t[-1] - t[0]
        expected = (n - 1) / sfreq
        if np.all(np.diff(t) >= 0) and 0.5 * expected <= span <= 2.0 * expected:
            return t - t[0], "timestamps"
    if index is not None and n > 1 and np.isfinite(index).all():
        d = np.diff(index)
        step = np.median(d[d > 0]) if np.any(d > 0) else 1.0
        modulo = 256.0 if index.max() <= 255 else float(index.max() + step)
        # A counter that wraps: 255 → 0 is one step; a skip of k means k - 1 dropped samples.
        steps = np.mod(d - step, modulo) + step
        counter = np.concatenate([[0.0], np.cumsum(steps)]) / step
        return counter / sfreq, "sample counter"
    return np.arange(n, dtype=np.float64) / sfreq, "sample count"
