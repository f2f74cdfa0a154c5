"""Read BrainFlow ``DataFilter.write_file`` files: one line per sample, one column per board row.

The file does not say which board recorded it, so ``board`` names the ``BoardIds`` member (default
``SYNTHETIC_BOARD``; without it the board is guessed from the row count and the guess is logged).
EEG rows, sampling rate and the timestamp and marker rows come from ``BoardShim.get_board_descr``;
channel names from the device profile of that board (``devices/*.toml``), else the board's
``eeg_names``. ``times`` are the timestamp row (unix seconds) relative to the first sample; markers
are the non-zero values of the marker row. Values are µV, as BrainFlow delivers them.

Damage (as the OpenBCI reader treats it): lines with another number of fields than most lines (a truncated
last line), lines without a single number and lines whose timestamp is not a number are dropped with a
``dropped N row(s)`` warning; blank or non-numeric EEG cells are kept as NaN (missing samples), with a warning.
A file is rejected, in one line, only when no usable sample is left.
"""

from __future__ import annotations

import logging
import warnings
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError
from bci_dream.core.types import Marker
from bci_dream.devices import list_profiles
from bci_dream.io.recording import Recording
from bci_dream.io.text_table import read_text_table, warn_dropped, warn_missing_values

log = logging.getLogger(__name__)

DEFAULT_BOARD = "SYNTHETIC_BOARD"
#: Boards tried first when several share a row count.
_PREFERRED = ("SYNTHETIC_BOARD", "CYTON_BOARD", "CYTON_DAISY_BOARD", "GANGLION_BOARD", "GANGLION_NATIVE_BOARD",
              "MUSE_2_BOARD", "MUSE_S_BOARD", "MUSE_2016_BOARD", "UNICORN_BOARD", "BRAINBIT_BOARD")


def _board_shim():
    """``brainflow.board_shim`` (imported on first use)."""
    from brainflow import board_shim

    return board_shim


@cache
def board_description(board_id: int) -> dict:
    """``BoardShim.get_board_descr`` for the default preset (cached)."""
    with warnings.catch_warnings():
        # brainflow 5.23 loads its native library on the first call through the deprecated pkg_resources
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        return dict(_board_shim().BoardShim.get_board_descr(int(board_id)))


@lru_cache(maxsize=1)
def _boards_by_rows() -> dict[int, list[str]]:
    board_ids = _board_shim().BoardIds

    by_rows: dict[int, list[str]] = {}
    for member in board_ids:
        try:
            rows = board_description(member.value).get("num_rows")
        except Exception:  # boards without a description (NO_BOARD, playback, streaming)
            continue
        if rows:
            by_rows.setdefault(int(rows), []).append(member.name)
    for names in by_rows.values():
        names.sort(key=lambda n: (_PREFERRED.index(n) if n in _PREFERRED else len(_PREFERRED)))
    return by_rows


def resolve_board(board: str | int | None, n_rows: int, path: Path) -> tuple[int, str]:
    """The ``(board_id, name)`` that recorded a file of ``n_rows`` rows; see the module docstring."""
    board_ids = _board_shim().BoardIds

    if board is not None and board != "":
        try:
            member = board_ids(int(board)) if isinstance(board, int) or str(board).lstrip("-").isdigit() \
                else board_ids[str(board).strip().upper()]
        except (KeyError, ValueError):
            raise RecordingError(f"unknown BrainFlow board '{board}' for {path}; use a BoardIds name such as "
                                 "SYNTHETIC_BOARD or CYTON_BOARD") from None
        return member.value, member.name
    candidates = _boards_by_rows().get(n_rows, [])
    if not candidates:
        raise RecordingError(f"{path} has {n_rows} rows per sample, which matches no BrainFlow board; "
                             "it is not a BrainFlow recording, or pass the board that recorded it")
    name = candidates[0]
    others = candidates[1:]
    log.info("%s: %d rows per sample; assuming it was recorded by %s%s (pass board=NAME otherwise)",
             path.name, n_rows, name, f" (also {n_rows} rows: {', '.join(others)})" if others else "")
    return board_ids[name].value, name


