"""Linear probes on frozen EEG embeddings, against a band-power baseline and chance.

A probe asks whether what the encoder learned separates classes of real trials linearly: features
are the encoder's tokens averaged over time (frozen, no fine-tuning), classified by logistic
regression under cross-validation. The baseline gets log band powers of the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bci_dream.models.encoder import EegEncoder

BANDS_HZ = ((1, 4), (4, 8), (8, 13), (13, 20), (20, 30), (30, 45))


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated accuracy (mean and std over folds) of one feature set."""

    name: str
    accuracy: float
    std: float
    n_features: int


@torch.no_grad()
def embedding_features(encoder: EegEncoder, windows: np.ndarray, masks: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Frozen encoder tokens averaged over time: windows [N, C, T], masks [N, C] → [N, D]."""
    encoder.eval()
    out = []
    for start in range(0, len(windows), batch_size):
        x = torch.as_tensor(windows[start:start + batch_size], dtype=torch.float32)
        m = torch.tensor(np.array(masks[start:start + batch_size]), dtype=torch.float32)
        out.append(encoder.embed(x, m).mean(dim=1).numpy())
    return np.concatenate(out)


def bandpower_features(windows: np.ndarray, masks: np.ndarray, sfreq: float,
                       bands: Sequence[tuple[float, float]] = BANDS_HZ) -> np.ndarray:
    """Log mean power per band of each present channel: windows [N, C, T] → [N, C_present * bands]."""
    present = masks.any(axis=0)
    x = windows[:, present, :]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sfreq)
    feats = [np.log(spectrum[..., (freqs >= lo) & (freqs < hi)].mean(axis=-1) + 1e-12) for lo, hi in bands]
    return np.stack(feats, axis=-1).reshape(len(windows), -1)


def cross_validated_accuracy(features: np.ndarray, labels: np.ndarray, *, groups: np.ndarray | None = None,
                             folds: int = 5, seed: int = 0, name: str = "") -> ProbeResult:
    """Accuracy of standardised logistic regression under (group-)stratified k-fold cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    if groups is None:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        scores = cross_val_score(clf, features, labels, cv=cv)
    else:
        cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        scores = cross_val_score(clf, features, labels, cv=cv, groups=groups)
    return ProbeResult(name, float(scores.mean()), float(scores.std()), features.shape[1])


def chance_level(labels: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class."""
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum())
