"""Brain-state features of one window of filtered EEG: what creative mode steers with, no calibration needed.

:func:`band_features` gives, from a window [C, T] in µV:

- ``delta`` ``theta`` ``alpha`` ``beta`` ``gamma``: relative band power (the band's share of 1–45 Hz), the mean over
  the channels; ``alpha.occipital``, ``beta.frontal`` ...: the same over a channel group (10-20 names; channels with
  generic names count in the means over all channels only);
- ``alpha_asymmetry``: ln(alpha power, right frontal) − ln(alpha power, left frontal) over the pairs F4/F3, F8/F7,
  AF4/AF3, FC4/FC3 the window has (absent without one; higher: relatively more left-frontal activity);
- ``engagement``: beta / (alpha + theta) (Pope et al. 1995), from the relative powers;
- ``blink``: the share of the frontal channels' power (all channels' without frontal ones) below 3 Hz;
  ``emg``: the share above 30 Hz over the temporal channels (else all); ``line_noise``: the share within 1 Hz of 50
  and 60 Hz (after a notch filter, about 0); ``artefact``: the largest of the three, 0–1.

These are band-power measures, labelled as such wherever they steer an image ("steered by band power"): they say
how the signal's spectrum moves, not what a person thinks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from bci_dream.signal.montage import normalise_channel_name

#: Band edges in Hz (low inclusive, high exclusive).
BANDS: dict[str, tuple[float, float]] = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
                                         "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}
TOTAL_HZ = (1.0, 45.0)
#: Channel groups by 10-20 name prefix (the longest prefix that fits wins).
GROUP_PREFIXES: dict[str, tuple[str, ...]] = {
    "frontal": ("FP", "AF", "F"), "central": ("FC", "C", "CP"), "temporal": ("FT", "T", "TP"),
    "parietal": ("P",), "occipital": ("PO", "O", "I")}
ASYMMETRY_PAIRS = (("F4", "F3"), ("F8", "F7"), ("AF4", "AF3"), ("FC4", "FC3"))
BLINK_HZ, EMG_HZ, LINE_HZ = 3.0, 30.0, (50.0, 60.0)


def channel_group(name: str) -> str | None:
    """The group of a 10-20 channel name (``"O1"`` → ``"occipital"``, ``"FC3"`` → ``"central"``, ``"EEG Fp1-REF"``
    → ``"frontal"``: labels are normalised first), None for other names (``"EXG Channel 0"``, ``"A5"``)."""
    text = normalise_channel_name(name).strip().upper()
    stem = text.rstrip("0123456789Z")
    if not stem or not stem.isalpha() or len(stem) > 2 or stem == text:
        return None
    best: tuple[int, str] | None = None
    for group, prefixes in GROUP_PREFIXES.items():
        for prefix in prefixes:
            if stem == prefix and (best is None or len(prefix) > best[0]):
                best = (len(prefix), group)
    return best[1] if best else None


def feature_names(ch_names: Sequence[str]) -> list[str]:
    """The features :func:`band_features` gives for channels named ``ch_names`` (all present), in order."""
    groups = sorted({g for g in map(channel_group, ch_names) if g})
    names = [*BANDS, *(f"{band}.{g}" for band in BANDS for g in groups), "engagement", "blink", "emg", "line_noise",
             "artefact"]
    upper = {normalise_channel_name(n).upper() for n in ch_names}
    if any(r in upper and left in upper for r, left in ASYMMETRY_PAIRS):
        names.append("alpha_asymmetry")
    return names


class BandFeatureExtractor:
    """:func:`band_features` for windows of one shape, with the spectral set-up computed once (a Hann-windowed
    periodogram averaged over 1-s segments with half overlap: Welch's method, in numpy).

    Args:
        sfreq: sampling rate in Hz.
        ch_names: one name per row of the windows.
        n_samples: samples per window (at least 1 s gives 1-Hz bins).
    """

    def __init__(self, sfreq: float, ch_names: Sequence[str], n_samples: int) -> None:
        self.sfreq, self.ch_names, self.n_samples = float(sfreq), tuple(ch_names), int(n_samples)
        nperseg = min(self.n_samples, int(round(self.sfreq)))
        step = max(1, nperseg // 2)
        starts = np.arange(0, self.n_samples - nperseg + 1, step)
        self._index = starts[:, None] + np.arange(nperseg)[None, :]  # [segments, nperseg]
        self._taper = sps.get_window("hann", nperseg).astype(np.float64)
        freqs = np.fft.rfftfreq(nperseg, 1 / self.sfreq)
        top = min(self.sfreq / 2, 100.0)

        def band(lo: float, hi: float) -> np.ndarray:
            return (freqs >= lo) & (freqs < hi)

        # Band sums as one product: [freqs, 5] columns for the bands, then the artefact and total bands.
        columns = [band(lo, hi) for lo, hi in BANDS.values()]
        columns += [band(*TOTAL_HZ), band(0.0, BLINK_HZ), band(0.0, TOTAL_HZ[1]), band(EMG_HZ, top),
                    band(TOTAL_HZ[0], top)]
        line = np.zeros_like(freqs, bool)
        for f in LINE_HZ:
            if f + 1 < self.sfreq / 2:
                line |= band(f - 1, f + 1)
        self._sums = np.stack([*columns, line], axis=1).astype(np.float64)
        self._groups = np.asarray([channel_group(n) or "" for n in self.ch_names])
        upper = {normalise_channel_name(n).upper(): i for i, n in enumerate(self.ch_names)}
        self._pairs = np.asarray([(upper[r], upper[left]) for r, left in ASYMMETRY_PAIRS
                                  if r in upper and left in upper], dtype=int).reshape(-1, 2)
        self._layouts: dict[bytes, _Layout] = {}

    def __call__(self, data: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        """The features of one window ``data`` [C, n_samples] µV (rows outside ``mask`` left out)."""
        x = np.asarray(data, dtype=np.float64)
        keep = np.ones(len(x), bool) if mask is None else np.asarray(mask, bool)
        if not keep.any():
            return {}
        segments = x[keep][:, self._index]  # [C, segments, nperseg]
        segments -= segments.mean(axis=-1, keepdims=True)
        spectrum = np.fft.rfft(segments * self._taper, axis=-1)
        psd = (spectrum.real ** 2 + spectrum.imag ** 2).mean(axis=1)  # [C, freqs] (unscaled: only ratios are used)
        sums = psd @ self._sums  # [C, 5 bands + total, blink, below-total, emg, broad, line]
        n = len(BANDS)
        live = sums[:, n] > 0  # (a flat channel has no spectrum to share out)
        if not live.any():
            return dict.fromkeys(feature_names([c for c, k in zip(self.ch_names, keep) if k]), float("nan"))
        rows = np.flatnonzero(keep)[live]
        if not live.all():
            sums = sums[live]
        layout = self._layout(rows)
        # (every denominator holds the 1-45 Hz total, positive on these rows; a stream of a few Hz has no power
        # in the higher bands: their shares are NaN)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = sums[:, :n] / sums[:, n:n + 1]  # [C, 5]
            shares = sums[:, n + 1:] / sums[:, [n + 2, n + 2, n + 4, n + 4, n + 4]]  # blink, -, emg, -, line
        engagement = relative[:, 3] / np.maximum(relative[:, 2] + relative[:, 1], 1e-12)
        blink, emg = shares[layout.blink_rows, 0], shares[layout.emg_rows, 2]
        values = [relative.sum(axis=0) / len(relative), (layout.groups @ relative).ravel(),
                  [engagement.sum() / len(engagement), blink.sum() / len(blink), emg.sum() / len(emg),
                   shares[:, 4].sum() / len(shares)]]
        out = dict(zip(layout.names, np.concatenate(values).tolist()))
        out["artefact"] = max(out["blink"], out["emg"], out["line_noise"])
        if len(self._pairs):
            power = np.zeros(len(x))
            power[rows] = sums[:, 2]
            right, left = power[self._pairs[:, 0]], power[self._pairs[:, 1]]
            ok = (right > 0) & (left > 0)
            if ok.any():
                out["alpha_asymmetry"] = float(np.mean(np.log(right[ok]) - np.log(left[ok])))
        return out

    def _layout(self, rows: np.ndarray) -> _Layout:
        """The group means and feature names for the channels ``rows`` (cached: the set rarely changes)."""
        key = rows.tobytes()
        layout = self._layouts.get(key)
        if layout is None:
            groups = self._groups[rows]
            present = sorted(set(groups.tolist()) - {""})
            matrix = np.zeros((len(present), len(rows)))
            for i, group in enumerate(present):
                members = groups == group
                matrix[i, members] = 1.0 / members.sum()
            # (group-major, band-minor, as (matrix @ relative).ravel() orders them)
            names = [*BANDS, *(f"{band}.{group}" for group in present for band in BANDS), "engagement", "blink",
                     "emg", "line_noise"]
            frontal, temporal = groups == "frontal", groups == "temporal"
            layout = _Layout(matrix, names, frontal if frontal.any() else slice(None),
                             temporal if temporal.any() else slice(None))
            self._layouts[key] = layout
        return layout


@dataclass(frozen=True)
class _Layout:
    groups: np.ndarray  # [n_groups, C]: each group's mean
    names: list[str]
    blink_rows: np.ndarray | slice
    emg_rows: np.ndarray | slice


def band_features(data: np.ndarray, sfreq: float, ch_names: Sequence[str],
                  mask: np.ndarray | None = None) -> dict[str, float]:
    """The features of one window (see the module docstring; :class:`BandFeatureExtractor` for many windows).

    Args:
        data: float [C, T] µV, filtered (T of at least one second at ``sfreq`` gives 1-Hz bins).
        sfreq: its sampling rate in Hz.
        ch_names: one name per row.
        mask: bool [C], the rows that hold a channel (None: all); the others are left out.

    Returns:
        feature name → value (NaN where the window is flat).
    """
    return BandFeatureExtractor(sfreq, ch_names, np.shape(data)[1])(data, mask)
