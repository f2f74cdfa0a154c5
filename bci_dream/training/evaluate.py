"""Evaluation of an EEG model on EEG–image pairs, with DreamDiffusion's metric and one of our own.

Two metrics, both "n-way top-1": the true item must score higher than ``n - 1`` distractors drawn
at random (without replacement), averaged over ``trials`` draws and over all items; chance is 1/n.

1. **Generated-image classification** (:func:`n_way_top1`), as in DreamDiffusion's evaluation
   (``eval_metrics.py``: ``get_n_way_top_k_acc`` / ``n_way_top_k_acc``, n = 50, 50 trials, top-1;
   the paper calls it GA): a pretrained image classifier labels the ground-truth image with its
   argmax class; a generated image counts as correct in a trial when the classifier's probability
   for that class is strictly higher than for each of ``n - 1`` other classes drawn at random.
   DreamDiffusion uses torchvision's ViT-H/14 (ImageNet-1k); here any
   ``AutoModelForImageClassification`` (default ``google/vit-base-patch16-224``, ImageNet-1k).

2. **EEG → image identification in CLIP space** (:func:`n_way_identification`): the EEG model's
   CLIP head embeds the window; the true image and ``n - 1`` distinct other images of the pairs are
   embedded by a ``CLIPVisionModelWithProjection`` (``image_embeds``); correct when the true image
   has the highest cosine similarity. This needs no generator and measures what the CLIP loss of
   fine-tuning trains.

p-values are one-sided binomial tests (:func:`scipy.stats.binomtest`) of ``round(accuracy × N)``
successes in ``N`` items at the chance rate: one outcome per item, because the trials of one item
reuse the same scores and are not independent (counting all ``N × trials`` draws would overstate
significance).

Generated images are not made here: the generator writes them to a folder, one per manifest row,
named ``{i:05d}.png`` where ``i`` is the 0-based index of the row in the manifest (header and blank
lines not counted: the index into :func:`~bci_dream.training.pairs.read_pairs`). A row whose image
is missing is skipped with a warning. Rows that stand for every occurrence of a marker share the one
ground-truth image of the row, so one generated image per row is compared with it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import binomtest

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.generation.image_bank import load_bank
from bci_dream.loading.compute_device import resolve_device
from bci_dream.loading.vision_models import (
    batched_images,
    clip_image_embeds,
    load_clip_vision,
    load_image_classifier,
)
from bci_dream.models.channel_naming import saved_naming
from bci_dream.models.checkpoint import load_checkpoint, model_config, read_config
from bci_dream.models.window_spec import epoch_offset
from bci_dream.signal.channels import ChannelNaming
from bci_dream.training.pairs import pairs_to_arrays, read_pairs
from bci_dream.training.windows import window_spec_for

if TYPE_CHECKING:  # pragma: no cover
    from bci_dream.models.eeg_model import EegModel

log = logging.getLogger(__name__)

GENERATED_NAME = "{i:05d}.png"
#: Upper bound on the random keys drawn at once (rows x candidates) when sampling distractors.
_CHUNK_ELEMENTS = 4_000_000


class EvaluationError(BciDreamError):
    """The evaluation cannot run with these inputs (too few classes or images, wrong widths ...)."""


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NWayResult:
    """An n-way top-1 accuracy.

    Attributes:
        accuracy: mean over items and trials of "the true item scored highest".
        n_way: n actually used (reduced when fewer candidates exist than asked for).
        chance: 1 / n_way.
        p_value: one-sided binomial p-value of round(accuracy × n_items) successes in n_items at chance.
        n_items: items evaluated (pairs, or generated images).
        trials: random draws of distractors per item.
        n_candidates: distinct candidates the distractors were drawn from, the true one included
            (distinct images, or classifier classes).
    """
    accuracy: float
    n_way: int
    chance: float
    p_value: float
    n_items: int
    trials: int
    n_candidates: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The result of :func:`n_way_identification`.
IdentificationResult = NWayResult


@dataclass(frozen=True)
class RetrievalResult:
    """Retrieval of the image shown among all candidate images (the pairs' distinct images, and a bank's).

    Attributes:
        top1, top5: share of trials whose image is the nearest / among the 5 nearest candidates (by cosine).
        chance1, chance5: what a random ranking gets (1 / M and min(5, M) / M).
        p1, p5: one-sided binomial p-values against those chances.
        n_items: trials; n_candidates: M, the candidate images.
    """
    top1: float
    top5: float
    chance1: float
    chance5: float
    p1: float
    p5: float
    n_items: int
    n_candidates: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvaluationReport:
    """Both metrics (either may be None when not computed) and the settings used. ``identification_averaged``:
    identification of the images shown more than once from the mean of their trials' embeddings (None when every
    image was shown once)."""
    identification: NWayResult | None = None
    classification: NWayResult | None = None
    identification_averaged: NWayResult | None = None
    retrieval: RetrievalResult | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"identification": self.identification.to_dict() if self.identification else None,
                "identification_averaged": self.identification_averaged.to_dict() if self.identification_averaged
                else None,
                "classification": self.classification.to_dict() if self.classification else None,
                "retrieval": self.retrieval.to_dict() if self.retrieval else None,
                "settings": self.settings, "notes": self.notes}

    def lines(self) -> list[str]:
        """One human-readable line per metric."""
        out = []
        if self.identification is not None:
            r = self.identification
            out.append(f"EEG->image identification in CLIP space: {r.n_way}-way top-1 accuracy {r.accuracy:.3f} "
                       f"(chance {r.chance:.3f}, p = {r.p_value:.3g}; {r.n_items} pairs, {r.n_candidates} distinct "
                       f"images, {r.trials} trials)")
        if self.identification_averaged is not None:
            r = self.identification_averaged
            out.append(f"  averaged over repetitions: {r.n_way}-way top-1 accuracy {r.accuracy:.3f} (chance "
                       f"{r.chance:.3f}, p = {r.p_value:.3g}; {r.n_items} images shown more than once)")
        if self.retrieval is not None:
            r = self.retrieval
            out.append(f"retrieval among {r.n_candidates} images: top-1 {r.top1:.3f} (chance {r.chance1:.3f}, "
                       f"p = {r.p1:.3g}), top-5 {r.top5:.3f} (chance {r.chance5:.3f}, p = {r.p5:.3g}); "
                       f"{r.n_items} pairs")
        if self.classification is not None:
            r = self.classification
            out.append(f"generated-image classification: {r.n_way}-way top-1 accuracy {r.accuracy:.3f} "
                       f"(chance {r.chance:.3f}, p = {r.p_value:.3g}; {r.n_items} images, {r.n_candidates} "
                       f"classifier classes, {r.trials} trials)")
        return out


# -- metrics --------------------------------------------------------------------------------------

def effective_n_way(n_way: int, available: int, what: str) -> int:
    """``n_way``, reduced (with a warning) to the number of ``available`` candidates.

    Raises:
        EvaluationError: ``n_way`` < 2, or fewer than 2 candidates exist.
    """
    if n_way < 2:
        raise EvaluationError(f"--n-way must be at least 2, got {n_way}")
    if available < 2:
        raise EvaluationError(f"an n-way test needs at least 2 {what}, there is {available}")
    if available < n_way:
        log.warning("only %d %s: n-way reduced from %d to %d", available, what, n_way, available)
        return available
    return n_way


def binomial_p_value(accuracy: float, n_items: int, chance: float) -> float:
    """One-sided binomial p-value of round(accuracy × n_items) successes in n_items at ``chance``."""
    if n_items == 0:
        return 1.0
    k = round(accuracy * n_items)
    return float(binomtest(k, n_items, chance, alternative="greater").pvalue)


def _n_way_scores(scores: np.ndarray, truth: np.ndarray, n_way: int, trials: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Per-item accuracy [N] over ``trials``: ``scores[i, truth[i]]`` beats ``n_way - 1`` other
    columns drawn uniformly without replacement (strictly higher than each)."""
    n, k = scores.shape
    rows = np.arange(n)
    true_score = scores[rows, truth]
    correct = np.zeros(n, np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // max(k, 1))
    for _ in range(trials):
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            keys = rng.random((sl.stop - start, k))
            keys[np.arange(sl.stop - start), truth[sl]] = np.inf  # never draw the true column
            picked = np.argpartition(keys, n_way - 2, axis=1)[:, : n_way - 1] if n_way > 1 else \
                np.zeros((sl.stop - start, 0), np.int64)
            best_other = np.take_along_axis(scores[sl], picked, axis=1).max(axis=1)
            correct[sl] += true_score[sl] > best_other
    return correct / trials


def n_way_top1(probs_generated: np.ndarray, labels: np.ndarray, n_way: int, trials: int,
               rng: np.random.Generator) -> float:
    """DreamDiffusion's n-way top-1 classification accuracy of generated images.

    Args:
        probs_generated: [N, K] classifier probabilities (or logits: only the order matters) of the
            N generated images over K classes.
        labels: [N] class index of each ground-truth image (the classifier's argmax on it).
        n_way: n (the true class + n - 1 random others); reduced with a warning when K < n.
        trials: random draws of the n - 1 other classes per image.
        rng: the random generator (e.g. ``np.random.default_rng(seed)``).

    Returns:
        Mean over images and trials of "the true class has the strictly highest probability of the n".
    """
    probs = np.asarray(probs_generated, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs_generated must be [N, K] with N = len(labels) = {labels.shape[0]}, "
                         f"got {probs.shape}")
    if labels.size == 0:
        raise EvaluationError("no generated images to classify")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1]})")
    n = effective_n_way(n_way, probs.shape[1], "classifier classes")
    return float(_n_way_scores(probs, labels, n, trials, rng).mean())


