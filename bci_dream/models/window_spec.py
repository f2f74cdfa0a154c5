"""The window a checkpoint was trained on, and what a stream or a run must match of it.

A checkpoint carries its window specification: the length and rate in its encoder config
(``n_samples / sfreq``), and in its :class:`~bci_dream.models.eeg_model.Preprocessing` the filters, the
normalisation, the montage, the epochs' offset from the image onset and the montage channels it was fine-tuned on.
Calibration epochs, fine-tuning pairs and the live windower all take theirs from it; this module resizes a model
to another epoch length (fine-tuning on stimulus-locked epochs) and says in one line what a live stream lacks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bci_dream.models.eeg_model import CANONICAL_MONTAGE, NORMALIZATION, EegModel, EegModelConfig
from bci_dream.signal.montage import MontageMapping

log = logging.getLogger(__name__)

#: Parts whose weights depend on the number of tokens: created afresh when the window length changes.
TOKEN_SHAPED = ("conditioning", "clip")


def samples_for(epoch_s: float, config: EegModelConfig) -> int:
    """Samples per window for epochs of ``epoch_s`` seconds at the encoder's rate, rounded to whole patches
    (at least one).

    Raises:
        ValueError: ``epoch_s`` is not a positive number of seconds.
    """
    if not epoch_s > 0:
        raise ValueError(f"the epoch length must be positive, not {epoch_s} s")
    enc = config.encoder
    patches = max(1, round(epoch_s * enc.sfreq / enc.patch_size))
    return patches * enc.patch_size


def with_window(model: EegModel, n_samples: int) -> EegModel:
    """``model`` for windows of ``n_samples`` samples: the same model when it already takes them; else a model whose
    encoder keeps every weight (positions rebuilt, or interpolated where they are stored weights) and whose
    token-shaped heads (:data:`TOKEN_SHAPED`) start afresh, since they map a number of tokens that changed."""
    old = model.config
    if old.encoder.n_samples == n_samples:
        return model
    encoder = dataclasses.replace(old.encoder, n_samples=n_samples)
    resized = EegModel(dataclasses.replace(old, encoder=encoder))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(f"{h}." for h in TOKEN_SHAPED))}
    if "encoder.pos_embed" in state:
        state["encoder.pos_embed"] = _resize_positions(state["encoder.pos_embed"], encoder.num_patches)
    resized.load_state_dict(state, strict=False)
    log.info("EEG model resized from %d to %d samples (%g s to %g s windows); its %s heads start afresh",
             old.encoder.n_samples, n_samples, old.encoder.window_seconds, encoder.window_seconds,
             " and ".join(h for h in TOKEN_SHAPED if getattr(model, h) is not None))
    return resized


def _resize_positions(pos: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Stored positions [1, 1 + L, D] (class token first) → [1, 1 + n_tokens, D], linearly interpolated."""
    cls, seq = pos[:, :1], pos[:, 1:]
    seq = F.interpolate(seq.transpose(1, 2), size=n_tokens, mode="linear", align_corners=True).transpose(1, 2)
    return torch.cat([cls, seq], dim=1)


def channel_mismatch(trained: Sequence[str] | None, mapping: MontageMapping,
                     montage_names: Sequence[str]) -> tuple[str | None, list[str]]:
    """Compare the channels a model was fine-tuned on with those a stream's ``mapping`` places in the montage.

    Returns:
        (problem, extra): ``problem`` is one line naming the trained channels the stream lacks (None when it has
        them all, or when the model names none); ``extra`` the stream's montage channels the model was not
        trained on, in montage order (the live windows leave them out).
    """
    if trained is None:
        return None, []
    live = [montage_names[i] for i in sorted(int(t) for t in mapping.target_index)]
    wanted = {n.upper() for n in trained}
    have = {n.upper() for n in live}
    missing = [n for n in trained if n.upper() not in have]
    extra = [n for n in live if n.upper() not in wanted]
    if not missing:
        return None, extra
    problem = (f"the EEG model was calibrated on the channels {', '.join(trained)}, but the stream has no "
               f"{', '.join(missing)} (it maps {', '.join(live) or 'no channel'}); name the stream's channels with "
               "--channels-file, use the headset the model was calibrated with, or calibrate again")
    return problem, extra


def epoch_offset(config: EegModelConfig, requested: float | None) -> float:
    """The epochs' offset from the onset (s) to cut for a model of ``config``: ``requested``, else the one it was
    trained with; a requested offset that differs from the training's is said in a warning (what differs)."""
    trained = config.preprocessing.epoch_offset_s
    if requested is None:
        return trained
    if abs(requested - trained) > 1e-9:
        log.warning("the EEG model was trained on epochs from %g s after each onset, these are cut from %g s: "
                    "its scores on them say less about it", trained, requested)
    return float(requested)


def unsupported_windows(config: EegModelConfig) -> str | None:
    """One line when a checkpoint's windows are made in a way this version cannot make (another montage or
    normalisation, e.g. from a newer version or another tool), else None."""
    pre = config.preprocessing
    if pre.montage != CANONICAL_MONTAGE:
        return (f"its windows are mapped into the montage '{pre.montage}', but this version makes them in "
                f"'{CANONICAL_MONTAGE}'; use the version that wrote it, or train the model again here")
    if pre.normalization != NORMALIZATION:
        return (f"its windows are normalised by '{pre.normalization}', but this version normalises by "
                f"'{NORMALIZATION}'; use the version that wrote it, or train the model again here")
    return None
