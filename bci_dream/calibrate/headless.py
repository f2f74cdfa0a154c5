"""Calibration from a recorded session, without a window: pairs → fine-tuning → validation → subject profile.

Steps 4–7 of the calibration wizard, for scripts and servers (``bci-dream calibrate --headless``):

1. the session's EEG–image pairs (a manifest, or made from the recording's class markers) are split,
   per class and seeded, into training and held-out validation trials;
2. the per-subject parts (conditioning and CLIP heads, UNet cross-attention LoRA; optionally the
   encoder) are fine-tuned on the training trials with the losses of ``bci-dream finetune``. A run
   that was interrupted resumes from its last checkpoint;
3. validation on the held-out trials: n-way identification of the seen image from the EEG in CLIP
   space, against chance, and a figure of a few held-out stimuli beside the images generated from
   their EEG;
4. the subject profile (``profile.json`` + the fine-tuned model) is written to the subject folder.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.generation.generator import load_generator
from bci_dream.generation.image_bank import SUBJECT_BANK, embed_images
from bci_dream.generation.session_models import unet_adapter_of
from bci_dream.io.readers import read_recording
from bci_dream.loading.compute_device import resolve_device
from bci_dream.models.channel_naming import saved_naming
from bci_dream.models.checkpoint import load_checkpoint, read_config, update_meta
from bci_dream.models.subject_profile import (
    MODEL_FOLDER,
    PROFILE,
    SubjectError,
    SubjectProfile,
    check_subject_id,
    load_profile,
    subject_folder,
)
from bci_dream.signal.channels import ChannelNaming
from bci_dream.training.evaluate import evaluate
from bci_dream.training.finetune import FinetuneCancelled, FinetuneSettings, finetune
from bci_dream.training.pairs import Pair, make_pairs, pairs_to_arrays, read_pairs, write_pairs
from bci_dream.training.settings import with_model_defaults
from bci_dream.training.windows import window_spec_for

log = logging.getLogger(__name__)


@dataclass
class CalibrationResult:
    """Where everything went and the validation figures."""
    folder: Path
    profile: SubjectProfile
    n_train: int
    n_validation: int
    figure: Path | None


def split_pairs(pairs: Sequence[Pair], validation_fraction: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``validation_fraction`` of each class's trials (at least one per class with 2+ trials), seeded."""
    if not 0.0 < validation_fraction < 1.0:
        raise BciDreamError(f"--validation-fraction must be between 0 and 1, not {validation_fraction}")
    by_class: dict[str | None, list[Pair]] = {}
    for p in pairs:
        by_class.setdefault(p.label, []).append(p)
    few = {label: len(group) for label, group in by_class.items() if len(group) < 2}
    if few:
        label, n = next(iter(few.items()))
        need = max(2, math.ceil(1 / validation_fraction))
        raise BciDreamError(f"class {label} has {n} trial; each class needs at least 2 to hold one out for "
                            f"validation (at --validation-fraction {validation_fraction:g}, {need} give one held-out "
                            "trial per class); record more trials")
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted(by_class, key=str):
        group = list(by_class[label])
        rng.shuffle(group)
        k = max(1, round(len(group) * validation_fraction)) if len(group) > 1 else 0
        held += group[:k]
        train += group[k:]
    if not train or not held:
        raise BciDreamError(f"{len(pairs)} trials are too few to hold some out for validation; record more trials")
    return train, held


def session_pairs(recording: str | os.PathLike | None, *, pairs: str | os.PathLike | None = None,
                  naming: ChannelNaming | None = None,
                  classes: Mapping[str, str | os.PathLike] | None = None, seed: int = 0,
                  round_robin: bool = False) -> list[Pair]:
    """The pairs of one session: the rows of ``pairs`` for ``recording`` (all rows if none name it), or
    pairs made from its class markers (``classes``: marker text → image folder; ``round_robin``: see
    :func:`~bci_dream.training.pairs.make_pairs`)."""
    if (pairs is None) == (not classes):
        raise BciDreamError("give either --pairs MANIFEST or --class MARKER=FOLDER (one or more), not both")
    if pairs is not None:
        rows = read_pairs(pairs)
        if recording is None:
            return rows
        mine = [p for p in rows if Path(p.recording).resolve() == Path(recording).resolve()]
        return mine or rows
    return make_pairs(read_recording(recording, naming=naming), {k: Path(v) for k, v in classes.items()}, seed=seed,
                      round_robin=round_robin)


