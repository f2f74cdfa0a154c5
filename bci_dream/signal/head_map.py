"""Where channels lie on a flat head picture, and what a head map shows at them (band power)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bci_dream.signal.channels import canonical_directions
from bci_dream.signal.montage import normalise_channel_name
from bci_dream.signal.spectrum import welch_psd


def flat_positions(names: Sequence[str]) -> np.ndarray:
    """Each channel's place on a head drawn as a unit circle seen from above (nose up, right ear right).

    Azimuthal equidistant projection about Cz of MNE's ``standard_1005`` directions: the distance from the centre is
    the angle from Cz over the mean angle of Fpz, Oz, T7 and T8, so those four lie on the circle (as on a 10-20
    chart) and inferior sites outside it.

    Returns:
        float64 [len(names), 2]: x (right) and y (front); NaN for names that are not canonical sites.
    """
    sites, directions = canonical_directions()
    where = {normalise_channel_name(s).upper(): i for i, s in enumerate(sites)}
    pole = directions[where["CZ"]]
    right = np.array([1.0, 0.0, 0.0]) - pole[0] * pole
    right /= np.linalg.norm(right)
    front = np.cross(pole, right)
    angle = np.arccos(np.clip(directions @ pole, -1.0, 1.0))
    # (the head frame's origin lies between the ears, below the 10-20 "equator": scale it onto the circle)
    equator = float(np.mean([angle[where[s]] for s in ("FPZ", "OZ", "T7", "T8")]))
    out = np.full((len(names), 2), np.nan)
    for i, name in enumerate(names):
        j = where.get(normalise_channel_name(str(name)).upper())
        if j is None:
            continue
        d = directions[j]
        x, y = d @ right, d @ front
        norm = float(np.hypot(x, y))
        out[i] = (0.0, 0.0) if norm < 1e-9 else (angle[j] / equator * x / norm, angle[j] / equator * y / norm)
    return out


def relative_band_power(data_uv: np.ndarray, sfreq: float, band: tuple[float, float],
                        total: tuple[float, float] = (1.0, 40.0)) -> np.ndarray:
    """Each channel's power in ``band`` over its power in ``total`` (Welch, 1-s segments): float64 [channels] in
    [0, 1]; NaN for a channel without power.

    Args:
        data_uv: [n, channels] in µV (the filtered signal).
    """
    freqs, psd = welch_psd(data_uv, sfreq, total[0], total[1])
    in_band = (freqs >= band[0]) & (freqs < band[1])
    whole = psd.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, psd[:, in_band].sum(axis=1) / whole, np.nan)
