"""Data that flows from a source to the ring buffers: chunks, markers, stream descriptions, states."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from bci_dream.core.errors import ChunkError


class SourceState(str, enum.Enum):
    """Life cycle of a source, as shown in the status bar and printed by ``bci-dream stream``."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Marker:
    """An event: ``timestamp`` in LSL clock seconds, ``text`` as sent, ``stream`` the marker stream name."""

    timestamp: float
    text: str
    stream: str = "markers"


@dataclass
class Chunk:
    """A block of consecutive samples of one stream.

    Attributes:
        samples: float32 array of shape [n, channels], in the stream's units.
        timestamps: float64 array of shape [n], LSL clock seconds of each sample.
        markers: events that occurred during the chunk (may be empty, and may come without samples).
        resumed: the stream was paused or moved on purpose before this chunk (a replay paused or seeked), so a
            gap before its first sample is expected, not lost samples.
    """

    samples: np.ndarray
    timestamps: np.ndarray
    markers: list[Marker] = field(default_factory=list)
    resumed: bool = False

    @classmethod
    def empty(cls, n_channels: int, markers: list[Marker] | None = None) -> Chunk:
        """A chunk with no samples, used to deliver markers alone."""
        return cls(np.empty((0, n_channels), np.float32), np.empty(0, np.float64), markers or [])

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def validated(self, n_channels: int) -> Chunk:
        """Return this chunk as contiguous float32/float64 arrays, or raise :class:`ChunkError`."""
        samples = np.ascontiguousarray(self.samples, dtype=np.float32)
        timestamps = np.ascontiguousarray(self.timestamps, dtype=np.float64).reshape(-1)
        if samples.ndim != 2:
            raise ChunkError(f"a chunk must be [samples, channels], got an array of shape {samples.shape}")
        if samples.shape[1] != n_channels:
            raise ChunkError(
                f"the stream delivered {samples.shape[1]} channels but its profile declares {n_channels}; "
                "fix the channel list of the device profile or choose the right device"
            )
        if timestamps.shape[0] != samples.shape[0]:
            raise ChunkError(f"a chunk has {samples.shape[0]} samples but {timestamps.shape[0]} timestamps")
        return Chunk(samples, timestamps, self.markers, self.resumed)


@dataclass(frozen=True)
class StreamInfo:
    """What a source delivers.

    Attributes:
        name: human-readable stream name (LSL stream name, headset name, ...).
        ch_names: channel labels, 10-20 names where known.
        sfreq: nominal sampling rate in Hz (0 for irregular streams).
        units: unit of the raw samples, e.g. ``"uV"``, ``"V"``, ``"mV"``.
        source_id: a stable identifier (serial number, LSL source_id, file path).
        stream_type: LSL content type, ``"EEG"`` for EEG.
    """

    name: str
    ch_names: tuple[str, ...]
    sfreq: float
    units: str = "uV"
    source_id: str = ""
    stream_type: str = "EEG"

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    @property
    def to_microvolts(self) -> float:
        """Factor that turns raw samples into microvolts (1 when the unit is not a voltage)."""
        return unit_scale_to_microvolts(self.units)


_VOLT_SCALES = {
    "v": 1e6, "volt": 1e6, "volts": 1e6,
    "mv": 1e3, "millivolt": 1e3, "millivolts": 1e3,
    "uv": 1.0, "µv": 1.0, "μv": 1.0, "microvolt": 1.0, "microvolts": 1.0,
    "nv": 1e-3, "nanovolt": 1e-3, "nanovolts": 1e-3,
}


def unit_scale_to_microvolts(units: str) -> float:
    """Factor from ``units`` (``"V"``, ``"mV"``, ``"uV"``, ``"microvolts"``, ...) to microvolts; 1 if unknown."""
    return _VOLT_SCALES.get(units.strip().lower(), 1.0)
