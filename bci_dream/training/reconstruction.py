"""Masked-patch reconstruction error of a pretrained encoder against two baselines.

On held-out windows, the same random patch masks are scored three ways, over hidden patches and
present channels only: the model's reconstruction, predicting zeros (the windows are normalised to
zero mean), and linear interpolation across each hidden span from the visible samples around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bci_dream.models.encoder import EegEncoder


@dataclass(frozen=True)
class ReconstructionScores:
    """Mean squared error (in normalised units) on hidden patches of present channels."""

    model: float
    zeros: float
    interpolation: float
    windows: int


def interpolate_hidden(x: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Fill hidden samples of ``x`` [C, T] by linear interpolation from the visible ones.

    ``hidden`` is bool [T]; before the first or after the last visible sample the nearest visible
    value is held.
    """
    t = np.arange(x.shape[1])
    visible = ~hidden
    if not visible.any():
        return np.zeros_like(x)
    out = x.copy()
    for c in range(x.shape[0]):
        out[c, hidden] = np.interp(t[hidden], t[visible], x[c, visible])
    return out


@torch.no_grad()
def reconstruction_scores(encoder: EegEncoder, windows: np.ndarray, masks: np.ndarray, *, mask_ratio: float = 0.75,
                          seed: int = 0, batch_size: int = 32, device: str | torch.device = "cpu") -> ReconstructionScores:
    """Score ``encoder`` on ``windows`` [N, C, T] with channel ``masks`` [N, C] (bool) against the baselines."""
    encoder.eval().to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    p = encoder.config.patch_size
    sums = np.zeros(3)
    count = 0.0
    for start in range(0, len(windows), batch_size):
        x = torch.as_tensor(windows[start:start + batch_size], dtype=torch.float32, device=device)
        m = torch.as_tensor(masks[start:start + batch_size], dtype=torch.float32, device=device)
        channel_mask = encoder.check_input(x, m)
        latent, patch_mask, ids_restore = encoder.forward_encoder(x, channel_mask, mask_ratio, generator)
        pred = encoder.unpatchify(encoder.forward_decoder(latent, ids_restore)).cpu().numpy()
        hidden_t = patch_mask.repeat_interleave(p, dim=1).bool().cpu().numpy()  # [B, T]
        xs = x.cpu().numpy()
        present = m.bool().cpu().numpy()
        for i in range(xs.shape[0]):
            sel = np.ix_(present[i], hidden_t[i])
            truth = xs[i][sel]
            interp = interpolate_hidden(xs[i][present[i]], hidden_t[i])[:, hidden_t[i]]
            sums += [((pred[i][sel] - truth) ** 2).sum(), (truth ** 2).sum(), ((interp - truth) ** 2).sum()]
            count += truth.size
    model, zeros, interp = (sums / max(count, 1)).tolist()
    return ReconstructionScores(model, zeros, interp, len(windows))
