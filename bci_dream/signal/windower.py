"""Fixed-size windows for the encoder, cut from a ring buffer: resampled and mapped to the montage.

Every window holds exactly ``round(window_s * target_sfreq)`` samples (2 s at 256 Hz = 512) per
montage channel, and its last sample lies exactly at the last source sample used (``t_end``).

How a window is made from the source samples ``[index_end - n_read, index_end)``:

1. ``n_read`` = the fewest source samples that resample to at least T samples (``n_core``, about
   ``window_s * sfreq``), plus up to ``n_pad`` older samples, about the half length of the resampling
   filter, so that the start of the window is not affected by the filter's edge. When fewer than
   ``n_core + n_pad`` samples are held, fewer pad samples are used.
2. Non-finite values become 0; data are multiplied by ``to_microvolts``.
3. The samples are resampled backwards in time (reverse, :func:`~bci_dream.signal.resample.resample`,
   reverse), which anchors the resampled grid on the newest sample: output sample ``T - 1 - j`` lies
   ``j / target_sfreq`` seconds before ``t_end``. The newest edge, where no future samples exist, is
   extrapolated by a straight line (``padtype="line"``).
4. The last T samples are kept and mapped into the montage (missing channels zero, ``mask`` False).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bci_dream.core import defaults
from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.signal.gaps import missing_seconds
from bci_dream.signal.montage import Montage, MontageMapping
from bci_dream.signal.resample import resample, resample_ratio, resampled_length

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """One encoder input.

    Attributes:
        data: float32 [C_montage, T], µV, at ``sfreq``; rows of missing channels are zero.
        mask: bool [C_montage], True where the montage channel has data.
        t_end: LSL clock seconds of the last source sample in the window.
        sfreq: sampling rate of ``data`` in Hz.
        index_end: absolute ring-buffer index one past the last source sample.
        ch_names: montage channel names, one per row of ``data``.
        gap_s: seconds of samples that never arrived inside the window (its source samples span that much more
            than their count says; :data:`bci_dream.core.defaults.GAP_PERIODS`); 0 without a gap.
    """

    data: np.ndarray
    mask: np.ndarray
    t_end: float
    sfreq: float
    index_end: int
    ch_names: tuple[str, ...]
    gap_s: float = 0.0

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sfreq


class Windower:
    """Cuts windows from a ring buffer: newest, every hop, or at a given index.

    Args:
        buffer: ring buffer of the stream (usually the filtered one), [n, len(ch_names)].
        sfreq: sampling rate of the buffer in Hz.
        ch_names: channel names of the buffer's columns.
        window_s: window length in seconds.
        hop_s: time between windows returned by :meth:`poll`, seconds.
        target_sfreq: sampling rate of the windows in Hz.
        montage: montage to map into; :meth:`Montage.canonical` (128 channels) when None.
        to_microvolts: factor from buffer units to µV (1 when the buffer already holds µV).
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
        self.mapping: MontageMapping = self.montage.map(self.ch_names)
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
        self.n_core, self.n_pad = self._source_lengths()
        if self.n_core > buffer.capacity:
            raise ValueError(
                f"a {window_s} s window needs {self.n_core} samples but the buffer holds only {buffer.capacity}"
            )
        self._last_poll_end: int | None = None

    def _source_lengths(self) -> tuple[int, int]:
        """Source samples needed for T output samples, and extra samples for the filter edge."""
        if self.sfreq == self.target_sfreq:
            return self.n_samples, 0
        n = max(1, int(math.floor(self.n_samples * self.sfreq / self.target_sfreq)))
        while resampled_length(n, self.sfreq, self.target_sfreq) < self.n_samples:
            n += 1
        up, down = resample_ratio(self.sfreq, self.target_sfreq)
        # resample_poly's filter is 10 * max(up, down) taps long on each side at the upsampled rate.
        pad = int(math.ceil(10 * max(up, down) / up)) + 1
        return n, pad

    def latest(self) -> Window | None:
        """The newest full window, or None while fewer than a window of samples were written."""
        return self.window_at(self.buffer.total_written)

    def poll(self) -> Window | None:
        """The newest window if at least one hop of new samples arrived since the last one returned.

        Latest wins: after several hops only the newest window is returned. Returns None before the
        first full window and between hops.
        """
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
        start = max(buf.oldest_index, index_end - self.n_core - self.n_pad)
        read = buf.range(start, index_end)
        # An overrun between the check and the copy shifts the read; keep what ends at index_end.
        keep = index_end - read.start
        if keep < self.n_core or keep > len(read):
            return None
        data = read.data[:keep]
        t_end = float(read.timestamps[keep - 1])
        window = self._make_window(data, t_end, index_end)
        core = read.timestamps[keep - self.n_core:keep]
        return dataclasses.replace(window, gap_s=float(missing_seconds(core[0], core[-1], len(core), self.sfreq)))

    def _make_window(self, samples: np.ndarray, t_end: float, index_end: int) -> Window:
        """Turn source samples [n, C_src] into a :class:`Window`."""
        x = np.nan_to_num(samples.T.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if self.to_microvolts != 1.0:
            x *= np.float32(self.to_microvolts)
        if self.sfreq != self.target_sfreq:
            x = resample(x[:, ::-1], self.sfreq, self.target_sfreq, axis=-1)[:, ::-1]
        x = x[:, -self.n_samples:]
        data = self.mapping.apply(x)
        return Window(data, self.mapping.mask.copy(), t_end, self.target_sfreq, index_end, self.montage.names)