def retrieval(eeg_embeds: np.ndarray, truth: np.ndarray, candidates: np.ndarray) -> RetrievalResult:
    """Top-1 and top-5 retrieval of each trial's image among ``candidates``.

    Args:
        eeg_embeds: [N, P] the EEG model's CLIP-space embeddings.
        truth: int [N], each trial's row of ``candidates``.
        candidates: [M, P] CLIP image embeddings of the candidate images (M >= 2).
    """
    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    m = len(candidates)
    if m < 2:
        raise EvaluationError(f"retrieval needs at least 2 candidate images, there is {m}")
    sims = unit(eeg_embeds) @ unit(candidates).T
    rank = (sims > sims[np.arange(len(truth)), truth][:, None]).sum(1)  # candidates strictly nearer
    top1, top5 = float((rank < 1).mean()), float((rank < 5).mean())
    chance1, chance5 = 1.0 / m, min(5, m) / m
    return RetrievalResult(top1, top5, chance1, chance5, binomial_p_value(top1, len(truth), chance1),
                           binomial_p_value(top5, len(truth), chance5) if chance5 < 1 else 1.0, len(truth), m)


def n_way_identification(eeg_embeds: np.ndarray, image_embeds: np.ndarray, image_ids: Sequence[Any],
                         n_way: int, trials: int, rng: np.random.Generator) -> NWayResult:
    """n-way identification of the seen image from the EEG embedding, by cosine similarity.

    Args:
        eeg_embeds: [N, P] the EEG model's CLIP-space embedding of each pair's window.
        image_embeds: [N, P] CLIP ``image_embeds`` of each pair's true image (rows with the same id
            must hold the same image; the first is used).
        image_ids: [N] hashable id of each pair's image (e.g. its path); distractors are n - 1
            *distinct* images other than the true one, drawn from the ids present.
        n_way: n; reduced with a warning when fewer than n distinct images exist.
        trials: random draws of distractors per pair.
        rng: the random generator.

    Returns:
        :class:`NWayResult` with accuracy, n, chance level 1/n and binomial p-value.
    """
    eeg = np.asarray(eeg_embeds, dtype=np.float64)
    img = np.asarray(image_embeds, dtype=np.float64)
    if eeg.ndim != 2 or img.shape != eeg.shape:
        raise ValueError(f"eeg_embeds and image_embeds must both be [N, P], got {eeg.shape} and {img.shape}")
    if len(image_ids) != eeg.shape[0]:
        raise ValueError(f"{len(image_ids)} image ids for {eeg.shape[0]} embeddings")
    if eeg.shape[0] == 0:
        raise EvaluationError("no pairs to evaluate")
    index: dict[Any, int] = {}
    truth = np.array([index.setdefault(i, len(index)) for i in image_ids], np.int64)
    first = np.zeros(len(index), np.int64)
    for row in range(len(truth) - 1, -1, -1):
        first[truth[row]] = row
    candidates = img[first]
    n = effective_n_way(n_way, len(index), "distinct images")

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(eeg) @ unit(candidates).T  # [N, U] cosine similarities
    accuracy = float(_n_way_scores(sims, truth, n, trials, rng).mean())
    return NWayResult(accuracy=accuracy, n_way=n, chance=1.0 / n,
                      p_value=binomial_p_value(accuracy, len(truth), 1.0 / n),
                      n_items=len(truth), trials=trials, n_candidates=len(index))


