"""Fixed-size windows for the encoder, cut from a ring buffer: resampled and mapped to the montage.

Every window holds exactly ``round(window_s * target_sfreq)`` samples (2 s at 256 Hz = 512) per
montage channel, made from the source samples before ``index_end`` (its last one stamped ``t_end``).

How a window is made when the buffer's rate is not the target rate:

1. The output samples lie on one fixed grid for the whole stream (:class:`~bci_dream.signal.grid_resampler.
   GridResampler`: output ``k`` at source position ``k * down / up``, scipy's polyphase FIR). The window's last
   sample is the newest grid point at or before source sample ``index_end - 1``, ``lag_s`` seconds before
   ``t_end`` (less than one output period).
2. Outputs whose filter has read only samples that arrived are computed once, as the samples arrive, for every
   window after (work proportional to new samples: a window read copies them). Outputs within half a filter of
   the newest sample (about 10 of them) are computed for each window, with the newest sample held beyond it.
3. Non-finite values become 0; data are multiplied by ``to_microvolts``.
4. The T samples are mapped into the montage (missing channels zero, ``mask`` False).

:func:`bci_dream.training.windows.extract_windows` makes the same windows from a whole recording.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bci_dream.core import defaults
from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.signal.gaps import missing_seconds
from bci_dream.signal.grid_resampler import GridResampler
from bci_dream.signal.montage import Montage, MontageMapping
from bci_dream.signal.resample import resampled_length

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """One encoder input.

    Attributes:
        data: float32 [C_montage, T], µV, at ``sfreq``; rows of missing channels are zero.
        mask: bool [C_montage], True where the montage channel has data.
        t_end: LSL clock seconds of the last source sample the window was made from.
        sfreq: sampling rate of ``data`` in Hz.
        index_end: absolute ring-buffer index one past the last source sample.
        ch_names: montage channel names, one per row of ``data``.
        gap_s: seconds of samples that never arrived inside the window (its source samples span that much more
            than their count says; :data:`bci_dream.core.defaults.GAP_PERIODS`); 0 without a gap.
        lag_s: seconds from the window's last sample forward to ``t_end`` (under one period of ``sfreq``; 0
            without resampling): sample ``j`` lies at ``t_end - lag_s - (T - 1 - j) / sfreq``.
    """

    data: np.ndarray
    mask: np.ndarray
    t_end: float
    sfreq: float
    index_end: int
    ch_names: tuple[str, ...]
    gap_s: float = 0.0
    lag_s: float = 0.0

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sfreq


class Windower:
    """Cuts windows from a ring buffer: newest, every hop, or at a given index.

    One reader uses a windower (its methods take a lock, so another thread may too); each reader has its own.

    Args:
        buffer: ring buffer of the stream (usually the filtered one), [n, len(ch_names)].
        sfreq: sampling rate of the buffer in Hz.
        ch_names: channel names of the buffer's columns.
        window_s: window length in seconds.
        hop_s: time between windows returned by :meth:`poll`, seconds.
        target_sfreq: sampling rate of the windows in Hz.
        montage: montage to map into; :meth:`Montage.canonical` (128 channels) when None.
        to_microvolts: factor from buffer units to µV (1 when the buffer already holds µV).
        refresh: called at the start of :meth:`latest` and :meth:`poll` to bring the buffer up to date (a live
            stream passes its source's ``drain``, so a window holds every sample that arrived by then).
    """

    def __init__(
        self,
        buffer: RingBuffer,
        sfreq: float,
        ch_names: Sequence[str],
        *,
        window_s: float = defaults.WINDOW_S,
        hop_s: float = defaults.HOP_S,
        target_sfreq: float = defaults.WINDOW_SFREQ,
        montage: Montage | None = None,
        to_microvolts: float = 1.0,
        refresh: Callable[[], object] | None = None,
    ) -> None:
        if len(ch_names) != buffer.n_channels:
            raise ValueError(f"{len(ch_names)} channel names for a buffer of {buffer.n_channels} channels")
        if not (sfreq > 0 and target_sfreq > 0 and window_s > 0 and hop_s > 0):
            raise ValueError("sfreq, target_sfreq, window_s and hop_s must be positive")
        self.buffer = buffer
        self.sfreq = float(sfreq)
        self.ch_names = tuple(ch_names)
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.target_sfreq = float(target_sfreq)
        self.montage = montage if montage is not None else Montage.canonical()
        self.to_microvolts = float(to_microvolts)
        self.refresh = refresh
        self._lock = threading.Lock()
        self._settled: SettledOutputs | None = None
        self.mapping = self.montage.map(self.ch_names)
        if self.mapping.n_mapped == 0:
            # (debug: the callers say it in one line with what to do, see acquisition.live.warn_about_unmapped)
            logger.debug("none of the channels %s is in the montage: windows will be all zero", self.ch_names)
        elif self.mapping.unmapped:
            logger.info("channels not in the montage, left out of windows: %s", self.mapping.unmapped)

        #: Samples per window at the target rate.
        self.n_samples = int(round(self.window_s * self.target_sfreq))
        if self.n_samples < 1:
            raise ValueError(f"a {window_s} s window at {target_sfreq} Hz has no samples")
        #: Source samples between windows returned by poll() (may be fractional).
        self.hop_samples = self.hop_s * self.sfreq
        #: The fixed output grid (None when the buffer already has the target rate).
        self.grid = GridResampler(self.sfreq, self.target_sfreq) if self.sfreq != self.target_sfreq else None
        #: Source samples a window spans (all of them must be held to make it).
        self.n_core = self._core_length()
        if self.n_core > buffer.capacity:
            raise ValueError(
                f"a {window_s} s window needs {self.n_core} samples but the buffer holds only {buffer.capacity}"
            )
        self._last_poll_end: int | None = None

    @property
    def mapping(self) -> MontageMapping:
        """How the buffer's channels land in the montage; windows hold only the channels it maps (settable)."""
        return self._mapping

    @mapping.setter
    def mapping(self, mapping: MontageMapping) -> None:
        order = np.argsort(mapping.target_index, kind="stable")
        with self._lock:
            self._mapping = mapping
            #: The mapped buffer columns in montage order, and their montage rows.
            self._columns = mapping.source_index[order]
            self._rows = mapping.target_index[order]
            self._all_columns = bool(np.array_equal(self._columns, np.arange(mapping.n_source)))
            self._all_rows = bool(np.array_equal(self._rows, np.arange(mapping.n_target)))
            self._settled = None  # (it holds the old mapping's channels)

    def _core_length(self) -> int:
        """The fewest source samples that resample to the window's T samples."""
        if self.grid is None:
            return self.n_samples
        n = max(1, int(math.floor(self.n_samples * self.sfreq / self.target_sfreq)))
        while resampled_length(n, self.sfreq, self.target_sfreq) < self.n_samples:
            n += 1
        return n

    def latest(self) -> Window | None:
        """The newest full window, or None while fewer than a window of samples were written."""
        if self.refresh is not None:
            self.refresh()
        return self.window_at(self.buffer.total_written)

    def poll(self) -> Window | None:
        """The newest window if at least one hop of new samples arrived since the last one returned.

        Latest wins: after several hops only the newest window is returned. Returns None before the
        first full window and between hops.
        """
        if self.refresh is not None:
            self.refresh()
        end = self.buffer.total_written
        if self._last_poll_end is not None and end - self._last_poll_end < self.hop_samples:
            return None
        window = self.window_at(end)
        if window is not None:
            self._last_poll_end = window.index_end
        return window

    def reset(self) -> None:
        """Forget the last polled window (the next :meth:`poll` returns one as soon as possible)."""
        self._last_poll_end = None

    def window_at(self, index_end: int) -> Window | None:
        """The window whose last source sample has absolute index ``index_end - 1``.

        Returns None if those samples are not written yet or were already overwritten.
        """
        index_end = int(index_end)
        buf = self.buffer
        if index_end > buf.total_written or index_end - self.n_core < buf.oldest_index:
            return None
        with self._lock:
            data = self._source_window(index_end) if self.grid is None else self._resampled_window(index_end)
        if data is None:
            return None
        ends = self.buffer.timestamps_at((index_end - self.n_core, index_end - 1))
        if ends is None:
            return None
        lag_s = self.grid.lag(index_end) / self.sfreq if self.grid is not None else 0.0
        if not self._all_rows:
            full = np.zeros((self.mapping.n_target, data.shape[1]), np.float32)
            full[self._rows] = data
            data = full
        return Window(data, self.mapping.mask.copy(), float(ends[1]), self.target_sfreq,
                      index_end, self.montage.names,
                      gap_s=float(missing_seconds(ends[0], ends[1], self.n_core, self.sfreq)), lag_s=lag_s)

    def _source_window(self, index_end: int) -> np.ndarray | None:
        """The last T source samples before ``index_end`` (same rates): float32 [mapped C, T] µV."""
        read = self.buffer.range(index_end - self.n_samples, index_end)
        if read.start != index_end - self.n_samples or len(read) != self.n_samples:
            return None  # (overwritten between the check and the copy)
        return self._microvolts(read.data).T

    def _resampled_window(self, index_end: int) -> np.ndarray | None:
        """The T grid outputs ending at the newest one before ``index_end``: float32 [mapped C, T] µV.

        One buffer read serves both: the outputs this read settles are added to the reader's ring, and the edge
        outputs (those a later sample would still change) are computed for this window alone.
        """
        grid, buf, T = self.grid, self.buffer, self.n_samples
        last = grid.last_output(index_end)
        first = last - T + 1
        if self._settled is None:
            self._settled = SettledOutputs(buf.capacity * grid.up // grid.down + T + 64, len(self._columns))
        settled = self._settled
        if settled.end < first:  # (outputs before a window's first are never read)
            settled.restart(first)
        if settled.start > first:
            return self._fresh_window(index_end, first, last)
        edge_from = grid.settled_end(index_end)
        read_from = max(buf.oldest_index, grid.first_input(min(settled.end, edge_from)))
        read = buf.range(read_from, index_end)
        if read.start != read_from or len(read) != index_end - read_from:
            return None  # (overwritten between the check and the copy)
        x = self._microvolts(read.data)
        if settled.end < edge_from:
            settled.append(grid.outputs(x, read.start, np.arange(settled.end, edge_from), read.start, index_end - 1))
        if edge_from <= first:  # (from a very low rate, every output of the window still waits on later input)
            return np.ascontiguousarray(grid.edge_outputs(x, read.start, index_end)[first - edge_from:].T)
        out = np.empty((len(self._columns), T), np.float32)
        out[:, : edge_from - first] = settled.get(first, edge_from)
        out[:, edge_from - first:] = grid.edge_outputs(x, read.start, index_end).T
        return out

    def _fresh_window(self, index_end: int, first: int, last: int) -> np.ndarray | None:
        """The window computed from the buffer alone (older than the reader's ring of settled outputs)."""
        read_from = max(self.buffer.oldest_index, self.grid.first_input(first))
        read = self.buffer.range(read_from, index_end)
        if read.start != read_from or len(read) != index_end - read_from:
            return None
        return self.grid.outputs(self._microvolts(read.data), read.start, np.arange(first, last + 1), read.start,
                                 index_end - 1).T

    def _microvolts(self, samples: np.ndarray) -> np.ndarray:
        """The mapped columns of source samples [n, C] as finite float32 µV [n, mapped C], in montage order."""
        x = samples.astype(np.float32, copy=False) if self._all_columns else samples[:, self._columns]
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        if self.to_microvolts != 1.0:
            x *= np.float32(self.to_microvolts)
        return x


class SettledOutputs:
    """A reader's ring of grid outputs that no later sample changes: float32 [C, capacity], by output index (time
    along rows, so a window's stretch of it is a contiguous copy per channel)."""

    def __init__(self, capacity: int, n_channels: int) -> None:
        self.start = self.end = 0  # the oldest output held, and one past the newest
        self._data = np.zeros((n_channels, max(1, int(capacity))), np.float32)

    def restart(self, start: int) -> None:
        """Hold nothing; the next output appended is ``start``."""
        self.start = self.end = int(start)

    def append(self, values: np.ndarray) -> None:
        """Add the outputs ``end ...`` (float32 [n, C])."""
        cap = self._data.shape[1]
        n = values.shape[0]
        if n > cap:
            values = values[-cap:]
            self.end += n - cap
            n = cap
        at = self.end % cap
        first = min(n, cap - at)
        self._data[:, at:at + first] = values[:first].T
        self._data[:, : n - first] = values[first:].T
        self.end += n
        self.start = max(self.start, self.end - cap)

    def get(self, k0: int, k1: int) -> np.ndarray:
        """Outputs ``[k0, k1)`` (must be held): float32 [C, k1 - k0]."""
        cap = self._data.shape[1]
        a, b = k0 % cap, k1 % cap
        if a < b or k1 == k0:
            return self._data[:, a:a + (k1 - k0)]
        return np.concatenate([self._data[:, a:], self._data[:, :b]], axis=1)
