"""Read BrainFlow ``DataFilter.write_file`` files: one line per sample, one column per board row.

The file does not say which board recorded it, so ``board`` names the ``BoardIds`` member (default
``SYNTHETIC_BOARD``; without it the board is guessed from the row count and the guess is logged).
EEG rows, sampling rate and the timestamp and marker rows come from ``BoardShim.get_board_descr``;
channel names from the device profile of that board (``devices/*.toml``), else the board's
``eeg_names``. ``times`` are the timestamp row (unix seconds) relative to the first sample; markers
are the non-zero values of the marker row. Values are µV, as BrainFlow delivers them.
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError
from bci_dream.core.types import Marker
from bci_dream.devices import list_profiles
from bci_dream.io.recording import Recording

log = logging.getLogger(__name__)

DEFAULT_BOARD = "SYNTHETIC_BOARD"
#: Boards tried first when several share a row count.
_PREFERRED = ("SYNTHETIC_BOARD", "CYTON_BOARD", "CYTON_DAISY_BOARD", "GANGLION_BOARD", "GANGLION_NATIVE_BOARD",
              "MUSE_2_BOARD", "MUSE_S_BOARD", "MUSE_2016_BOARD", "UNICORN_BOARD", "BRAINBIT_BOARD")


@cache
def board_description(board_id: int) -> dict:
    """``BoardShim.get_board_descr`` for the default preset (cached)."""
    from brainflow.board_shim import BoardShim

    return dict(BoardShim.get_board_descr(int(board_id)))


@lru_cache(maxsize=1)
def _boards_by_rows() -> dict[int, list[str]]:
    from brainflow.board_shim import BoardIds

    by_rows: dict[int, list[str]] = {}
    for member in BoardIds:
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
    from brainflow.board_shim import BoardIds

    if board is not None and board != "":
        try:
            member = BoardIds(int(board)) if isinstance(board, int) or str(board).lstrip("-").isdigit() \
                else BoardIds[str(board).strip().upper()]
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
    return BoardIds[name].value, name


def _load(path: Path) -> np.ndarray:
    """The file as float64 [n_rows, n_samples], like ``DataFilter.read_file``."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    sep = "\t" if "\t" in first else ","
    try:
        table = np.loadtxt(path, delimiter=sep, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise RecordingError(f"{path} is not a BrainFlow data file (rows of numbers): {e}") from e
    return np.ascontiguousarray(table.T)


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


def read_brainflow_csv(path: str | Path, *, board: str | int | None = None):
    """Read a BrainFlow ``write_file`` recording; see the module docstring."""
    path = Path(path)
    table = _load(path)
    n_rows, n = table.shape
    if n == 0:
        raise RecordingError(f"{path} holds no samples")
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
    times = None
    if ts_row is not None:
        ts = table[int(ts_row)]
        if np.isfinite(ts).all() and ts[0] > 0:
            times = ts - ts[0]
    if times is None:
        times = np.arange(n, dtype=np.float64) / sfreq
    markers: list[Marker] = []
    marker_row = descr.get("marker_channel")
    if marker_row is not None:
        values = table[int(marker_row)]
        for i in np.flatnonzero(np.nan_to_num(values) != 0):
            markers.append(Marker(float(times[i]), f"{values[i]:g}", "brainflow-markers"))
    log.info("%s: BrainFlow %s, %d EEG ch, %g Hz, %d samples, %d markers", path.name, board_name, len(eeg_rows),
             sfreq, n, len(markers))
    return Recording(
        data=table[eeg_rows].T.astype(np.float32), sfreq=sfreq, ch_names=ch_names, markers=markers, times=times,
        path=path, source_format="brainflow-csv",
        info={"board": board_name, "board_id": board_id,
              "unix_start": float(table[int(ts_row)][0]) if ts_row is not None else None},
    )
