"""One reader layer for every recording format: ``read_recording(path)`` → :class:`Recording`.

Whatever the file, the result is the same: float32 samples [n, channels] in microvolts (time-major,
like live chunks), the sampling rate, channel names, markers and one timestamp per sample.

Formats, chosen by suffix and, for text files, by sniffing the first lines:

=============================  ===============================  ==========================================
format                          suffix / signature              ``times``
=============================  ===============================  ==========================================
XDF (LabRecorder)               ``.xdf``, ``.xdfz``, ``XDF:``     the file's LSL timestamps (dejittered)
MNE-readable                    ``.fif .edf .bdf .vhdr .set      ``arange(n) / sfreq`` (start 0)
                                .gdf .cnt .mff`` (+ ``.fif.gz``)
OpenBCI GUI text (v3-v6, RAW,   ``%`` header lines               file timestamps relative to the first
SD-converted)                                                    when sane, else sample counter / sfreq
BrainFlow ``write_file``        numeric rows, no header          timestamp row relative to the first
muselsl CSV                     ``timestamps,TP9,...`` header    the file's LSL timestamps (as given)
=============================  ===============================  ==========================================

Markers carry timestamps in the same time base as ``times``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_dream.acquisition.types import Marker, unit_scale_to_microvolts
from bci_dream.errors import RecordingError

log = logging.getLogger(__name__)

#: Suffixes handed to :func:`mne.io.read_raw`.
MNE_SUFFIXES = (".fif", ".fif.gz", ".edf", ".bdf", ".vhdr", ".set", ".gdf", ".cnt", ".mff")
XDF_SUFFIXES = (".xdf", ".xdfz")
SUPPORTED = ".xdf, .fif, .edf, .bdf, .vhdr, .set, .gdf, OpenBCI GUI .txt, BrainFlow .csv, muselsl .csv"


@dataclass
class Recording:
    """A recording in the form training uses.

    Attributes:
        data: float32 [n_samples, n_channels], microvolts, time-major (like live chunks).
        sfreq: sampling rate in Hz (nominal, or estimated when the file has none).
        ch_names: one name per column of ``data``.
        markers: events, sorted by time, with timestamps in the time base of ``times``.
        times: float64 [n_samples] seconds: the file's own timestamps where it has them (XDF,
            muselsl), else ``arange(n) / sfreq`` (start 0) or the file's clock relative to its
            first sample. May be non-monotonic where the file's timestamps are (muselsl).
        path: the file read.
        source_format: ``"xdf"``, ``"mne-edf"``, ``"openbci-v6"``, ``"brainflow-csv"``, ``"muselsl-csv"`` ...
        info: extra details from the reader (stream name, board, dropped rows, ...).
    """

    data: np.ndarray
    sfreq: float
    ch_names: tuple[str, ...]
    markers: list[Marker]
    times: np.ndarray
    path: Path
    source_format: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.ascontiguousarray(self.data, dtype=np.float32)
        self.times = np.ascontiguousarray(self.times, dtype=np.float64).reshape(-1)
        self.ch_names = tuple(str(c) for c in self.ch_names)
        self.path = Path(self.path)
        if self.data.ndim != 2:
            raise ValueError(f"recording data must be [n_samples, n_channels], got shape {self.data.shape}")
        if self.data.shape[1] != len(self.ch_names):
            raise ValueError(f"{self.data.shape[1]} channels but {len(self.ch_names)} channel names")
        if self.times.shape[0] != self.data.shape[0]:
            raise ValueError(f"{self.data.shape[0]} samples but {self.times.shape[0]} timestamps")
        if not self.sfreq > 0:
            raise ValueError(f"the sampling rate must be positive, got {self.sfreq}")
        self.markers = sorted(self.markers, key=lambda m: m.timestamp)

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds: ``n_samples / sfreq``."""
        return self.n_samples / float(self.sfreq)

    def index_at(self, t: float | np.ndarray) -> np.ndarray:
        """Index of the sample whose timestamp is nearest to ``t`` (works for jittery, unsorted times)."""
        t = np.asarray(t, dtype=np.float64)
        if self.n_samples == 0:
            return np.zeros(t.shape, np.int64)
        if np.all(np.diff(self.times) >= 0):
            order = None
            sorted_times = self.times
        else:
            order = np.argsort(self.times, kind="stable")
            sorted_times = self.times[order]
        right = np.clip(np.searchsorted(sorted_times, t), 1, len(sorted_times) - 1) if len(sorted_times) > 1 \
            else np.zeros(t.shape, np.int64)
        left = np.maximum(right - 1, 0)
        pick = np.where(np.abs(sorted_times[left] - t) <= np.abs(sorted_times[right] - t), left, right)
        return (order[pick] if order is not None else pick).astype(np.int64)

    def __repr__(self) -> str:
        return (f"Recording({self.path.name!r}, {self.source_format}, {self.n_channels} ch, {self.sfreq:g} Hz, "
                f"{self.duration:.1f} s, {len(self.markers)} markers)")


