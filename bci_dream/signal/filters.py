"""Causal IIR filters for streaming EEG: one SOS design, and a filter whose state survives chunking.

The design is a Butterworth band-pass (second-order sections) followed by one IIR notch at the mains
frequency. :class:`OnlineFilter` applies it chunk by chunk with the state carried across calls, so
filtering a stream in pieces of any size gives the same result as filtering it in one go.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy
from scipy import signal as sps

from bci_dream.core import defaults

logger = logging.getLogger(__name__)

#: Highest allowed high cut-off, as a fraction of the sampling rate (Nyquist is 0.5).
MAX_HIGH_CUT_FRACTION = 0.45


def design_filter(
    sfreq: float,
    bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ,
    notch: float | None = defaults.NOTCH_HZ,
    order: int = 4,
    notch_quality: float = 30.0,
) -> np.ndarray:
    """Design the online EEG filter as one array of second-order sections.

    Args:
        sfreq: sampling rate in Hz.
        bandpass: (low, high) cut-offs in Hz of a Butterworth band-pass, or None for none. A low cut
            of 0 gives a low-pass only. A high cut above ``0.45 * sfreq`` is lowered to that value
            (with a warning).
        notch: mains frequency in Hz to notch out (50 or 60), or None. Skipped (with a log message)
            when it is not below Nyquist. Harmonics are not notched.
        order: Butterworth order (a band-pass of order N has N sections).
        notch_quality: quality factor Q of the notch (bandwidth = notch / Q).

    Returns:
        float64 array [n_sections, 6] for :func:`scipy.signal.sosfilt`; [0, 6] means pass-through.

    Raises:
        ValueError: for a non-positive rate or order, or a band whose low cut is not below its high cut.
    """
    if not sfreq > 0:
        raise ValueError(f"the sampling rate must be positive, got {sfreq}")
    if order < 1:
        raise ValueError(f"the filter order must be at least 1, got {order}")
    nyquist = sfreq / 2.0
    sections: list[np.ndarray] = []
    if bandpass is not None:
        low, high = float(bandpass[0]), float(bandpass[1])
        max_high = MAX_HIGH_CUT_FRACTION * sfreq
        if high > max_high:
            logger.warning(
                "high cut-off %.3g Hz is too close to Nyquist (%.3g Hz) at %.6g Hz; using %.3g Hz",
                high, nyquist, sfreq, max_high,
            )
            high = max_high
        if low < 0 or low >= high:
            raise ValueError(f"band-pass needs 0 <= low < high, got ({low}, {high}) Hz at {sfreq} Hz")
        if low > 0:
            sections.append(sps.butter(order, [low, high], btype="bandpass", fs=sfreq, output="sos"))
        else:
            sections.append(sps.butter(order, high, btype="lowpass", fs=sfreq, output="sos"))
    if notch is not None:
        if 0 < notch < nyquist:
            b, a = sps.iirnotch(float(notch), float(notch_quality), fs=sfreq)
            sections.append(sps.tf2sos(b, a))
        else:
            logger.info("notch at %.3g Hz skipped: not between 0 and Nyquist (%.3g Hz)", notch, nyquist)
    if not sections:
        return np.zeros((0, 6), np.float64)
    return np.ascontiguousarray(np.concatenate(sections, axis=0), dtype=np.float64)


def verify_sosfilt_kernel(kernel) -> object | None:
    """``kernel`` if it filters exactly as :func:`scipy.signal.sosfilt` does, else None (said in the log).

    The compiled kernel behind ``sosfilt`` (``scipy.signal._sosfilt._sosfilt``) is private: a scipy release may
    change its arguments or layout. It is checked once, on a short 3-channel signal through a band-pass and a
    notch with a non-zero state, against the public function (output and final state); on any difference or
    error the public function is used from then on, so the acquisition thread never runs a kernel that
    filters differently.
    """
    if kernel is None:
        return None
    try:
        rng = np.random.default_rng(0)
        sos = design_filter(250.0, (1.0, 45.0), 50.0)
        data = rng.standard_normal((64, 3)) * 50 + 10_000.0
        zi = sps.sosfilt_zi(sos)[..., None] * data[0]
        want, want_zi = sps.sosfilt(sos, data, axis=0, zi=zi)
        signals = np.ascontiguousarray(data.T)
        state = np.ascontiguousarray(zi.transpose(2, 0, 1))
        kernel(np.ascontiguousarray(sos), signals, state)
        if np.allclose(signals.T, want, rtol=1e-10, atol=1e-9) and \
                np.allclose(state.transpose(1, 2, 0), want_zi, rtol=1e-10, atol=1e-9):
            return kernel
        logger.warning("scipy's internal sosfilt kernel filters differently from scipy.signal.sosfilt in this "
                       "scipy (%s); using the public function", _scipy_version())
    except Exception as e:  # noqa: BLE001 - any failure: the public function
        logger.warning("scipy's internal sosfilt kernel cannot be used with this scipy (%s: %s: %s); using "
                       "scipy.signal.sosfilt", _scipy_version(), type(e).__name__, e)
    return None


def _scipy_version() -> str:
    return scipy.__version__


try:  # private but stable since scipy 1.2; checked once against the public sosfilt, which is the fallback
    from scipy.signal._sosfilt import _sosfilt as _private_kernel
except ImportError:  # pragma: no cover - a scipy without it
    _private_kernel = None
_sosfilt_kernel = verify_sosfilt_kernel(_private_kernel)


class OnlineFilter:
    """Causal SOS filter for a multichannel stream, with its state carried across chunks.

    The state ``zi`` has shape [n_sections, 2, n_channels]. It is initialised from the first sample
    seen to the steady state for that sample (``sosfilt_zi(sos)[..., None] * x[0]``), so a large DC
    offset (tens of mV on OpenBCI or Muse) does not make the filter ring at start-up.

    Non-finite input (NaN, ±inf) is replaced by the channel's last finite value (0 before any) before
    filtering, so one bad sample never poisons the state; the number replaced in the latest call is
    in :attr:`last_nonfinite`. Arithmetic is float64 internally; output is float32.

    Args:
        sos: second-order sections [n_sections, 6], e.g. from :func:`design_filter`; zero sections
            means pass-through (non-finite values are still replaced).
        n_channels: channels of every chunk.
    """

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        sos = np.asarray(sos, dtype=np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise ValueError(f"sos must have shape [n_sections, 6], got {sos.shape}")
        if n_channels < 1:
            raise ValueError(f"n_channels must be positive, got {n_channels}")
        self.sos = np.ascontiguousarray(sos)
        self.n_channels = int(n_channels)
        self.last_nonfinite = 0
        self._zi_unit = sps.sosfilt_zi(self.sos) if len(self.sos) else np.zeros((0, 2))
        self.zi: np.ndarray | None = None
        self._last_finite = np.zeros(self.n_channels, np.float64)

    @classmethod
    def none(cls, n_channels: int) -> OnlineFilter:
        """A pass-through filter (it still replaces non-finite values)."""
        return cls(np.zeros((0, 6)), n_channels)

    @classmethod
    def design(cls, sfreq: float, n_channels: int, **kwargs) -> OnlineFilter:
        """Shortcut for ``OnlineFilter(design_filter(sfreq, **kwargs), n_channels)``."""
        return cls(design_filter(sfreq, **kwargs), n_channels)

    @property
    def n_sections(self) -> int:
        return int(self.sos.shape[0])

    @property
    def is_passthrough(self) -> bool:
        return self.n_sections == 0

    def reset(self) -> None:
        """Forget the state: the next sample seen initialises it again."""
        self.zi = None
        self._last_finite = np.zeros(self.n_channels, np.float64)
        self.last_nonfinite = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter one chunk.

        Args:
            x: [n, n_channels] samples (any real dtype, usually float32), in the stream's units.

        Returns:
            float32 [n, n_channels], filtered, in the same units.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"expected a chunk of shape [n, {self.n_channels}], got {x.shape}")
        self.last_nonfinite = 0
        if x.shape[0] == 0:
            return np.empty((0, self.n_channels), np.float32)
        with np.errstate(invalid="ignore", over="ignore"):  # (values no float holds become inf: replaced below)
            data = np.array(x, dtype=np.float64)  # always a copy: repaired in place below
        self._replace_nonfinite(data)
        if self.is_passthrough:
            return data.astype(np.float32)
        if self.zi is None:
            self.zi = self._zi_unit[..., None] * data[0]
        global _sosfilt_kernel
        if _sosfilt_kernel is not None:
            # The compiled kernel behind sps.sosfilt, called on the [channels, samples] layout it works in:
            # sosfilt's argument checks cost ~35 µs a call, more than the filtering of a 20 ms chunk.
            signals = np.ascontiguousarray(data.T)
            state = np.ascontiguousarray(self.zi.transpose(2, 0, 1))  # [channels, sections, 2]
            try:
                _sosfilt_kernel(self.sos, signals, state)
            except Exception as e:  # noqa: BLE001 - the state is untouched on failure: filter with the public one
                logger.warning("scipy's internal sosfilt kernel failed (%s: %s); using scipy.signal.sosfilt",
                               type(e).__name__, e)
                _sosfilt_kernel = None
            else:
                self.zi = state.transpose(1, 2, 0)
                return signals.T.astype(np.float32)
        out, self.zi = sps.sosfilt(self.sos, data, axis=0, zi=self.zi)
        return out.astype(np.float32)

    def _replace_nonfinite(self, data: np.ndarray) -> None:
        """Forward-fill non-finite values of ``data`` [n, C] in place from the last finite value."""
        finite = np.isfinite(data)
        if finite.all():
            self._last_finite = data[-1].copy()
            return
        self.last_nonfinite = int(data.size - np.count_nonzero(finite))
        n = data.shape[0]
        rows = np.where(finite, np.arange(n)[:, None], -1)
        np.maximum.accumulate(rows, axis=0, out=rows)
        cols = np.broadcast_to(np.arange(self.n_channels), data.shape)
        filled = np.where(rows >= 0, data[np.maximum(rows, 0), cols], self._last_finite)
        data[...] = filled
        self._last_finite = data[-1].copy()
        logger.debug("replaced %d non-finite values", self.last_nonfinite)
