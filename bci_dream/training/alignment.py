"""Aligning EEG embeddings with CLIP image embeddings: the cosine term, a contrastive (InfoNCE) term with a learned
temperature, and a closed-form ridge regression that starts the CLIP head where few trials can take it.

InfoNCE as in NICE-EEG / ATM: each EEG embedding should pick the image that was shown out of the candidate images
(here every distinct training image, a superset of the in-batch negatives), with logits ``cos / temperature``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bci_dream.models.heads import ClipHead

#: CLIP's initial temperature (logit scale 1 / 0.07) and its upper bound (scale 100).
INITIAL_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0
#: Ridge penalties tried, relative to the mean eigenvalue of the features' covariance.
RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def cosine_loss(eeg_clip: torch.Tensor, image_clip: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cosine)`` between EEG CLIP-head outputs [B, P] and CLIP image embeddings [B, P]."""
    return (1.0 - F.cosine_similarity(eeg_clip.float(), image_clip.float(), dim=-1)).mean()


class LearnedTemperature(nn.Module):
    """The InfoNCE logit scale, learned in log space and capped at :data:`MAX_LOGIT_SCALE` (as CLIP's)."""

    def __init__(self, temperature: float = INITIAL_TEMPERATURE) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()


def infonce_loss(eeg_clip: torch.Tensor, candidates: torch.Tensor, target: torch.Tensor,
                 logit_scale: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of picking image ``target[i]`` among ``candidates`` for EEG embedding ``i``.

    Args:
        eeg_clip: [B, P] EEG CLIP-head outputs.
        candidates: [M, P] CLIP image embeddings of the candidate images.
        target: int64 [B], the index into ``candidates`` of the image each trial showed.
        logit_scale: scalar, 1 / temperature.
    """
    logits = F.normalize(eeg_clip.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
    return F.cross_entropy(logits * logit_scale, target)


def fit_ridge(features: np.ndarray, targets: np.ndarray, *, folds: int = 3,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge regression ``targets ≈ features @ W + b`` with the penalty chosen by ``folds``-fold cross-validation
    (mean cosine of the held-out predictions).

    Args:
        features: [N, D] one feature vector per trial.
        targets: [N, P] unit-norm CLIP embeddings of the images shown.

    Returns:
        W [D, P], b [P], and the penalty chosen (relative to the features' mean eigenvalue).
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    n = x.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    chunks = [order[k::folds] for k in range(folds)] if n >= 2 * folds else []
    best, best_score = RIDGE_PENALTIES[len(RIDGE_PENALTIES) // 2], -np.inf
    for penalty in RIDGE_PENALTIES if chunks else ():
        scores = []
        for held in chunks:
            keep = np.setdiff1d(order, held)
            w, b = _solve(x[keep], y[keep], penalty)
            pred = x[held] @ w + b
            scores.append(np.mean(np.sum(_unit(pred) * _unit(y[held]), axis=1)))
        if np.mean(scores) > best_score:
            best, best_score = penalty, float(np.mean(scores))
    w, b = _solve(x, y, best)
    return w.astype(np.float32), b.astype(np.float32), best


def _solve(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    d = x.shape[1]
    if x.shape[0] < d:  # the dual form: (N x N) instead of (D x D)
        gram = xc @ xc.T
        lam = penalty * max(np.trace(gram) / max(x.shape[0], 1), 1e-12)
        w = xc.T @ np.linalg.solve(gram + lam * np.eye(x.shape[0]), yc)
    else:
        cov = xc.T @ xc
        lam = penalty * max(np.trace(cov) / d, 1e-12)
        w = np.linalg.solve(cov + lam * np.eye(d), xc.T @ yc)
    return w, my - mx @ w


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@torch.no_grad()
def install_ridge(head: ClipHead, w: np.ndarray, b: np.ndarray) -> None:
    """Make ``head`` compute the ridge map of the mean token: pooling weights 1/L, ``fc`` = (W, b)."""
    head.pool.weight.fill_(1.0 / head.num_tokens)
    head.pool.bias.zero_()
    head.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
    head.fc.bias.copy_(torch.from_numpy(b))


def pairwise_identification(predicted: torch.Tensor, images: torch.Tensor, shown: torch.Tensor) -> float:
    """How often the image shown beats another image in cosine to the prediction, over every other image (the
    2-way identification averaged over all distractors; chance 0.5, ties count half).

    Args:
        predicted: [B, P] predicted CLIP embeddings.
        images: [M, P] CLIP embeddings of the M distinct images (M >= 2).
        shown: int64 [B], the row of ``images`` each prediction's image is.
    """
    sims = F.normalize(predicted.float(), dim=-1) @ F.normalize(images.float(), dim=-1).T  # [B, M]
    true = sims.gather(1, shown[:, None])
    others = torch.ones_like(sims, dtype=torch.bool).scatter_(1, shown[:, None], False)
    wins = ((true > sims).float() + 0.5 * (true == sims).float()) * others
    return float((wins.sum(1) / others.sum(1)).mean())