def _unsupported(path: Path, why: str = "") -> RecordingError:
    detail = f" ({why})" if why else ""
    return RecordingError(f"{path} is not a recording bci-dream can read{detail} (supported: {SUPPORTED})")


def _text_head(path: Path, n_lines: int = 12) -> list[str] | None:
    """The first non-empty lines of ``path`` if it looks like text, else None."""
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    if not raw or b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[:n_lines]


def sniff_format(path: str | os.PathLike) -> str:
    """Name of the reader for ``path``: ``"xdf"``, ``"mne"``, ``"openbci"``, ``"muselsl"``, ``"brainflow"``.

    Raises:
        RecordingError: the file is missing or in no supported format.
    """
    path = Path(path)
    if not path.exists():
        raise RecordingError(f"recording {path} does not exist; check the path")
    name = path.name.lower()
    if name.endswith(XDF_SUFFIXES):
        return "xdf"
    if name.endswith(MNE_SUFFIXES):
        return "mne"
    if path.is_dir():
        raise RecordingError(f"{path} is a folder, not a recording; pass the recording files inside it")
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    if magic.startswith(b"XDF:"):
        return "xdf"
    if magic == b"\xffBIOSEMI" or magic == b"0       ":
        return "mne"  # BDF / EDF without their usual suffix
    lines = _text_head(path)
    if not lines:
        raise _unsupported(path, "empty file" if lines == [] else "binary content of unknown type")
    first = lines[0]
    if first.startswith("%"):
        return "openbci"
    header = [c.strip().lower() for c in first.split(",")]
    if header and header[0] in ("timestamps", "timestamp") and len(header) > 1:
        return "muselsl"
    if _numeric_rows(lines):
        return "brainflow"
    if header and header[0].startswith("sample index"):
        return "openbci"  # a v6 file whose % header was removed
    raise _unsupported(path, "unrecognised text content")


def _numeric_rows(lines: list[str]) -> bool:
    sep = "\t" if "\t" in lines[0] else ","
    try:
        counts = {len([float(v) for v in ln.split(sep) if v.strip()]) for ln in lines[: min(len(lines), 5)]}
    except ValueError:
        return False
    return len(counts) == 1 and counts.pop() >= 2


def read_recording(path: str | os.PathLike, *, stream: str | None = None, board: str | int | None = None) -> Recording:
    """Read any supported recording into a :class:`Recording` (µV, time-major).

    Args:
        path: the recording file.
        stream: XDF only: name or type of the EEG stream (default: type EEG, else the fastest).
        board: BrainFlow CSV only: the ``BoardIds`` member that recorded it (name or number);
            default: the synthetic board, or the board whose row count matches (logged).

    Raises:
        RecordingError: missing file, unknown format or unreadable content; one line naming the
            file, the problem and what to do.
    """
    path = Path(path)
    kind = sniff_format(path)
    try:
        if kind == "xdf":
            return _read_xdf(path, stream)
        if kind == "mne":
            from bci_dream.io.mne_reader import read_mne

            return read_mne(path)
        if kind == "openbci":
            from bci_dream.io.openbci_reader import read_openbci

            return read_openbci(path)
        if kind == "muselsl":
            from bci_dream.io.muse_csv import read_muse_csv

            return read_muse_csv(path)
        from bci_dream.io.brainflow_csv import read_brainflow_csv

        return read_brainflow_csv(path, board=board)
    except RecordingError:
        raise
    except (OSError, ValueError, IndexError, KeyError, UnicodeError) as e:
        raise RecordingError(f"cannot read {path} as {kind}: {type(e).__name__}: {e}; the file may be damaged") from e


def _read_xdf(path: Path, stream: str | None) -> Recording:
    from bci_dream.io.xdf import read_xdf

    session = read_xdf(path, stream)
    eeg = session.eeg
    scale = unit_scale_to_microvolts(eeg.units)
    data = eeg.data.astype(np.float32, copy=True)
    if scale != 1.0:
        data *= np.float32(scale)
    markers = [Marker(float(t), text, ms.name) for ms in session.markers for t, text in zip(ms.timestamps, ms.texts)]
    return Recording(
        data=data, sfreq=eeg.sfreq, ch_names=eeg.ch_names, markers=markers, times=eeg.timestamps,
        path=path, source_format="xdf",
        info={"stream": eeg.name, "stream_type": eeg.stream_type, "units": eeg.units,
              "other_streams": list(session.other_streams)},
    )
