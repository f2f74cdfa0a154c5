"""Read an ``.xdf`` session with pyxdf: pick its EEG stream and its marker streams."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError, first_line
from bci_dream.signal.gaps import dejitter as dejitter_timestamps

log = logging.getLogger(__name__)

XDF_MAGIC = b"XDF:"
#: Seconds from a stream's median timestamp beyond which a timestamp cannot be real (no session lasts 11 days).
PLAUSIBLE_SPAN_S = 1e6
MARKER_TYPES = ("markers", "marker", "lsl_marker_strings", "events", "stim")


@dataclass
class EegStream:
    """A numeric stream: ``data`` float32 [n, channels], ``timestamps`` float64 [n] (LSL seconds)."""

    name: str
    stream_type: str
    ch_names: tuple[str, ...]
    units: str
    sfreq: float
    data: np.ndarray
    timestamps: np.ndarray
    source_id: str = ""


@dataclass
class MarkerStream:
    """A string stream: ``texts[i]`` happened at ``timestamps[i]`` (LSL seconds)."""

    name: str
    timestamps: np.ndarray
    texts: list[str]


@dataclass
class XdfSession:
    """The EEG stream of an ``.xdf`` file, its marker streams, and its other numeric streams (``aux``: a board's
    accelerometer, PPG or analog inputs; ``other_streams`` names them).

    ``damage``: one line per problem found while reading (a file cut off inside a chunk, chunks pyxdf could
    not parse and skipped, numbers it could not synchronise); empty for an intact file. What could be read
    is here; the commands say the rest in one line and end with exit status 3.
    """

    path: Path
    eeg: EegStream
    markers: list[MarkerStream] = field(default_factory=list)
    other_streams: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    aux: list[EegStream] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        self.messages.append(text.splitlines()[0] if text else record.levelname)


@contextlib.contextmanager
def _library_quiet() -> Iterator[tuple[_Collect, list[warnings.WarningMessage]]]:
    """pyxdf's own log records (it logs tracebacks of chunks it skips) and numpy's warnings, collected instead
    of printed: the reader turns them into its one-line damage notes."""
    pyxdf_log = logging.getLogger("pyxdf")
    collect, propagate = _Collect(), pyxdf_log.propagate
    pyxdf_log.addHandler(collect)
    pyxdf_log.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collect, caught
    finally:
        pyxdf_log.removeHandler(collect)
        pyxdf_log.propagate = propagate


def _first(info: dict, key: str, default: str = "") -> str:
    value = info.get(key, [default])
    return str(value[0]) if isinstance(value, list) and value else str(value or default)


def _channel_desc(info: dict, n_channels: int) -> tuple[tuple[str, ...], str]:
    labels: list[str] = []
    unit = ""
    try:
        channels = info["desc"][0]["channels"][0]["channel"]
        for ch in channels:
            labels.append(str((ch.get("label") or [""])[0] or ""))
            if not unit:
                unit = str((ch.get("unit") or [""])[0] or "")
    except (KeyError, IndexError, TypeError):
        pass
    if len(labels) != n_channels or not all(labels):
        labels = [f"Ch{i + 1}" for i in range(n_channels)]
    return tuple(labels), unit


def _is_string(stream: dict) -> bool:
    return _first(stream["info"], "channel_format") == "string"


def _describe(stream: dict) -> str:
    info = stream["info"]
    return f"{_first(info, 'name')} ({_first(info, 'type')}, {len(stream['time_stamps'])} samples)"


def choose_eeg_stream(streams: list[dict], wanted: str | None, path: Path) -> dict:
    """The stream named or typed ``wanted``; else type EEG; else the numeric stream with the highest rate."""
    numeric = [s for s in streams if not _is_string(s)]
    listing = ", ".join(_describe(s) for s in streams) or "none"
    if wanted:
        for key in ("name", "type"):
            match = [s for s in streams if _first(s["info"], key).lower() == wanted.lower()]
            if match:
                if _is_string(match[0]):
                    raise RecordingError(f"stream '{wanted}' in {path} holds text markers, not EEG; streams: {listing}")
                return max(match, key=lambda s: len(s["time_stamps"]))
        raise RecordingError(f"{path} has no stream named or typed '{wanted}'; streams: {listing}")

    def rate(s: dict) -> float:
        return float(_first(s["info"], "nominal_srate", "0") or 0)

    eeg = [s for s in numeric if _first(s["info"], "type").lower() == "eeg"]
    candidates = eeg or [s for s in numeric if rate(s) > 0]
    if not candidates:
        raise RecordingError(f"{path} has no EEG stream (streams: {listing}); record one or pass --stream NAME")
    # Prefer streams that hold samples, then the highest rate.
    return max(candidates, key=lambda s: (len(s["time_stamps"]) > 0, rate(s)))


def whole_chunks_size(path: str | os.PathLike) -> tuple[int, int]:
    """Bytes of ``path`` made of whole XDF chunks, and the file's size (equal for an intact file).

    Follows the chunk lengths from the start without reading their contents. A file torn inside a
    chunk (a power cut, a kill during a write) ends early; pyxdf fails on some such files and
    returns a wrong last sample for others, so readers should read only the whole part.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        good = 4 if f.read(4) == XDF_MAGIC else 0
        while 0 < good < size:
            f.seek(good)
            width = f.read(1)
            if not width or width[0] not in (1, 4, 8):
                break
            raw = f.read(width[0])
            if len(raw) != width[0]:
                break
            end = good + 1 + width[0] + int.from_bytes(raw, "little")
            if end - good - 1 - width[0] < 2 or end > size:
                break
            good = end
    return good, size