def averaged_over_repetitions(eeg_embeds: np.ndarray, image_embeds: np.ndarray,
                              image_ids: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]] | None:
    """For the images shown more than once: the mean of their trials' unit EEG embeddings [M, P], their image
    embeddings [M, P] and ids; None when no image repeats. (Candidates stay the images of this subset.)"""
    rows: dict[Any, list[int]] = {}
    for row, image in enumerate(image_ids):
        rows.setdefault(image, []).append(row)
    repeated = [image for image, r in rows.items() if len(r) > 1]
    if len(repeated) < 2:
        return None
    eeg = np.asarray(eeg_embeds, np.float64)
    eeg = eeg / np.maximum(np.linalg.norm(eeg, axis=1, keepdims=True), 1e-12)
    mean = np.stack([eeg[rows[i]].mean(0) for i in repeated])
    return mean, np.stack([np.asarray(image_embeds)[rows[i][0]] for i in repeated]), repeated


# -- models ---------------------------------------------------------------------------------------

def classify_images(paths: Sequence[Path], model, processor, *, batch_size: int = 16) -> np.ndarray:
    """Class probabilities [N, K] (softmax of the logits) of the images at ``paths``."""
    device = next(model.parameters()).device
    return batched_images(paths, processor, lambda px: model(pixel_values=px).logits.softmax(-1), batch_size, device)


