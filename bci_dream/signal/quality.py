"""Per-channel signal quality for the live display and the calibration wizard.

:func:`assess_quality` looks at the last second or so of each channel and gives it one status:

- ``"railed"``: the amplifier saturates (electrode off, or a huge offset).
- ``"flat"``: no signal at all (channel off, shorted, or not connected).
- ``"line_noise"``: mains hum dominates (poor contact, so high impedance, or a cable near mains).
- ``"high_amplitude"``: the filtered signal is far larger than EEG (movement, loose electrode, EMG).
- ``"good"``: none of the above.

The checks run in that order and the first that fires wins. When the headset's rail is unknown, the
flat check runs before the railed one (a constant signal then counts as flat, not railed).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import signal as sps

from bci_dream.core import defaults

logger = logging.getLogger(__name__)

STATUSES = ("good", "flat", "railed", "line_noise", "high_amplitude")

ADVICE = {
    "good": "",
    "flat": "No signal: check that the electrode touches the skin and its lead is plugged in.",
    "railed": "The amplifier is saturated: re-seat the electrode, check the reference and ground clips.",
    "line_noise": "Mains hum: press the electrode to the skin (add gel or saline), keep away from power cables.",
    "high_amplitude": "Too large for EEG: sit still, relax the jaw and face, and check the electrode is not loose.",
}


@dataclass(frozen=True)
class QualityThresholds:
    """Limits of :func:`assess_quality` (microvolts unless said otherwise).

    Attributes:
        flat_std_uv: a channel is flat if the std of its raw signal is below this (default 0.5 µV).
        rail_fraction: a channel is railed if more than this fraction of samples (default 10%) sit at
            the rail: ``|raw| >= rail_margin * rail`` when the rail is known, otherwise equal to the
            channel's own maximum or minimum (a saturated ADC repeats one extreme value).
        rail_margin: fraction of the rail that counts as "at the rail" (default 0.95).
        line_noise_ratio: a channel has line noise if the mean power density in
            ``line_freq ± line_halfwidth_hz`` of the raw signal is more than this many times its mean
            power density in ``band_hz`` (default 10). EEG falls with frequency, so a clean channel
            scores well below 1 at 50/60 Hz; 10x corresponds to a mains sine of about 12 µV amplitude
            on 10 µV-rms EEG over one second.
        line_halfwidth_hz: half width of the mains band (default 1 Hz).
        band_hz: reference band of the line-noise ratio (default 2 to 40 Hz).
        high_std_uv: a channel has too high an amplitude if the std of its filtered signal is above
            this (default 100 µV).
    """

    flat_std_uv: float = 0.5
    rail_fraction: float = 0.10
    rail_margin: float = 0.95
    line_noise_ratio: float = 10.0
    line_halfwidth_hz: float = 1.0
    band_hz: tuple[float, float] = (2.0, 40.0)
    high_std_uv: float = 100.0


@dataclass(frozen=True)
class ChannelQuality:
    """Quality of one channel.

    Attributes:
        name: channel name.
        status: one of ``"good"``, ``"flat"``, ``"railed"``, ``"line_noise"``, ``"high_amplitude"``.
        std_uv: standard deviation of the filtered signal, µV.
        peak_to_peak_uv: peak-to-peak of the filtered signal, µV.
        line_noise_ratio: mains-band power density over 2-40 Hz power density of the raw signal
            (NaN when the mains frequency is not below Nyquist or the channel is flat).
        railed_fraction: fraction of raw samples at the rail (see :class:`QualityThresholds`).
        raw_std_uv: standard deviation of the raw signal, µV.
    """

    name: str
    status: str
    std_uv: float
    peak_to_peak_uv: float
    line_noise_ratio: float
    railed_fraction: float
    raw_std_uv: float = float("nan")

    @property
    def ok(self) -> bool:
        """True when the channel is good enough to use."""
        return self.status == "good"

    @property
    def advice(self) -> str:
        """One short sentence on what to fix ("" when the channel is good)."""
        return ADVICE[self.status]


@functools.lru_cache(maxsize=8)
def _periodogram_setup(n: int, sfreq: float) -> tuple[np.ndarray, float, np.ndarray]:
    window = sps.get_window("hann", n)
    return np.fft.rfftfreq(n, 1.0 / sfreq), 1.0 / (sfreq * float((window ** 2).sum())), window


def line_noise_ratio(
    raw_uv: np.ndarray,
    sfreq: float,
    line_freq: float = defaults.NOTCH_HZ,
    halfwidth_hz: float = 1.0,
    band_hz: tuple[float, float] = (2.0, 40.0),
) -> np.ndarray:
    """Mean power density around the mains frequency over mean power density in ``band_hz``.

    Uses a Hann-windowed periodogram of the linearly detrended signal (fine for 1 s windows).

    Args:
        raw_uv: [n, channels] in µV (non-finite values must have been removed).
        sfreq: sampling rate in Hz.

    Returns:
        float64 [channels]; NaN where the mains band is not below Nyquist or the band power is 0.
    """
    n_ch = raw_uv.shape[1]
    nyquist = sfreq / 2.0
    if raw_uv.shape[0] < 8 or line_freq + halfwidth_hz > nyquist:
        return np.full(n_ch, np.nan)
    n = raw_uv.shape[0]
    freqs, scale, window = _periodogram_setup(n, sfreq)
    # linear detrend in closed form (scipy's detrend solves a least-squares problem: 10x slower)
    t = (np.arange(n) - (n - 1) / 2.0).astype(raw_uv.dtype)
    slope = (t @ raw_uv) / float(t @ t)
    x = raw_uv - raw_uv.mean(axis=0)
    x -= t[:, None] * slope
    x *= window.astype(raw_uv.dtype)[:, None]
    spectrum = scipy.fft.rfft(x, axis=0)  # (numpy's would compute float32 input in float64: 7x slower here)
    psd = (spectrum.real ** 2 + spectrum.imag ** 2) * scale  # one-sided; the constant does not matter for the ratio
    in_line = np.abs(freqs - line_freq) <= halfwidth_hz
    in_band = (freqs >= band_hz[0]) & (freqs <= min(band_hz[1], nyquist))
    if not in_line.any() or not in_band.any():
        return np.full(n_ch, np.nan)
    line = psd[in_line].mean(axis=0)
    band = psd[in_band].mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(band > 0, line / band, np.nan)


def assess_quality(
    raw_uv: np.ndarray,
    filtered_uv: np.ndarray,
    sfreq: float,
    ch_names: Sequence[str],
    line_freq: float = defaults.NOTCH_HZ,
    rail_uv: float | None = None,
    thresholds: QualityThresholds | None = None,
) -> list[ChannelQuality]:
    """Classify every channel as good, flat, railed, line_noise or high_amplitude.

    Args:
        raw_uv: [n, channels] unfiltered samples in µV, usually the last second.
        filtered_uv: [m, channels] the same channels after the online filter, in µV (usually the
            same span as ``raw_uv``).
        sfreq: sampling rate in Hz.
        ch_names: one name per channel.
        line_freq: mains frequency in Hz (50 or 60).
        rail_uv: the amplifier's full-scale value in µV (e.g. 187500 for an OpenBCI Cyton at gain
            24), or None when unknown.
        thresholds: limits; :class:`QualityThresholds` defaults when None.

    Returns:
        One :class:`ChannelQuality` per channel, in channel order.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # (garbage values of a damaged file: inf/NaN statistics)
        return _assess_quality(raw_uv, filtered_uv, sfreq, ch_names, line_freq, rail_uv, thresholds)