def read_xdf(path: str | os.PathLike, stream: str | None = None, *, dejitter: bool = True) -> XdfSession:
    """Load ``path`` and return its EEG stream and marker streams.

    Args:
        path: an ``.xdf`` (or ``.xdfz``) file.
        stream: name or type of the EEG stream; by default type EEG, else the fastest numeric stream.
        dejitter: synchronise clocks (pyxdf) and smooth the timestamps of regular-rate streams
            (:func:`bci_dream.signal.gaps.dejitter`; recommended: raw timestamps of real recordings arrive in bursts
            and go backwards).

    Raises:
        RecordingError: the file is missing, not XDF, damaged beyond reading, has no EEG stream, or
            its EEG stream is empty. The message is one line naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"recording {path} does not exist")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    if magic != XDF_MAGIC and path.suffix != ".xdfz":
        raise RecordingError(f"{path} is not an XDF file (it does not start with 'XDF:')")
    source: object = os.fspath(path)
    damage: list[str] = []
    if path.suffix != ".xdfz":
        good, size = whole_chunks_size(path)
        if good < size:
            damage.append(f"it ends inside a chunk (cut off); its first {good} of {size} bytes were read")
            log.warning("%s ends inside a chunk (the recording was cut off); reading its first %d of %d bytes",
                        path, good, size)
            with open(path, "rb") as f:
                source = io.BytesIO(f.read(good))
    import pyxdf

    with _library_quiet() as (pyxdf_log, caught):
        try:
            # (timestamps are smoothed here, not by pyxdf: it breaks segments only at 1-s or 500-sample steps and
            # spreads a shorter dropout over the samples around it)
            streams, _ = pyxdf.load_xdf(source, synchronize_clocks=dejitter, dejitter_timestamps=False)
        except Exception as e:  # pyxdf raises many kinds on damaged files
            raise RecordingError(f"cannot read {path}: {type(e).__name__}: {first_line(e)}; the file may be "
                                 "damaged") from e
    if pyxdf_log.messages:
        damage.append(f"pyxdf skipped damaged parts ({len(pyxdf_log.messages)}: {pyxdf_log.messages[0]})")
    for s in streams:
        dropped = _drop_impossible_stamps(s)
        if dropped:
            damage.append(f"{dropped} sample(s) of stream '{_first(s['info'], 'name')}' had impossible timestamps "
                          "(damaged bytes) and were left out")
    numeric = [w for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))]
    if numeric:
        damage.append(f"its timestamps or values could not all be used ({numeric[0].message})")
    for note in damage[1 if len(damage) and "cut off" in damage[0] else 0:]:
        log.warning("%s: %s", path, note)
    if not streams:
        raise RecordingError(f"{path} holds no streams")
    chosen = choose_eeg_stream(streams, stream, path)
    info = chosen["info"]
    name = _first(info, "name")
    data = np.asarray(chosen["time_series"])
    if data.ndim != 2 or data.shape[0] == 0:
        raise RecordingError(f"the EEG stream '{name}' in {path} holds no samples; choose another recording")
    eeg = _numeric_stream(chosen, default_units="uV", dejitter=dejitter)
    markers = []
    others = []
    aux = []
    for s in streams:
        if s is chosen:
            continue
        if _is_string(s):
            texts = [",".join(str(v) for v in row) if isinstance(row, (list, tuple)) else str(row)
                     for row in s["time_series"]]
            markers.append(MarkerStream(_first(s["info"], "name"), np.asarray(s["time_stamps"], np.float64), texts))
        else:
            others.append(_first(s["info"], "name"))
            if np.asarray(s["time_series"]).ndim == 2:
                aux.append(_numeric_stream(s, dejitter=dejitter))
    if eeg.sfreq <= 0:
        raise RecordingError(f"the EEG stream '{name}' in {path} has no sampling rate")
    log.info("%s: EEG stream '%s' (%d ch, %g Hz, %d samples), %d marker streams",
             path.name, name, len(eeg.ch_names), eeg.sfreq, data.shape[0], len(markers))
    return XdfSession(path=path, eeg=eeg, markers=markers, other_streams=others, damage=damage, aux=aux)


def _drop_impossible_stamps(stream: dict) -> int:
    """Leave out, in place, the samples of a pyxdf ``stream`` whose timestamps are not finite or lie further than
    :data:`PLAUSIBLE_SPAN_S` from the stream's median (damaged bytes read as a float); returns how many."""
    times = np.asarray(stream.get("time_stamps", ()), dtype=np.float64)
    if times.size == 0:
        return 0
    finite = np.isfinite(times)
    keep = finite.copy()
    if finite.any():
        keep &= np.abs(times - np.median(times[finite])) <= PLAUSIBLE_SPAN_S
    dropped = int(times.size - keep.sum())
    if dropped:
        series = stream["time_series"]
        stream["time_stamps"] = times[keep]
        stream["time_series"] = series[keep] if isinstance(series, np.ndarray) else \
            [row for row, ok in zip(series, keep) if ok]
    return dropped


def _numeric_stream(stream: dict, default_units: str = "", dejitter: bool = False) -> EegStream:
    info = stream["info"]
    data = np.asarray(stream["time_series"])
    n_channels = int(_first(info, "channel_count", str(data.shape[1])))
    ch_names, unit = _channel_desc(info, n_channels)
    nominal = float(_first(info, "nominal_srate", "0") or 0)
    times = np.asarray(stream["time_stamps"], dtype=np.float64)
    if dejitter and nominal > 0:
        times = dejitter_timestamps(times, nominal)
    return EegStream(
        name=_first(info, "name"), stream_type=_first(info, "type"), ch_names=ch_names, units=unit or default_units,
        sfreq=nominal or float(info.get("effective_srate", 0)), data=np.ascontiguousarray(data, dtype=np.float32),
        timestamps=times, source_id=_first(info, "source_id"))

