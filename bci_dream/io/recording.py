"""The one form every recording takes once read: :class:`Recording` (µV samples, rate, names, markers, times).

The readers (:mod:`bci_dream.io.readers` chooses one per file) build it; training and calibration use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_dream.core.types import Marker


@dataclass(frozen=True)
class AuxStream:
    """A numeric stream recorded beside the EEG (a board's accelerometer, PPG or analog inputs), as stored.

    Attributes: ``data`` float32 [n, channels] in the stream's own units, ``times`` float64 [n] seconds in the
    recording's time base, ``sfreq`` its nominal rate in Hz (0: irregular).
    """

    name: str
    stream_type: str
    ch_names: tuple[str, ...]
    sfreq: float
    data: np.ndarray
    times: np.ndarray


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
        aux: the file's other numeric streams (XDF recordings of a board's aux rows), not part of ``data``.
    """

    data: np.ndarray
    sfreq: float
    ch_names: tuple[str, ...]
    markers: list[Marker]
    times: np.ndarray
    path: Path
    source_format: str
    info: dict = field(default_factory=dict)
    aux: tuple[AuxStream, ...] = ()

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

    def channel(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(times [n], values [n])`` of the channel called ``name``: an EEG column (µV) or an aux stream's
        channel (its own units and times); None if there is none."""
        if name in self.ch_names:
            return self.times, self.data[:, self.ch_names.index(name)]
        for stream in self.aux:
            if name in stream.ch_names:
                return stream.times, stream.data[:, stream.ch_names.index(name)]
        return None

    @property
    def all_channel_names(self) -> tuple[str, ...]:
        """The EEG channels' names, then the aux streams'."""
        return self.ch_names + tuple(c for s in self.aux for c in s.ch_names)

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
