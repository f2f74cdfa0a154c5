"""Checkpoints of our own: a folder with ``config.json`` + ``model.safetensors`` (+ training state).

``training_state.pt`` (optimizer, scheduler, step, random state) is written only by training
commands so that an interrupted run can resume; it holds plain tensors and numbers and is read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from bci_dream.core.errors import CheckpointError, first_line
from bci_dream.core.files import write_atomically
from bci_dream.models.eeg_model import EegModel, EegModelConfig
from bci_dream.models.window_spec import unsupported_windows

log = logging.getLogger(__name__)

FORMAT = "bci-dream-eeg"
CONFIG_FILE, WEIGHTS_FILE, STATE_FILE = "config.json", "model.safetensors", "training_state.pt"
MAX_LISTED = 8


def save_checkpoint(folder: str | os.PathLike, model: EegModel, *, training_state: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write ``model`` (and optionally the training state) to ``folder``, atomically per file."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "version": 1, **model.config.to_dict(), "meta": meta or {}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_atomically(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    write_atomically(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2)))
    if training_state is not None:
        write_atomically(folder / STATE_FILE, lambda p: torch.save(training_state, p))
    return folder


def update_meta(folder: str | os.PathLike, **entries) -> None:
    """Add ``entries`` to the meta of the checkpoint in ``folder`` (e.g. its held-out validation), atomically."""
    folder = checkpoint_folder(folder)
    config = read_config(folder)
    config["meta"] = {**config.get("meta", {}), **entries}
    write_atomically(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2)))


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """The checkpoint folder ``path`` names: itself, or the folder of its ``config.json`` or ``model.safetensors``.

    Raises:
        CheckpointError: it does not exist, or is some other file (one line saying what to give instead).
    """
    path = Path(path)
    if path.is_dir():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give the folder written by 'bci-dream pretrain', "
                              "'finetune' or 'calibrate'")
    if path.name in (CONFIG_FILE, WEIGHTS_FILE):
        return path.parent
    raise CheckpointError(f"{path} is a file, not a bci-dream checkpoint: give the folder that holds {CONFIG_FILE} "
                          f"and {WEIGHTS_FILE} (written by 'bci-dream pretrain', 'finetune' or 'calibrate')")


def read_config(folder: str | os.PathLike) -> dict:
    """The checkpoint's ``config.json`` as a dict; :class:`CheckpointError` if missing, damaged or not ours."""
    folder = checkpoint_folder(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a bci-dream checkpoint (no {CONFIG_FILE}); "
                              "give the folder written by 'bci-dream pretrain' or 'finetune'")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is damaged ({first_line(e)}); copy the checkpoint again or train it "
                              "again") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a bci-dream EEG checkpoint (its {CONFIG_FILE} is not an object)")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a bci-dream EEG checkpoint (format {config.get('format')!r})")
    return config


def model_config(raw: dict, source: str | os.PathLike) -> EegModelConfig:
    """The :class:`EegModelConfig` of a checkpoint's ``config.json`` (``raw``, from :func:`read_config`).

    Raises:
        CheckpointError: it is malformed, or describes windows this version cannot make (one line, naming what).
    """
    try:
        config = EegModelConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{source} does not describe an EEG model this version reads "
                              f"({type(e).__name__}: {e}); use the version that wrote it") from e
    problem = unsupported_windows(config)
    if problem is not None:
        raise CheckpointError(f"{source}: {problem}")
    return config


def load_checkpoint(folder: str | os.PathLike, *, expected: EegModelConfig | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[EegModel, dict]:
    """Rebuild the model saved in ``folder``; returns (model, config dict with its ``meta``).

    With ``expected``, a checkpoint of another shape raises :class:`CheckpointError` that lists
    the mismatched keys.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = checkpoint_folder(folder)
    raw = read_config(folder)
    config = model_config(raw, folder)
    try:
        model = EegModel(config if expected is None else expected)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG_FILE} does not describe an EEG model this version reads "
                              f"({type(e).__name__}: {e}); use the version that wrote it") from e
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device=str(map_location))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {folder / WEIGHTS_FILE} ({first_line(e)}): the weights are missing, "
                              "damaged or cut off; copy the checkpoint again or train it again") from e
    load_state(model, state, source=str(folder), source_preset=config.encoder.preset)
    return model, raw


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str, source_preset: str = "?",
               allow_missing: tuple[str, ...] = ()) -> None:
    """Load ``state`` strictly; on any mismatch raise one line that names the first mismatched keys."""
    own = model.state_dict()
    problems = []
    for key, value in state.items():
        if key not in own:
            problems.append(f"{key} (unexpected)")
        elif tuple(own[key].shape) != tuple(value.shape):
            problems.append(f"{key} {list(value.shape)} vs {list(own[key].shape)}")
    problems += [f"{k} (missing)" for k in own if k not in state and not k.startswith(allow_missing)]
    if problems:
        preset = getattr(getattr(model, "config", None), "encoder", None)
        target = getattr(preset, "preset", "?")
        listed = ", ".join(problems[:MAX_LISTED]) + (f" (+{len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else "")
        raise CheckpointError(f"{source} (preset '{source_preset}') does not fit the model (preset '{target}'): "
                              f"{len(problems)} mismatched keys: {listed}")
    model.load_state_dict(state, strict=not allow_missing)


def load_training_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The training state saved with the checkpoint, or None."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {e}; delete it to start training afresh") from e