def calibrate_headless(recording: str | os.PathLike | None, subject: str, settings: FinetuneSettings, *,
                       pairs: str | os.PathLike | None = None, classes: Mapping[str, str | os.PathLike] | None = None,
                       init: str | os.PathLike | None = None, validation_fraction: float = defaults.VALIDATION_FRACTION, n_way: int = defaults.N_WAY,
                       trials: int = defaults.N_WAY_TRIALS, figure_rows: int = defaults.VALIDATION_FIGURE_ROWS, subjects_dir: str | os.PathLike | None = None,
                       progress: bool = True, on_step: Callable[[dict[str, float]], None] | None = None,
                       on_phase: Callable[[str], None] | None = None,
                       cancel: threading.Event | None = None, naming: ChannelNaming | None = None,
                       round_robin: bool = False) -> CalibrationResult:
    """Run the calibration of ``subject`` on a recorded session (see the module docstring).

    Args:
        recording: the session (.xdf or any format the readers take); None with ``pairs``: every recording
            the manifest names (a session recorded in several parts).
        subject: the subject id (a safe folder name).
        settings: fine-tuning settings (models, steps, LoRA ...); its ``val_fraction`` is not used: the
            validation trials are held out here, per class, and every other trial trains (no step selection or
            adapter choice on an inner split: on the known-answer benchmark an inner 20 % cost more in training
            trials than the selection gained: 4 of 9 cells lower, 1 higher).
        pairs / classes: the session's EEG-image pairs (a manifest), or its marker → image-folder map.
        round_robin: with ``classes``, pair trials whose log names no image with an image of their class in turn.
        init: a pretrained EEG checkpoint to start from.
        validation_fraction: share of each class's trials held out.
        n_way, trials: identification settings (n reduced to the distinct held-out images when fewer).
        figure_rows: held-out trials shown in ``validation.png`` (0: none).
        subjects_dir: the subject folder itself (default: ``subjects_root()/subject``).
        on_step, cancel: fine-tuning progress and cancellation (see :meth:`Finetuner.train`).
        on_phase: told ``"fine-tuning"``, ``"validating"``, ``"drawing"`` and ``"saving"`` as each begins.

    Raises:
        BciDreamError subclasses, each one line: a bad subject id, an unreadable recording or manifest,
        too few trials, models that cannot be loaded; :class:`FinetuneCancelled` when ``cancel`` is set.
    """
    check_subject_id(subject)
    if recording is None and pairs is None:
        raise BciDreamError("give the session's recording, or a pairs manifest that names its recordings")
    if recording is not None and not Path(recording).is_file():
        raise BciDreamError(f"recording {recording} does not exist")
    settings = with_model_defaults(settings, progress=progress)
    phase = on_phase or (lambda name: None)
    folder = subject_folder(subject, subjects_dir)
    folder.mkdir(parents=True, exist_ok=True)
    all_pairs = session_pairs(recording, pairs=pairs, classes=classes, seed=settings.seed, naming=naming,
                              round_robin=round_robin)
    train, held = split_pairs(all_pairs, validation_fraction, settings.seed)
    write_pairs(folder / "pairs.csv", all_pairs)
    write_pairs(folder / "train.csv", train)
    write_pairs(folder / "validation.csv", held)
    log.info("%s: %d training and %d validation trials", subject, len(train), len(held))

    # Each set of training trials trains in its own folder (model-<digest>): an interrupted or cancelled run on
    # these very trials goes on where it stopped, other trials (a new session) train afresh, and the profile keeps
    # pointing at the last finished model until the new one is done.
    digest = hashlib.sha256((folder / "train.csv").read_bytes()).hexdigest()[:12]
    model_dir = folder / f"{MODEL_FOLDER}-{digest}"
    resume = (model_dir / "config.json").is_file()
    if resume:
        log.warning("%s: resuming the fine-tuning in %s", subject, model_dir)
    phase("fine-tuning")
    finetune(folder / "train.csv", model_dir, replace(settings, val_fraction=0.0), init=init, resume=resume,
             overwrite=not resume, naming=naming, progress=progress, on_step=on_step, cancel=cancel)

    _check_cancel(cancel)
    phase("validating")

    report = evaluate(folder / "validation.csv", model_dir, clip_model=settings.clip_model, classifier=None,
                      n_way=n_way, trials=trials, seed=settings.seed, offset_s=settings.offset_s,
                      device=None if settings.device == "auto" else settings.device)
    validation = report.identification.to_dict() if report.identification else {}
    if report.identification_averaged is not None:
        validation["averaged_over_repetitions"] = report.identification_averaged.to_dict()
    validation["notes"] = report.notes
    update_meta(model_dir, validation=validation)  # (the held-out score travels with the checkpoint too)
    if settings.route == "ip-adapter":  # the CLIP routes' default bank: the images this subject saw
        stimuli = list(dict.fromkeys(str(p.image.resolve()) for p in all_pairs))
        embed_images(stimuli, settings.clip_model, device=str(resolve_device(settings.device))).save(
            folder / SUBJECT_BANK)
    figure = None
    if figure_rows > 0 and settings.route == "ip-adapter" and settings.ip_adapter is None:
        log.warning("%s: no validation figure: the ip-adapter route draws it through an IP-Adapter (give "
                    "--ip-adapter FILE)", subject)
        figure_rows = 0
    if figure_rows > 0:
        _check_cancel(cancel)
        phase("drawing")
        figure = validation_figure(_round_robin(held, figure_rows), model_dir, settings, folder / "validation.png")

    _check_cancel(cancel)
    phase("saving")
    recordings = [str(Path(recording).resolve())] if recording is not None else \
        list(dict.fromkeys(str(p.recording.resolve()) for p in all_pairs))
    profile = SubjectProfile(subject=subject, recordings=recordings, model=settings.model,
                             clip_model=settings.clip_model, checkpoint=model_dir.name, validation=validation)
    if (folder / PROFILE).is_file():
        try:
            profile.created = load_profile(folder).created
        except SubjectError as e:
            log.warning("the previous profile is replaced: %s", e)
    profile.save(folder)
    for other in folder.glob(f"{MODEL_FOLDER}*"):  # models of earlier calibrations, no longer in the profile
        if other.is_dir() and other != model_dir and (other / "config.json").is_file():
            shutil.rmtree(other, ignore_errors=True)
    return CalibrationResult(folder, profile, len(train), len(held), figure)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise FinetuneCancelled("calibration cancelled after the fine-tuning (which was saved); start it again to "
                                "validate and save the profile")


