"""Polyphase resampling onto a fixed output grid, any output sample at a time.

Output sample ``k`` (any integer) lies at input position ``k * down / up``, counted in samples from the stream's
first sample (index 0); ``up / down`` is :func:`~bci_dream.signal.resample.resample_ratio`'s. Its value is
scipy's :func:`~scipy.signal.resample_poly` sum over the same anti-aliasing FIR (Kaiser, beta 5, 10 zero crossings
each side, designed once per rate pair)::

    y[k] = up * sum_n x[n] * h[k * down - n * up + half]        (|k * down - n * up| <= half, half = 10 * max(up, down))

so away from the ends it equals ``resample_poly(x, up, down)[k]`` (tests check it). Because the grid never moves,
an output whose inputs have all arrived never changes: a live reader computes each output once, as its inputs
arrive (work proportional to new samples), and only the few outputs within half a filter of the newest sample
are recomputed per read. Inputs that do not exist are assumed: before the first one held, its value; after the
newest, the newest value (the edge is held, where scipy's ``padtype="line"`` continues the line through the first
and last samples: the same to within the line's slope over half a filter, a few tens of milliseconds).
"""

from __future__ import annotations

import numpy as np

from bci_dream.signal.resample import _filter, resample_ratio

#: Outputs × taps × channels gathered at once (bounds the temporary memory to 16 MB of float32).
_BLOCK_VALUES = 1 << 22
#: Consecutive outputs computed as one banded matrix product.
_BAND_OUTPUTS = 128
#: Runs of consecutive outputs up to this long keep their banded weights for the next run of the same phase.
_CACHED_BAND_OUTPUTS = 32