def _assess_quality(raw_uv, filtered_uv, sfreq, ch_names, line_freq, rail_uv, thresholds) -> list[ChannelQuality]:
    th = thresholds or QualityThresholds()
    # float32 input (what the ring buffers hold) is kept in float32: half the memory traffic, and
    # single precision is ample for these statistics
    dtype = np.float32 if np.asarray(raw_uv).dtype == np.float32 else np.float64
    raw = np.asarray(raw_uv, dtype=dtype)
    filt = np.asarray(filtered_uv, dtype=dtype)
    if raw.ndim != 2 or filt.ndim != 2:
        raise ValueError(f"raw and filtered data must be [n, channels], got {raw.shape} and {filt.shape}")
    n_ch = raw.shape[1]
    if filt.shape[1] != n_ch or len(ch_names) != n_ch:
        raise ValueError(
            f"{n_ch} raw channels, {filt.shape[1]} filtered channels and {len(ch_names)} names must agree"
        )
    raw_finite = np.isfinite(raw)
    all_finite = bool(raw_finite.all()) and bool(np.isfinite(filt).all())
    if all_finite:
        raw_std, raw_mean = raw.std(axis=0), raw.mean(axis=0)
        std_uv, ptp_uv = filt.std(axis=0), np.ptp(filt, axis=0)
        railed = _railed_fractions(raw, rail_uv, th.rail_margin)
        counts = np.full(n_ch, raw.shape[0])
    else:  # rare: leave non-finite samples out channel by channel
        raw_std, raw_mean, std_uv, ptp_uv, railed = (np.full(n_ch, np.nan) for _ in range(5))
        counts = raw_finite.sum(axis=0)
        for c in range(n_ch):
            x = raw[raw_finite[:, c], c]
            y = filt[np.isfinite(filt[:, c]), c]
            if x.size:
                raw_std[c], raw_mean[c] = x.std(), x.mean()
                railed[c] = _railed_fractions(x[:, None], rail_uv, th.rail_margin)[0]
            if y.size:
                std_uv[c], ptp_uv[c] = y.std(), np.ptp(y)
        raw_mean = np.nan_to_num(raw_mean)
        railed = np.nan_to_num(railed)
    # For the spectrum, non-finite samples are set to the channel mean.
    ratios = line_noise_ratio(
        raw if all_finite else np.where(raw_finite, raw, raw_mean), sfreq, line_freq,
        th.line_halfwidth_hz, th.band_hz)

    results = []
    for c, name in enumerate(ch_names):
        flat = counts[c] < 2 or not raw_std[c] >= th.flat_std_uv
        ratio = float("nan") if flat else float(ratios[c])
        if rail_uv is not None and railed[c] > th.rail_fraction:
            status = "railed"
        elif flat:
            status = "flat"
        elif railed[c] > th.rail_fraction:
            status = "railed"
        elif ratio > th.line_noise_ratio:
            status = "line_noise"
        elif std_uv[c] > th.high_std_uv:
            status = "high_amplitude"
        else:
            status = "good"
        results.append(ChannelQuality(str(name), status, float(std_uv[c]), float(ptp_uv[c]), ratio,
                                      float(railed[c]), float(raw_std[c])))
    return results


def _railed_fractions(x: np.ndarray, rail_uv: float | None, margin: float) -> np.ndarray:
    """Fraction of raw samples of each channel of ``x`` [n, C] at the rail (see :class:`QualityThresholds`)."""
    if x.shape[0] == 0:
        return np.zeros(x.shape[1])
    if rail_uv is not None:
        return np.count_nonzero(np.abs(x) >= margin * abs(rail_uv), axis=0) / x.shape[0]
    at_max = np.count_nonzero(x == x.max(axis=0), axis=0)
    at_min = np.count_nonzero(x == x.min(axis=0), axis=0)
    return np.maximum(at_max, at_min) / x.shape[0]
