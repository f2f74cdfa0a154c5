"""Read Muse CSV recordings: muselsl's ``timestamps,TP9,AF7,AF8,TP10,Right AUX[,Marker0,...]`` and Mind Monitor's.

muselsl layout:

* ``times`` are the file's timestamps (LSL clock seconds) exactly as written, even where they go
  backwards (muselsl stamps whole BLE packets and they arrive out of order now and then). Timestamps
  written in milliseconds (the rate they give in Hz is below 1 while the same values read as ms give an
  EEG rate) are converted to seconds, and that is logged.
* ``sfreq`` is estimated by a least-squares line through the timestamps (robust to that jitter)
  and snapped to a nominal rate (256 Hz for Muse EEG) when within 1 %.
* ``Right AUX`` (and any ``AUX`` column) is dropped; ``Marker*`` columns give markers: every
  non-zero value becomes a marker with the value as text (``1.0`` → ``"1"``; a text marker is kept as text).

Mind Monitor layout (``TimeStamp,Delta_TP9,...,RAW_TP9,RAW_AF7,RAW_AF8,RAW_TP10,AUX_RIGHT,...,Elements``):
the ``RAW_*`` columns are the EEG (µV, named without the prefix); ``TimeStamp`` is a date-time and ``times``
are seconds since the first row; the ``Elements`` column gives markers (``/Marker/1`` → ``"1"``, other
elements such as ``/muse/elements/blink`` as written). Rows that hold only an element are markers, not samples.

Damage (as the OpenBCI reader treats it): rows with another number of fields than the header (a truncated
last line) and rows whose timestamp is not a number are dropped with a ``dropped N row(s)`` warning; blank or
non-numeric EEG cells are kept as NaN (missing samples, which the pipeline fills), with a warning. A file is
rejected, in one line, only when no usable sample is left.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError
from bci_dream.core.types import Marker
from bci_dream.io.recording import Recording
from bci_dream.io.text_table import TextTable, column_separator, read_text_table, warn_dropped, warn_missing_values

log = logging.getLogger(__name__)

#: Rates that an estimate snaps to when it lies within 1 % of one.
NOMINAL_RATES = (256.0, 220.0, 250.0, 128.0, 200.0, 500.0, 512.0, 1000.0, 1024.0, 2048.0, 64.0, 52.0)
#: Sampling rates (Hz) accepted as EEG; outside them the timestamps are in another unit or the file is not EEG.
PLAUSIBLE_RATES = (1.0, 50_000.0)
#: Mind Monitor writes RAW EEG at the headset's rate only with "Recording Interval: Constant".
_MIND_MONITOR_MIN_RATE = 100.0


#: Names of a first column of timestamps (muselsl writes ``timestamps``; other tools ``time``).
TIME_COLUMNS = ("timestamps", "timestamp", "time")


def estimate_sfreq(times: np.ndarray) -> float:
    """Sampling rate (Hz) from jittery timestamps ``times`` (float64 [n], seconds): 1 / slope of a line
    fitted to ``times`` against sample index, snapped to :data:`NOMINAL_RATES` within 1 %.

    Raises:
        ValueError: fewer than two samples, or timestamps that do not increase.
    """
    n = times.shape[0]
    if n < 2:
        raise ValueError("at least two samples are needed to estimate a sampling rate")
    idx = np.arange(n, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        slope = np.polyfit(idx, times - times[0], 1)[0]
    if not slope > 0:
        raise ValueError("the timestamps do not increase")
    rate = 1.0 / slope
    for nominal in NOMINAL_RATES:
        if abs(rate - nominal) <= 0.01 * nominal:
            return nominal
    return float(round(rate, 3))


def _datetimes(cells: Sequence[str]) -> np.ndarray:
    """Date-time strings (``2023-01-01 10:00:00.004``) as float64 [n] seconds since the first one; NaN where a
    cell is not a date-time."""
    try:
        stamps = np.asarray(cells, dtype="datetime64[us]")
    except ValueError:
        stamps = np.empty(len(cells), dtype="datetime64[us]")
        for i, v in enumerate(cells):
            try:
                stamps[i] = np.datetime64(v, "us")
            except ValueError:
                stamps[i] = np.datetime64("NaT")
    valid = ~np.isnat(stamps)
    out = np.full(len(cells), np.nan)
    if valid.any():
        first = stamps[valid][0]
        out[valid] = (stamps[valid] - first).astype(np.int64) / 1e6
    return out


def _seconds(path: Path, times: np.ndarray, numeric: bool) -> tuple[np.ndarray, float, str]:
    """``(times in seconds, sampling rate, unit written)``: numeric timestamps in ms are converted."""
    try:
        rate = estimate_sfreq(times)
    except ValueError as e:
        raise RecordingError(f"{path}: cannot estimate the sampling rate: {e}; the timestamps column is damaged") \
            from e
    lo, hi = PLAUSIBLE_RATES
    if lo <= rate <= hi:
        return times, rate, "s"
    if numeric and rate < lo:
        ms_rate = estimate_sfreq(times / 1000.0)
        if lo <= ms_rate <= hi:
            log.info("%s: the timestamps are in milliseconds (one step is %.4g ms, %g Hz); converted to seconds",
                     path.name, 1000.0 / ms_rate, ms_rate)
            return times / 1000.0, ms_rate, "ms"
        raise RecordingError(f"{path}: the timestamps give {rate:.3g} Hz read as seconds and {ms_rate:.3g} Hz read "
                             "as milliseconds, neither an EEG sampling rate; write the timestamps in seconds")
    raise RecordingError(f"{path}: the timestamps give {rate:.3g} Hz, not an EEG sampling rate "
                         f"({lo:g} to {hi:g} Hz); write the timestamps in seconds")


def _time_column(path: Path, table: TextTable) -> tuple[np.ndarray, bool]:
    """The first column as float64 [n] (NaN where unreadable) and whether it is numeric (else date-times)."""
    numeric = table.values[:, 0]
    if np.count_nonzero(np.isfinite(numeric)) * 2 > numeric.shape[0]:
        return numeric, True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stamps = _datetimes(table.column(0))
    if np.count_nonzero(np.isfinite(stamps)) * 2 > stamps.shape[0]:
        return stamps, False
    raise RecordingError(f"{path}: the timestamp column holds neither numbers nor date-times "
                         f"(first value '{table.column(0)[0][:40]}'); the file is damaged or not a Muse CSV")


def _is_mind_monitor(header: Sequence[str]) -> bool:
    return any(h.upper().startswith("RAW_") for h in header) or (
        "elements" in (h.lower() for h in header) and any(h.lower().startswith("delta_") for h in header))


def read_muse_csv(path: str | Path) -> Recording:
    """Read a muselsl or Mind Monitor CSV recording; see the module docstring.

    Returns:
        A :class:`Recording`: data float32 [n_samples, n_eeg] in µV, times float64 [n_samples] in seconds.

    Raises:
        RecordingError: not a Muse CSV, no usable samples, or timestamps that give no EEG rate (one line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    sep = column_separator(lines[0]) if lines else ","
    header = [h.strip() for h in next(csv.reader(lines[:1], delimiter=sep), [])]
    if not header or header[0].lower() not in TIME_COLUMNS:
        raise RecordingError(f"{path} is not a muselsl CSV (its first column is not 'timestamps')")
    body = lines[1:]
    if not body:
        raise RecordingError(f"{path} holds no samples (only its header line); the recording is empty")
    mind_monitor = _is_mind_monitor(header)
    table = read_text_table(body, sep, len(header))
    n_rows = len(body)
    if table.n_wrong_fields * 2 > n_rows:  # the header, not a few lines, is what does not fit
        common = Counter(len(ln.split(sep)) for ln in body).most_common(1)[0][0]
        raise RecordingError(f"{path}: the header names {len(header)} columns but most rows have {common}; "
                             "the file is damaged")
    warn_dropped(path, table.n_wrong_fields, f"without {len(header)} fields (a truncated or damaged line)", n_rows)
    lower = [h.lower() for h in header]
    if mind_monitor:
        eeg_cols = [j for j, h in enumerate(header) if h.upper().startswith("RAW_")]
        names = tuple(header[j][4:] for j in eeg_cols)
        marker_cols = [lower.index("elements")] if "elements" in lower else []
        if not eeg_cols:
            raise RecordingError(f"{path} is a Mind Monitor export without RAW_ EEG columns (band powers only); "
                                 "record with Mind Monitor's 'Recording Interval' set to 'Constant'")
    else:
        eeg_cols = [j for j, h in enumerate(header) if j > 0 and "aux" not in h.lower() and not h.lower().startswith(
            "marker")]
        names = tuple(header[j] for j in eeg_cols)
        marker_cols = [j for j, h in enumerate(header) if h.lower().startswith("marker")]
    if not eeg_cols:
        raise RecordingError(f"{path} has no EEG columns (columns: {', '.join(header)})")

    times, numeric = _time_column(path, table)
    data = table.values[:, eeg_cols]
    data[~np.isfinite(data)] = np.nan
    n_table = table.values.shape[0]
    marker_columns = [_marker_column(table, j, mind_monitor) for j in marker_cols]
    marker_text = [list(row) for row in zip(*marker_columns)] if marker_columns else [[] for _ in range(n_table)]
    keep = np.isfinite(times)
    warn_dropped(path, int(np.count_nonzero(~keep)), "whose timestamp is not a number", n_table)
    if mind_monitor:  # rows with no RAW value are elements (markers) or band-power rows, not samples
        empty = keep & np.isnan(data).all(axis=1)
        element_only = empty & np.array([any(m) for m in marker_text], dtype=bool)
        warn_dropped(path, int(np.count_nonzero(empty & ~element_only)), "without any RAW value",
                      int(np.count_nonzero(keep)))
        marker_rows = keep.copy()
        keep &= ~empty
    else:
        marker_rows = keep
    if not keep.any():
        raise RecordingError(f"{path} holds no readable samples ({n_rows} rows, none with a timestamp and "
                             f"{len(header)} fields); the file is damaged")
    if np.count_nonzero(keep) < 2:
        raise RecordingError(f"{path} holds only 1 readable sample; at least two are needed to tell the rate")
    times_kept, sfreq, unit = _seconds(path, times[keep], numeric)
    scale = 1000.0 if unit == "ms" else 1.0
    if mind_monitor and sfreq < _MIND_MONITOR_MIN_RATE:
        raise RecordingError(f"{path} is a Mind Monitor export with one row every {1 / sfreq:.3g} s, not raw EEG; "
                             "record with Mind Monitor's 'Recording Interval' set to 'Constant'")
    data = data[keep]
    nan_rows = int(np.count_nonzero(np.isnan(data).any(axis=1)))
    if np.isnan(data).all():
        raise RecordingError(f"{path} holds no readable samples (every EEG value is blank or not a number)")
    warn_missing_values(path, nan_rows)
    markers: list[Marker] = []
    streams = [header[j] for j in marker_cols]
    for i in np.flatnonzero(marker_rows):
        for text_, stream in zip(marker_text[i], streams):
            if text_:
                markers.append(Marker(float(times[i] / scale), text_, stream))
    backwards = int(np.count_nonzero(np.diff(times_kept) < 0))
    fmt = "mind-monitor-csv" if mind_monitor else "muselsl-csv"
    log.info("%s: %s, %d ch, %g Hz, %d samples, %d markers, timestamps go backwards %d times", path.name,
             "Mind Monitor CSV" if mind_monitor else "muselsl CSV", len(eeg_cols), sfreq, data.shape[0], len(markers),
             backwards)
    info = {"timestamps_backwards": backwards, "dropped_rows": n_rows - int(np.count_nonzero(keep)),
            "nan_rows": nan_rows, "timestamp_unit": unit if numeric else "date-time"}
    if not numeric:
        info["start"] = table.column(0)[int(np.flatnonzero(np.isfinite(times))[0])]
    return Recording(data=data.astype(np.float32), sfreq=sfreq, ch_names=names, markers=markers, times=times_kept,
                     path=path, source_format=fmt, info=info)


def _marker_column(table: TextTable, j: int, mind_monitor: bool) -> list[str]:
    """Column ``j`` of ``table`` as marker texts, one per row (see :func:`_marker_text`)."""
    if table.cells is None:  # (all numbers: only the non-zero ones are markers)
        values = table.values[:, j]
        texts = [""] * len(values)
        for i in np.flatnonzero(np.isfinite(values) & (values != 0)):
            texts[i] = f"{values[i]:g}"
        return texts
    return [_marker_text(cell, mind_monitor) for cell in table.column(j)]


def _marker_text(cell: str, mind_monitor: bool) -> str:
    """A marker cell as marker text; ``""`` for no marker (blank, 0, NaN)."""
    cell = cell.strip()
    if not cell:
        return ""
    try:
        value = float(cell)
    except ValueError:
        if mind_monitor and cell.lower().startswith("/marker/"):
            return cell[len("/marker/"):]
        return cell
    return f"{value:g}" if value != 0 and np.isfinite(value) else ""