def _load(path: Path) -> tuple[np.ndarray, int]:
    """The file as float64 [n_rows, n_samples], like ``DataFilter.read_file``, and how many lines were dropped
    for another field count than most lines have (a truncated last line). Unreadable cells are NaN."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise RecordingError(f"{path} holds no samples (the file is empty)")
    sep = "\t" if any("\t" in ln for ln in lines[:5]) else ","
    parsed = read_text_table(lines, sep)
    table, dropped = parsed.values, parsed.n_wrong_fields
    warn_dropped(path, dropped, f"without {parsed.n_fields} fields (a truncated or damaged line)", len(lines))
    unreadable = np.isnan(table).all(axis=1)
    if unreadable.any() and not unreadable.all():
        warn_dropped(path, int(unreadable.sum()), "with no number in them (a header or damaged line)", len(table))
        table, dropped = table[~unreadable], dropped + int(unreadable.sum())
    if table.shape[0] == 0 or np.isnan(table).all():
        raise RecordingError(f"{path} holds no readable samples (no line of numbers); it is not a BrainFlow "
                             "recording or it is damaged")
    return np.ascontiguousarray(table.T), dropped


def _channel_names(board_name: str, descr: dict, n_eeg: int) -> tuple[str, ...]:
    try:
        profiles = list_profiles()
    except Exception:  # a broken profile folder must not stop reading data
        profiles = {}
    for profile in profiles.values():
        if profile.source == "brainflow" and profile.board == board_name and len(profile.channels) == n_eeg:
            return profile.channels
    names = [n.strip() for n in str(descr.get("eeg_names", "")).split(",") if n.strip()]
    if len(names) == n_eeg:
        return tuple(names)
    return tuple(f"Ch{i + 1}" for i in range(n_eeg))


def read_brainflow_csv(path: str | Path, *, board: str | int | None = None) -> Recording:
    """Read a BrainFlow ``write_file`` recording; see the module docstring.

    Returns:
        A :class:`Recording`: data float32 [n_samples, n_eeg] in µV, times float64 [n_samples] in seconds
        since the first sample.

    Raises:
        RecordingError: not a BrainFlow file, no usable samples, or a board that does not fit (one line).
    """
    path = Path(path)
    table, dropped = _load(path)
    n_rows, n = table.shape
    board_id, board_name = resolve_board(board, n_rows, path)
    try:
        descr = board_description(board_id)
    except Exception as e:
        raise RecordingError(f"BrainFlow has no description of board {board_name}: {e}") from e
    if int(descr.get("num_rows", -1)) != n_rows:
        raise RecordingError(f"{path} has {n_rows} rows per sample but {board_name} writes {descr.get('num_rows')}; "
                             "pass the board that recorded it")
    eeg_rows = list(descr.get("eeg_channels", []))
    if not eeg_rows:
        raise RecordingError(f"board {board_name} has no EEG channels; {path} cannot be used for EEG training")
    sfreq = float(descr["sampling_rate"])
    ch_names = _channel_names(board_name, descr, len(eeg_rows))
    ts_row = descr.get("timestamp_channel")
    if ts_row is not None:
        bad_ts = ~np.isfinite(table[int(ts_row)])
        if bad_ts.any() and not bad_ts.all():
            warn_dropped(path, int(bad_ts.sum()), "whose timestamp is not a number", n)
            table, n, dropped = table[:, ~bad_ts], n - int(bad_ts.sum()), dropped + int(bad_ts.sum())
    times = None
    if ts_row is not None:
        ts = table[int(ts_row)]
        if np.isfinite(ts).all() and ts[0] > 0:
            times = ts - ts[0]
    if times is None:
        times = np.arange(n, dtype=np.float64) / sfreq
    data = table[eeg_rows].T
    nan_rows = int(np.count_nonzero(~np.isfinite(data).all(axis=1)))
    if nan_rows == n:
        raise RecordingError(f"{path} holds no readable samples (every EEG value is blank or not a number)")
    warn_missing_values(path, nan_rows)
    markers: list[Marker] = []
    marker_row = descr.get("marker_channel")
    if marker_row is not None:
        values = table[int(marker_row)]
        for i in np.flatnonzero(np.nan_to_num(values) != 0):
            markers.append(Marker(float(times[i]), f"{values[i]:g}", "brainflow-markers"))
    log.info("%s: BrainFlow %s, %d EEG ch, %g Hz, %d samples, %d markers", path.name, board_name, len(eeg_rows),
             sfreq, n, len(markers))
    return Recording(
        data=np.where(np.isfinite(data), data, np.nan).astype(np.float32), sfreq=sfreq, ch_names=ch_names,
        markers=markers, times=times, path=path, source_format="brainflow-csv",
        info={"board": board_name, "board_id": board_id,
              "unix_start": float(table[int(ts_row)][0]) if ts_row is not None else None,
              "dropped_rows": dropped, "nan_rows": nan_rows},
    )