def eeg_clip_embeds(model: EegModel, eeg: np.ndarray, mask: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """The EEG model's CLIP-head embeddings [N, P] of windows ``eeg`` [N, C, T] with channel masks [N, C]."""
    device = next(model.parameters()).device
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(eeg), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(eeg[start:start + batch_size])).to(device)
            m = torch.from_numpy(np.ascontiguousarray(mask[start:start + batch_size])).to(device)
            out.append(model.clip_embeds(x, m).float().cpu().numpy())
    return np.concatenate(out)


# -- the whole evaluation -------------------------------------------------------------------------

def generated_path(folder: str | os.PathLike, row: int) -> Path:
    """Where the generated image of manifest row ``row`` (0-based) is expected: ``folder/{row:05d}.png``."""
    return Path(folder) / GENERATED_NAME.format(i=row)


def evaluate(pairs_manifest: str | os.PathLike, checkpoint: str | os.PathLike, *,
             generated: str | os.PathLike | None = None, classifier: str | None = defaults.CLASSIFIER,
             clip_model: str | None = defaults.CLIP_MODEL, n_way: int = defaults.N_WAY, trials: int = defaults.N_WAY_TRIALS, seed: int = 0,
             offset_s: float | None = None, device: str | None = None,
             naming: ChannelNaming | None = None, bank: str | os.PathLike | None = None) -> EvaluationReport:
    """Evaluate the EEG model at ``checkpoint`` on the pairs of ``pairs_manifest``.

    Identification runs when ``clip_model`` is given; generated-image classification when
    ``generated`` (a folder of ``{row:05d}.png``) and ``classifier`` are given. Each metric draws
    its distractors from its own random stream seeded by ``seed``.
    ``offset_s``: where epochs start after each onset (s); None: where the checkpoint's training epochs did.
    With identification also retrieval top-1 / top-5 among the pairs' distinct images, and ``bank``'s (an image bank
    file made with the same CLIP model).

    Raises:
        BciDreamError subclasses: missing or malformed manifest or checkpoint, a checkpoint without a
            CLIP head or whose CLIP width differs from the CLIP model's, models that cannot be
            loaded, too few images or classes, no generated images.
    """
    if trials < 1:
        raise EvaluationError(f"--trials must be at least 1, got {trials}")
    if n_way < 2:
        raise EvaluationError(f"--n-way must be at least 2, got {n_way}")
    if generated is not None and not Path(generated).is_dir():
        raise EvaluationError(f"--generated {generated} is not a folder; give the folder of {{row:05d}}.png images")
    device = str(resolve_device(device or "auto"))
    raw_config = read_config(checkpoint)  # a missing or foreign checkpoint fails before any model is loaded
    naming = naming or saved_naming(raw_config)  # (the recordings' channels as the model was trained on them)
    offset_s = epoch_offset(model_config(raw_config, checkpoint), offset_s)
    pairs = read_pairs(pairs_manifest)
    report = EvaluationReport(settings={
        "pairs": str(pairs_manifest), "checkpoint": str(checkpoint), "generated": str(generated) if generated else None,
        "classifier": classifier if generated else None, "clip_model": clip_model, "n_way": n_way,
        "trials": trials, "seed": seed, "offset_s": offset_s})

    if clip_model is not None:
        model, _ = load_checkpoint(checkpoint, map_location="cpu")
        if model.clip is None:
            raise EvaluationError(f"the checkpoint {checkpoint} has no CLIP head; identification needs one "
                                  "(fine-tune with a CLIP model, or leave out --clip-model)")
        clip, processor = load_clip_vision(clip_model, device)
        clip_width = int(clip.config.projection_dim)
        eeg_width = int(model.config.clip_projection_dim)
        if clip_width != eeg_width:
            raise EvaluationError(f"the checkpoint's CLIP head has width {eeg_width} but the CLIP model "
                                  f"'{clip_model}' embeds images in width {clip_width}; give the CLIP model the "
                                  "checkpoint was fine-tuned with")
        model.to(device)
        eeg, mask, images, _labels = pairs_to_arrays(pairs, window_spec_for(model.config), offset_s=offset_s,
                                                     naming=naming)
        ids = [str(Path(p).resolve()) for p in images]
        distinct = list(dict.fromkeys(ids))
        by_id = dict(zip(distinct, clip_image_embeds([Path(p) for p in distinct], clip, processor)))
        image_embeds = np.stack([by_id[i] for i in ids])
        eeg_embeds = eeg_clip_embeds(model, eeg, mask)
        report.identification = n_way_identification(eeg_embeds, image_embeds, ids, n_way, trials,
                                                     np.random.default_rng([seed, 1]))
        averaged = averaged_over_repetitions(eeg_embeds, image_embeds, ids)
        if averaged is not None:
            report.identification_averaged = n_way_identification(*averaged, n_way, trials,
                                                                  np.random.default_rng([seed, 3]))
        candidates = np.stack([by_id[i] for i in distinct])
        if bank is not None:  # the bank's other images are candidates too
            loaded = load_bank(bank, clip_model=str(clip_model))
            known = set(distinct)
            extra = [row for row, path in enumerate(loaded.images) if str(Path(path).resolve()) not in known]
            candidates = np.concatenate([candidates, loaded.embeddings[extra].numpy()]) if extra else candidates
        report.retrieval = retrieval(eeg_embeds, np.array([distinct.index(i) for i in ids]), candidates)
        if report.identification.n_way < n_way:
            report.notes.append(f"identification: only {report.identification.n_candidates} distinct images, "
                                f"n-way reduced from {n_way} to {report.identification.n_way}")
        del model, clip

    if generated is not None and classifier is not None:
        rows = [(i, p) for i, p in enumerate(pairs) if generated_path(generated, i).is_file()]
        missing = len(pairs) - len(rows)
        if not rows:
            raise EvaluationError(f"no generated images in {generated}: expected {generated_path(generated, 0).name} "
                                  f"... {generated_path(generated, len(pairs) - 1).name}, one per manifest row")
        if missing:
            note = f"{missing} of {len(pairs)} manifest rows have no generated image in {generated}; skipped"
            log.warning("%s", note)
            report.notes.append(note)
        net, processor = load_image_classifier(classifier, device)
        truth_paths = [Path(p.image) for _, p in rows]
        distinct = list(dict.fromkeys(truth_paths))
        truth_probs = dict(zip(distinct, classify_images(distinct, net, processor)))
        labels = np.array([int(np.argmax(truth_probs[p])) for p in truth_paths], np.int64)
        probs = classify_images([generated_path(generated, i) for i, _ in rows], net, processor)
        n = effective_n_way(n_way, probs.shape[1], "classifier classes")
        if n < n_way:
            report.notes.append(f"classification: the classifier has {probs.shape[1]} classes, n-way reduced "
                                f"from {n_way} to {n}")
        accuracy = n_way_top1(probs, labels, n, trials, np.random.default_rng([seed, 2]))
        report.classification = NWayResult(accuracy=accuracy, n_way=n, chance=1.0 / n,
                                           p_value=binomial_p_value(accuracy, len(rows), 1.0 / n),
                                           n_items=len(rows), trials=trials, n_candidates=int(probs.shape[1]))
    if report.identification is None and report.classification is None:
        raise EvaluationError("nothing to evaluate: give --clip-model for identification and/or --generated "
                              "for the classification of generated images")
    return report
