"""Gaps: samples that never arrived, told from their timestamps (one rule for streams, windows, training, export)."""

from __future__ import annotations

import numpy as np

from bci_dream.core import defaults

#: pyxdf's own segment breaks (its defaults): a step longer than this, or than this many periods, either way.
PYXDF_BREAK_S, PYXDF_BREAK_PERIODS = 1.0, 500


def gap_threshold_s(sfreq: float) -> float:
    """Seconds beyond which a step between samples, or a span's excess over its sample count, is a gap: more than
    :data:`~bci_dream.core.defaults.GAP_PERIODS` sample periods and :data:`~bci_dream.core.defaults.GAP_MIN_S`."""
    return max(defaults.GAP_PERIODS / sfreq, defaults.GAP_MIN_S)


def missing_seconds(t_first, t_last, n_samples: int, sfreq: float):
    """Seconds that ``n_samples`` samples stamped from ``t_first`` to ``t_last`` span beyond what their count
    accounts for, where that is a gap (else 0). Scalars or arrays of spans alike.

    By span rather than by single steps: timestamps given on arrival come in bursts, whose long steps the short
    ones after them make up for.
    """
    excess = np.asarray(t_last, np.float64) - np.asarray(t_first, np.float64) - (n_samples - 1) / sfreq
    return np.where(excess > gap_threshold_s(sfreq), excess, 0.0)


def gap_starts(times: np.ndarray, sfreq: float) -> np.ndarray:
    """Indices ``i`` [k] such that samples never arrived between sample ``i`` and ``i + 1``.

    A step longer than a period by more than :func:`gap_threshold_s` is a gap only when the next second of samples
    does not make it up: timestamps given on arrival come in bursts, and a burst late by 150 ms is followed by
    samples a microsecond apart. The floor of ``t - k / sfreq`` (the least arrival delay) tells them apart: a gap
    raises it for good, a late burst does not.

    Args:
        times: float64 [n] timestamps in seconds, in sample order.
        sfreq: the nominal rate in Hz.
    """
    t = np.asarray(times, np.float64)
    if t.size < 2 or not sfreq > 0:
        return np.zeros(0, np.int64)
    threshold = gap_threshold_s(sfreq)
    candidates = np.flatnonzero(np.diff(t) - 1.0 / sfreq > threshold)
    if not candidates.size:
        return candidates.astype(np.int64)
    delay = t - np.arange(t.size) / sfreq
    second = max(1, int(round(sfreq)))
    starts = [i for i in candidates
              if delay[i + 1:i + 1 + second].min() - delay[max(0, i + 1 - second):i + 1].min() > threshold]
    return np.asarray(starts, np.int64)


def dejitter(times: np.ndarray, sfreq: float) -> np.ndarray:
    """Timestamps of a regular-rate stream smoothed as pyxdf does (a least-squares line per segment, segments broken
    where a step is over 1 s or 500 periods either way), with segments broken at the :func:`gap_starts` too, so that
    a short gap stays where it was instead of being spread over the samples around it.

    Args:
        times: float64 [n] timestamps in seconds, in sample order.
        sfreq: the nominal rate in Hz.

    Returns:
        float64 [n]; a segment of one sample keeps its stamp.
    """
    t = np.asarray(times, np.float64)
    out = t.copy()
    if t.size < 2 or not sfreq > 0:
        return out
    breaks = np.flatnonzero(np.abs(np.diff(t)) > max(PYXDF_BREAK_S, PYXDF_BREAK_PERIODS / sfreq))
    ends = np.union1d(breaks, gap_starts(t, sfreq)) + 1
    bounds = np.concatenate([[0], ends, [t.size]]).astype(np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a >= 2:
            k = np.arange(a, b, dtype=np.float64)
            design = np.stack([np.ones_like(k), k], axis=1)
            intercept, slope = np.linalg.lstsq(design, t[a:b], rcond=None)[0]
            out[a:b] = intercept + slope * k
    return out
