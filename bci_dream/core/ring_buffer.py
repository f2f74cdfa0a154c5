"""Fixed-capacity ring buffers addressed by absolute sample index.

One thread writes; any number of threads read. Every sample ever written has an absolute index
(0, 1, 2, ...), so a reader can ask for "everything since index k" and learn whether samples were
overwritten before it got to them (an overrun). The lock is held only while copying, never while
waiting, so a reader never blocks the writer for longer than one copy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bci_dream.core.errors import ChunkError


@dataclass(frozen=True)
class ReadResult:
    """Samples copied out of a :class:`RingBuffer`.

    Attributes:
        data: float32 [n, channels].
        timestamps: float64 [n], LSL clock seconds.
        start: absolute index of ``data[0]``.
        next_index: absolute index to ask for next time (``start + n``).
        lost: samples the reader asked for that had already been overwritten (0 if none).
    """

    data: np.ndarray
    timestamps: np.ndarray
    start: int
    next_index: int
    lost: int = 0

    def __len__(self) -> int:
        return int(self.data.shape[0])


class RingBuffer:
    """A ring of the newest ``capacity`` samples of a ``n_channels`` stream.

    Args:
        capacity: samples kept (e.g. 60 s x sampling rate).
        n_channels: columns of every write.
    """

    def __init__(self, capacity: int, n_channels: int) -> None:
        if capacity <= 0 or n_channels <= 0:
            raise ValueError(f"capacity and n_channels must be positive, got {capacity} and {n_channels}")
        self.capacity = int(capacity)
        self.n_channels = int(n_channels)
        # np.full writes every page now: np.zeros maps them lazily, and the first write to each would fault during
        # the first pass round the ring (a 60-s ring at 128 ch, 1 kHz: a third of a chunk's cost, measured).
        self._data = np.full((self.capacity, self.n_channels), 0.0, np.float32)
        self._ts = np.full(self.capacity, 0.0, np.float64)
        self._written = 0
        self._lock = threading.Lock()

    @property
    def total_written(self) -> int:
        """Absolute index one past the newest sample."""
        return self._written

    @property
    def oldest_index(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self._written - self.capacity)

    def write(self, samples: np.ndarray, timestamps: np.ndarray) -> int:
        """Append ``samples`` [n, channels] with ``timestamps`` [n]; return the new ``total_written``.

        Writes larger than the capacity keep only their newest ``capacity`` samples, but still
        advance the absolute index by ``n``.
        """
        n = samples.shape[0]
        if samples.ndim != 2 or samples.shape[1] != self.n_channels:
            raise ChunkError(f"expected [n, {self.n_channels}] samples, got shape {samples.shape}")
        if timestamps.shape[0] != n:
            raise ChunkError(f"{n} samples but {timestamps.shape[0]} timestamps")
        if n == 0:
            return self._written
        skip = max(0, n - self.capacity)
        with self._lock:
            start = self._written + skip
            self._copy_in(start, samples[skip:], timestamps[skip:])
            self._written += n
            return self._written

    def _copy_in(self, start: int, samples: np.ndarray, timestamps: np.ndarray) -> None:
        pos = start % self.capacity
        first = min(samples.shape[0], self.capacity - pos)
        self._data[pos:pos + first] = samples[:first]
        self._ts[pos:pos + first] = timestamps[:first]
        rest = samples.shape[0] - first
        if rest:
            self._data[:rest] = samples[first:]
            self._ts[:rest] = timestamps[first:]

    def _copy_out(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = start % self.capacity
        if pos + n <= self.capacity:
            return self._data[pos:pos + n].copy(), self._ts[pos:pos + n].copy()
        idx = (np.arange(start, start + n) % self.capacity)
        return self._data[idx], self._ts[idx]

    def latest(self, n: int) -> ReadResult:
        """Copy of the newest ``n`` samples (fewer if fewer were written or fit in the buffer)."""
        with self._lock:
            end = self._written
            n = max(0, min(int(n), end, self.capacity))
            data, ts = self._copy_out(end - n, n)
        return ReadResult(data, ts, end - n, end)

    def since(self, index: int, max_samples: int | None = None) -> ReadResult:
        """Copy of the samples from absolute ``index`` up to the newest (at most ``max_samples``).

        If some of them were already overwritten, the read starts at the oldest sample held and
        ``lost`` says how many were missed.
        """
        with self._lock:
            end = self._written
            if index > end:
                raise ValueError(f"index {index} is in the future: only {end} samples were written")
            oldest = max(0, end - self.capacity)
            start = max(index, oldest)
            lost = start - index
            n = end - start if max_samples is None else min(end - start, max(0, int(max_samples)))
            data, ts = self._copy_out(start, n)
        return ReadResult(data, ts, start, start + n, lost)

    def timestamps_at(self, indices: Sequence[int]) -> np.ndarray | None:
        """float64 [len(indices)]: the timestamps of samples at absolute ``indices`` (no data copied), or None if
        one of them is not held (overwritten or not written yet)."""
        idx = np.asarray(indices, dtype=np.int64)
        with self._lock:
            if idx.size and (idx.min() < max(0, self._written - self.capacity) or idx.max() >= self._written):
                return None
            return self._ts[idx % self.capacity]

    def range(self, start: int, stop: int) -> ReadResult:
        """Copy of samples ``[start, stop)``; ``lost`` counts those already overwritten."""
        first = max(start, self.oldest_index)
        res = self.since(first, max_samples=max(0, stop - first))
        return ReadResult(res.data, res.timestamps, res.start, res.next_index, res.lost + first - start)


class MarkerBuffer:
    """Append-only list of markers with absolute indices, kept to the newest ``capacity``."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._items: list = []
        self._offset = 0  # absolute index of self._items[0]
        self._lock = threading.Lock()

    @property
    def total_written(self) -> int:
        return self._offset + len(self._items)

    def extend(self, markers: list) -> None:
        """Append markers (any objects, usually :class:`~bci_dream.core.types.Marker`)."""
        if not markers:
            return
        with self._lock:
            self._items.extend(markers)
            excess = len(self._items) - self.capacity
            if excess > 0:
                del self._items[:excess]
                self._offset += excess

    def since(self, index: int) -> tuple[list, int]:
        """Markers from absolute ``index`` on, and the index to ask for next time."""
        with self._lock:
            start = max(index - self._offset, 0)
            return self._items[start:], self._offset + len(self._items)

    def between(self, t0: float, t1: float) -> list:
        """Markers with ``t0 <= timestamp < t1`` still held."""
        with self._lock:
            return [m for m in self._items if t0 <= m.timestamp < t1]
