"""Polyphase resampling between sampling rates (e.g. a headset's 250 Hz to the encoder's 256 Hz)."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps

logger = logging.getLogger(__name__)

#: Largest denominator of the up/down ratio; rates whose ratio needs more are approximated.
MAX_DENOMINATOR = 1000


def resample_ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    """``(up, down)`` with ``up / down`` ≈ ``sfreq_out / sfreq_in`` and ``down`` <= 1000."""
    if not (sfreq_in > 0 and sfreq_out > 0):
        raise ValueError(f"sampling rates must be positive, got {sfreq_in} and {sfreq_out}")
    ratio = Fraction(sfreq_out / sfreq_in).limit_denominator(MAX_DENOMINATOR)
    if ratio == 0:
        raise ValueError(f"cannot resample from {sfreq_in} Hz down to {sfreq_out} Hz")
    return ratio.numerator, ratio.denominator


def resampled_length(n: int, sfreq_in: float, sfreq_out: float) -> int:
    """Samples that :func:`resample` returns for ``n`` input samples (``ceil(n * up / down)``)."""
    if sfreq_in == sfreq_out:
        return int(n)
    up, down = resample_ratio(sfreq_in, sfreq_out)
    return int(math.ceil(int(n) * up / down))


def resample(
    x: np.ndarray, sfreq_in: float, sfreq_out: float, axis: int = -1, padtype: str = "line"
) -> np.ndarray:
    """Resample ``x`` along ``axis`` from ``sfreq_in`` to ``sfreq_out`` Hz.

    Uses :func:`scipy.signal.resample_poly` (anti-aliasing FIR, Kaiser window) with ``up/down`` from
    ``Fraction(sfreq_out / sfreq_in).limit_denominator(1000)``. Output sample ``k`` lies at time
    ``k / sfreq_out`` after input sample 0. ``padtype`` says what is assumed beyond both ends
    (default ``"line"``: a straight line through the data, which keeps the edges free of the step
    that zero padding would cause).

    Args:
        x: array with time along ``axis``, any float dtype.
        sfreq_in: rate of ``x`` in Hz.
        sfreq_out: wanted rate in Hz.

    Returns:
        ``x`` itself when the rates are equal, else a new array with :func:`resampled_length`
        samples along ``axis`` (float32 for float32 input, float64 otherwise).
    """
    if sfreq_in == sfreq_out:
        return x
    up, down = resample_ratio(sfreq_in, sfreq_out)
    if abs(up / down - sfreq_out / sfreq_in) > 1e-9 * (sfreq_out / sfreq_in):
        logger.debug("resampling %.6g -> %.6g Hz approximated as %d/%d", sfreq_in, sfreq_out, up, down)
    if up == down:
        return x
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return sps.resample_poly(x, up, down, axis=axis, padtype=padtype, window=_filter(up, down, np.dtype(dtype)))


@lru_cache(maxsize=16)
def _filter(up: int, down: int, dtype: np.dtype) -> np.ndarray:
    """The anti-aliasing FIR :func:`scipy.signal.resample_poly` designs for ``up/down`` (Kaiser, beta 5, 10 zero
    crossings each side), designed once: a window read every hop would otherwise spend half its time on it.
    (resample_poly copies the coefficients it is given, so the cached array is never changed.)"""
    max_rate = max(up, down)
    return sps.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(dtype)