class GridResampler:
    """Resampling from ``sfreq_in`` to ``sfreq_out`` Hz on the grid ``k * down / up`` (see the module docstring).

    Attributes:
        up, down: the rate ratio ``sfreq_out / sfreq_in ≈ up / down``.
        half: half length of the FIR at the upsampled rate (taps).
        taps: inputs each output reads (some weights zero).
    """

    def __init__(self, sfreq_in: float, sfreq_out: float) -> None:
        self.sfreq_in = float(sfreq_in)
        self.sfreq_out = float(sfreq_out)
        self.up, self.down = resample_ratio(sfreq_in, sfreq_out)
        up, down = self.up, self.down
        self.half = 10 * max(up, down)
        h = _filter(up, down, np.dtype(np.float64)) * up
        self.taps = 2 * self.half // up + 2
        phase = np.arange(up, dtype=np.int64)
        #: First input of output ``k = phase`` (``k`` in ``[0, up)``): ``ceil((k * down - half) / up)``.
        self._first = -((self.half - phase * down) // up)
        m = phase[:, None] * down - (self._first[:, None] + np.arange(self.taps)) * up
        inside = np.abs(m) <= self.half
        #: float32 [up, taps]: the weights of the inputs ``first(k) + i`` for output ``k`` of each phase ``k % up``.
        self._weights = np.where(inside, h[np.clip(m + self.half, 0, 2 * self.half)], 0.0).astype(np.float32)
        #: index_end % down -> (weights [M, span] of the edge outputs, their first input - index_end).
        self._edges: dict[int, tuple[np.ndarray, int]] = {}
        #: (k0 % up, outputs) -> weights of a short run of consecutive outputs (see :meth:`_band`).
        self._bands: dict[tuple[int, int], np.ndarray] = {}

    # -- the grid -----------------------------------------------------------------------------------

    def first_input(self, k: np.ndarray | int) -> np.ndarray | int:
        """Index of the first input output ``k`` reads (int or int64 array)."""
        k = np.asarray(k, dtype=np.int64)
        first = (k // self.up) * self.down + self._first[k % self.up]
        return int(first) if first.ndim == 0 else first

    def last_output(self, index_end: int) -> int:
        """The newest output at or before input ``index_end - 1``."""
        return (int(index_end) - 1) * self.up // self.down

    def settled_end(self, index_end: int) -> int:
        """One past the newest output that reads no input at or after ``index_end`` (it never changes again)."""
        return -((self.half - int(index_end) * self.up) // self.down)

    def lag(self, index_end: int) -> float:
        """Input samples from :meth:`last_output` forward to input ``index_end - 1``: in ``[0, 1)`` output periods."""
        index_end = int(index_end)
        return ((index_end - 1) * self.up - self.last_output(index_end) * self.down) / self.up

    # -- outputs --------------------------------------------------------------------------------------

    def outputs(self, x: np.ndarray, x_start: int, k: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """The outputs ``k`` from inputs ``x``.

        Args:
            x: float32 [n, C], inputs ``x_start`` to ``x_start + n - 1``; must hold ``[lo, hi]`` where outputs
                read them.
            x_start: index of ``x[0]``.
            k: int64 [M], output indices.
            lo: first input that exists; inputs before it are taken to equal it.
            hi: the newest input that exists; later inputs are taken to equal it.

        Returns:
            float32 [M, C].
        """
        k = np.asarray(k, dtype=np.int64)
        if k.size and k[-1] - k[0] == k.size - 1:  # (consecutive outputs)
            return self._consecutive(x, x_start, int(k[0]), int(k[-1]) + 1, lo, int(hi))
        n_ch = x.shape[1]
        out = np.empty((k.shape[0], n_ch), np.float32)
        block = max(1, _BLOCK_VALUES // max(1, self.taps * n_ch))
        span = np.arange(self.taps, dtype=np.int64)
        for b in range(0, k.shape[0], block):
            kb = k[b:b + block]
            idx = self.first_input(kb)[:, None] + span
            np.clip(idx, lo, hi, out=idx)
            idx -= x_start
            gathered = x[idx]  # [B, taps, C]
            weights = self._weights[kb % self.up][:, None, :]  # [B, 1, taps]
            out[b:b + block] = np.matmul(weights, gathered)[:, 0, :]
        return out

    def _consecutive(self, x: np.ndarray, x_start: int, k0: int, k1: int, lo: int, hi: int) -> np.ndarray:
        """Outputs ``[k0, k1)`` as banded matrices times the inputs they span, a block of outputs at a time (reads
        each input once per block: a live read's dozen outputs touch a few kB, not a gathered copy per output)."""
        out = np.empty((k1 - k0, x.shape[1]), np.float32)
        for b0 in range(k0, k1, _BAND_OUTPUTS):
            b1 = min(k1, b0 + _BAND_OUTPUTS)
            band, start = self._band(b0, b1)
            width = band.shape[1]
            if start >= lo and start + width - 1 <= hi:
                inputs = x[start - x_start:start - x_start + width]
            else:
                inputs = x[np.clip(np.arange(start, start + width), lo, hi) - x_start]
            out[b0 - k0:b1 - k0] = band @ inputs
        return out

    def _band(self, k0: int, k1: int) -> tuple[np.ndarray, int]:
        """float32 [k1 - k0, span]: the weights of outputs ``[k0, k1)`` over the ``span`` inputs from ``start``
        that they read, and ``start``."""
        key = (k0 % self.up, k1 - k0)
        start = self.first_input(k0)
        band = self._bands.get(key)
        if band is not None:
            return band, start
        k = np.arange(k0, k1, dtype=np.int64)
        first = self.first_input(k)
        band = np.zeros((k.size, int(first[-1]) - start + self.taps), np.float32)
        cols = (first - start)[:, None] + np.arange(self.taps)
        band[np.arange(k.size)[:, None], cols] = self._weights[k % self.up]
        if k.size <= _CACHED_BAND_OUTPUTS and len(self._bands) < 4096:  # (a live read's few: the same ones again)
            self._bands[key] = band
        return band, start

    def edge_outputs(self, x: np.ndarray, x_start: int, index_end: int) -> np.ndarray:
        """The outputs ``[settled_end(index_end), last_output(index_end)]`` from the inputs before ``index_end``, the
        newest held beyond it: what :meth:`outputs` gives them with ``hi = index_end - 1``, with the weights laid
        out once per ``index_end % down``.

        Args:
            x: float32 [n, C], inputs ``x_start`` to ``index_end - 1``; inputs before ``x_start`` are taken to
                equal ``x[0]``.

        Returns:
            float32 [M, C] (M about ``half / down``, e.g. 10 or 11 for 250 -> 256 Hz).
        """
        index_end = int(index_end)
        pattern = self._edges.get(index_end % self.down)
        if pattern is None:
            band, start = self._band(self.settled_end(index_end), self.last_output(index_end) + 1)
            # Inputs from index_end on are the newest one: fold their weights into its column (of a copy: the
            # band may be cached for consecutive outputs).
            own = index_end - start
            band = band.copy()
            if band.shape[1] > own:
                band[:, own - 1] += band[:, own:].sum(axis=1)
                band = np.ascontiguousarray(band[:, :own])
            pattern = self._edges[index_end % self.down] = (band, start - index_end)
        band, offset = pattern
        first = index_end + offset - x_start
        if first >= 0:
            return band @ x[first:first + band.shape[1]]
        rows = np.maximum(np.arange(first, first + band.shape[1]), 0)
        return band @ x[rows]
