"""Per-window normalisation of encoder inputs, the same for the live path and for training.

For one window ``x`` [C, T] (µV, montage order) and its channel ``mask`` [C]:

1. every present channel (``mask`` True) loses its mean over the window;
2. the whole window is divided by ONE robust scale: the median, over present channels that are not
   flat, of the per-channel standard deviation (floored at ``eps``). One scale for all channels
   keeps the relative amplitudes between channels (a noisy or strong channel stays stronger than
   its neighbours), while the median keeps one bad electrode from setting the scale. Flat present
   channels (std <= eps, e.g. unconnected inputs that read exactly 0) are ignored when the scale
   is chosen, so they cannot shrink it to ``eps``;
3. values are clipped to ±``clip`` (default 20 scale units): artefacts far beyond the typical
   amplitude (blinks, jaw clenches, a rail) cannot dominate the encoder's input or its loss;
4. masked channels (``mask`` False) are exactly 0.

Input may be one window [C, T] or a batch [N, C, T] (``mask`` [C] shared, or [N, C]). The result is
float32; the input is not modified.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Normalised values are clipped to ±CLIP.
CLIP = 20.0
#: The name checkpoints give this normalisation (``Preprocessing.normalization``).
NAME = "robust-channel-scale"


def normalize_window(data: np.ndarray, mask: np.ndarray, eps: float = 1e-6, clip: float = CLIP) -> np.ndarray:
    """Normalise a window [C, T] or windows [N, C, T]; see the module docstring.

    Args:
        data: µV, channels × time (optionally batched).
        mask: bool [C] or [N, C]; True where the channel holds data.
        eps: smallest scale, and the std below which a channel counts as flat.
        clip: limit of the output magnitude (None: no clipping).

    Returns:
        float32 array of ``data``'s shape.
    """
    x = np.asarray(data, dtype=np.float32)
    if x.ndim not in (2, 3):
        raise ValueError(f"expected [C, T] or [N, C, T], got shape {x.shape}")
    single = x.ndim == 2
    if single:
        x = x[None]
    n, c, _ = x.shape
    m = np.asarray(mask, dtype=bool)
    if m.shape == (c,):
        m = np.broadcast_to(m, (n, c))
    elif single and m.shape == (1, c):
        pass
    elif m.shape != (n, c):
        raise ValueError(f"mask of shape {m.shape} does not fit data of shape {np.shape(data)}")
    # float64 statistics: a DC offset of tens of mV would cost float32 the µV digits.
    mean = x.mean(axis=-1, dtype=np.float64)  # [N, C]
    centred = (x - mean[..., None]).astype(np.float32)
    std = centred.std(axis=-1, dtype=np.float64)  # [N, C]
    usable = m & (std > eps)
    masked_std = np.where(usable, std, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: windows without a usable channel
        scale = np.nanmedian(masked_std, axis=1)
    scale = np.where(np.isfinite(scale), scale, eps)
    scale = np.maximum(scale, eps)
    out = centred / scale[:, None, None].astype(np.float32)
    if clip is not None:
        np.clip(out, -clip, clip, out=out)
    out[~m] = 0.0
    return out[0] if single else out