def _round_robin(pairs: Sequence[Pair], n: int) -> list[Pair]:
    """Up to ``n`` pairs taking each class in turn (so that the figure shows every class)."""
    by_class: dict[str | None, list[Pair]] = {}
    for p in pairs:
        by_class.setdefault(p.label, []).append(p)
    queues = [list(v) for _, v in sorted(by_class.items(), key=lambda kv: str(kv[0]))]
    out: list[Pair] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def validation_figure(pairs: Sequence[Pair], checkpoint: Path, settings: FinetuneSettings, output: Path) -> Path:
    """A grid: each row a held-out stimulus beside the image generated from its EEG window (PNG at ``output``)."""
    from PIL import Image, ImageDraw

    clip_route = settings.route == "ip-adapter"
    generator = load_generator(settings.model, device=settings.device, progress=False, warmup=False,
                               adapter=None if clip_route else unet_adapter_of(checkpoint),
                               ip_adapter=settings.ip_adapter if clip_route else None)
    model, _ = load_checkpoint(checkpoint, map_location="cpu")
    model = model.eval().to(generator.device)
    eeg, mask, images, labels = pairs_to_arrays(pairs, window_spec_for(model.config), offset_s=settings.offset_s,
                                                naming=saved_naming(read_config(checkpoint)))
    cell = 160
    grid = Image.new("RGB", (2 * cell + 30, len(images) * (cell + 20) + 10), (30, 30, 30))
    draw = ImageDraw.Draw(grid)
    with torch.inference_mode():
        for row, (window, m, image, label) in enumerate(zip(eeg, mask, images, labels)):
            x = torch.from_numpy(window)[None].to(generator.device)
            present = torch.from_numpy(m.astype("float32"))[None].to(generator.device)
            if clip_route:
                generated = generator.generate_from_image_embeds(model.clip_embeds(x, present)).image
            else:
                generated = generator.generate(model.prompt_embeds(x, present)).image
            y = 10 + row * (cell + 20)
            with Image.open(image) as stimulus:
                grid.paste(stimulus.convert("RGB").resize((cell, cell)), (10, y + 10))
            grid.paste(generated.resize((cell, cell)), (20 + cell, y + 10))
            draw.text((10, y - 2), f"stimulus ({label})" if label else "stimulus", fill=(220, 220, 220))
            draw.text((20 + cell, y - 2), "generated from its EEG", fill=(220, 220, 220))
    output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(output)
    return output
