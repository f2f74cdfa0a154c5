"""Power spectra of the recent signal for the app's spectrum view: Welch's method and the mains peak."""

from __future__ import annotations

import numpy as np
import scipy.signal as sps

#: Line frequencies (Hz) looked for in a spectrum.
MAINS_HZ = (50.0, 60.0)


def welch_psd(data_uv: np.ndarray, sfreq: float, fmin: float = 1.0, fmax: float = 60.0,
              segment_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Power spectral density of each channel by Welch's method (Hann segments of ``segment_s``, half overlap,
    each segment's mean removed).

    Args:
        data_uv: [n, channels] in µV; non-finite values count as 0.
        sfreq: sampling rate in Hz.
        fmin, fmax: the frequencies kept (Hz; ``fmax`` at most Nyquist).

    Returns:
        ``(freqs, psd)``: float64 [F] in Hz and float64 [channels, F] in µV²/Hz.
    """
    x = np.nan_to_num(np.asarray(data_uv, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    nperseg = min(x.shape[0], max(8, int(round(segment_s * sfreq))))  # (a stream of a few Hz: all it holds)
    freqs, psd = sps.welch(x, fs=sfreq, nperseg=nperseg, axis=0)
    keep = (freqs >= fmin) & (freqs <= min(fmax, sfreq / 2))
    return freqs[keep], psd[keep].T


def mains_peak(freqs: np.ndarray, psd: np.ndarray, min_ratio: float = 3.0) -> float | None:
    """The line frequency (50 or 60 Hz) whose power, in the channels' median spectrum, stands ``min_ratio`` times
    above the median of the 5 Hz around it; None when neither does (or both are out of range)."""
    if psd.size == 0:
        return None
    spectrum = np.median(psd, axis=0)
    best, best_ratio = None, min_ratio
    for hz in MAINS_HZ:
        at = np.abs(freqs - hz) <= 1.0
        around = (np.abs(freqs - hz) > 1.5) & (np.abs(freqs - hz) <= 5.0)
        if not at.any() or not around.any():
            continue
        ratio = spectrum[at].max() / max(np.median(spectrum[around]), 1e-30)
        if ratio >= best_ratio:
            best, best_ratio = hz, ratio
    return best


def band_peak(freqs: np.ndarray, psd: np.ndarray, band: tuple[float, float] = (8.0, 12.0),
              flanks: tuple[tuple[float, float], tuple[float, float]] = ((5.0, 7.0), (14.0, 18.0))) -> np.ndarray:
    """How far each channel's mean power in ``band`` stands above the line between its two ``flanks``, in log10
    units (0.3: twice the power; the alpha peak of eyes closed by default). float64 [channels]."""
    def mean_log(lo: float, hi: float) -> np.ndarray:
        sel = (freqs >= lo) & (freqs <= hi)
        return np.log10(np.maximum(psd[:, sel].mean(axis=1), 1e-30))

    return mean_log(*band) - 0.5 * (mean_log(*flanks[0]) + mean_log(*flanks[1]))


def segment_samples(segment_s: float, sfreq: float) -> int:
    """Samples in one spectrogram segment of ``segment_s`` seconds at ``sfreq`` Hz (at least 8)."""
    return max(8, int(round(segment_s * sfreq)))


def spectrogram_columns(data_uv: np.ndarray, sfreq: float, ends: np.ndarray, segment_s: float = 1.0,
                        fmin: float = 1.0, fmax: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of the ``segment_s`` seconds before each of ``ends``: the columns of a scrolling spectrogram.

    Args:
        data_uv: [n] in µV, one channel, or [n, channels]: their power is averaged; non-finite values count as 0.
        sfreq: sampling rate in Hz.
        ends: int [K], indices into ``data_uv`` one past each segment's last sample (each at least
            :func:`segment_samples` in).
        fmin, fmax: the frequencies kept (Hz).

    Returns:
        ``(freqs, power)``: float64 [F] in Hz and float64 [K, F] in µV²/Hz (Hann window, each segment's mean
        removed; the one-sided density Welch's method averages).
    """
    x = np.nan_to_num(np.asarray(data_uv, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    x = x[:, None] if x.ndim == 1 else x
    n = segment_samples(segment_s, sfreq)
    ends = np.asarray(ends, np.int64)
    segments = x[ends[:, None] - n + np.arange(n)]  # [K, n, channels]
    segments -= segments.mean(axis=1, keepdims=True)
    window = sps.get_window("hann", n)
    spectrum = np.fft.rfft(segments * window[:, None], axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).mean(axis=2) / (sfreq * float((window ** 2).sum()))
    power[:, 1:-1 if n % 2 == 0 else None] *= 2  # (one-sided: the negative frequencies' share)
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    keep = (freqs >= fmin) & (freqs <= min(fmax, sfreq / 2))
    return freqs[keep], power[:, keep]
