"""Gaps: samples that never arrived, told from their timestamps (one rule for streams, windows, training, export)."""

from __future__ import annotations

import numpy as np

from bci_dream.core import defaults


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
