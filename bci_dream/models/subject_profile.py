"""Subjects: safe ids, their folders, and the saved profile (fine-tuned EEG model + JSON).

A subject's folder (``$XDG_DATA_HOME/bci-dream/subjects/ID``, default ``~/.local/share/...``) holds::

    profile.json      who, when, from which recording, with which models, the validation figures
    pairs.csv         all EEG-image pairs of the calibration session(s)
    train.csv, validation.csv    the split used
    model-<digest>/   the fine-tuned EEG model and UNet adapter (safetensors + JSON; a training checkpoint),
                      named after the training trials it was trained on (``profile.json`` names it)
    sessions/         calibration sessions recorded by the wizard (see bci_dream.calibrate.session)
    validation.png    held-out stimuli beside the images generated from their EEG
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bci_dream.core.errors import BciDreamError

PROFILE = "profile.json"
MODEL_FOLDER = "model"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SubjectError(BciDreamError):
    """A subject id that cannot be a folder name, or a profile that cannot be read."""


def check_subject_id(subject: str) -> str:
    """``subject`` if it is a safe folder name (letters, digits, ``_``, ``-``, ``.``; up to 64; no ``..``)."""
    if not _ID.match(subject or "") or ".." in subject:
        raise SubjectError(f"subject id {subject!r} is refused: use letters, digits, '_', '-' or '.' "
                           "(up to 64, starting with a letter or digit; no '/', '\\' or '..')")
    return subject


def subjects_root() -> Path:
    """Where subject folders live: ``$BCI_DREAM_SUBJECTS``, else ``$XDG_DATA_HOME/bci-dream/subjects``."""
    if os.environ.get("BCI_DREAM_SUBJECTS"):
        return Path(os.environ["BCI_DREAM_SUBJECTS"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "bci-dream" / "subjects"


def subject_folder(subject: str, root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root is not None else subjects_root() / check_subject_id(subject)


@dataclass
class SubjectProfile:
    """What ``profile.json`` holds.

    Attributes:
        subject: the id.
        created, updated: ISO 8601 UTC times.
        recordings: the calibration sessions used.
        model: diffusion model the UNet adapter belongs to; clip_model: the CLIP model of the alignment loss.
        checkpoint: the fine-tuned EEG model folder, relative to the subject folder.
        validation: n-way identification on held-out trials (accuracy, chance, p_value, n_way, n_items ...).
    """

    subject: str
    recordings: list[str] = field(default_factory=list)
    model: str = ""
    clip_model: str = ""
    checkpoint: str = MODEL_FOLDER
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""

    def save(self, folder: str | os.PathLike) -> Path:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.created = self.created or now
        self.updated = now
        path = Path(folder) / PROFILE
        tmp = path.with_name(PROFILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


def load_profile(folder: str | os.PathLike) -> SubjectProfile:
    """The profile in a subject folder (:class:`SubjectError` in one line if it is missing or unreadable)."""
    path = Path(folder) / PROFILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SubjectProfile(**data)
    except FileNotFoundError:
        raise SubjectError(f"{folder} is not a subject folder (no {PROFILE}); calibrate the subject first") from None
    except (ValueError, TypeError) as e:
        raise SubjectError(f"{path} cannot be read ({e}); calibrate the subject again") from None


def checkpoint_of(folder: str | os.PathLike) -> Path:
    """The EEG checkpoint of a subject folder, or ``folder`` itself when it is a checkpoint already."""
    folder = Path(folder)
    if (folder / PROFILE).is_file():
        return folder / load_profile(folder).checkpoint
    return folder
