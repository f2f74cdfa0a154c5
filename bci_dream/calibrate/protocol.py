"""Calibration protocols: a TOML file that says which images to show, how long, how often and in what order.

A protocol is a flat TOML file (all keys optional except ``stimuli``; durations in seconds)::

    stimuli = "shapes-colours"   # a shipped set's name, or a folder (relative to this file) of class subfolders
    image_s = 0.5                # how long each image is on screen
    isi_s = 0.75                 # blank between one image's offset and the next one's onset ...
    jitter_s = 0.25              # ... drawn uniformly from [isi_s - jitter_s, isi_s + jitter_s]
    fixation_s = 0.0             # fixation cross shown during the last fixation_s of each blank (0: none)
    blocks = 4                   # blocks of trials, separated by rests
    repetitions = 2              # times each image is shown per block
    rest_s = 20.0                # rest between blocks
    lead_in_s = 3.0              # blank screen before the first block (filters settle, a baseline is recorded)
    randomise = true             # shuffle each block (seeded); else the set's order, repeated
    seed = 0                     # seeds the order and the jitter
    background = "#808080"       # screen colour between (and around) images
    photodiode = false           # a corner square, white while an image is on, for a photodiode (true onsets)

Timeline (``t = 0`` is the session start): ``lead_in_s``; then per block, per trial, a blank of
``isi_s ± jitter_s`` (its last ``fixation_s`` with a fixation cross) followed by the image for ``image_s``;
``rest_s`` between blocks; one last blank of ``isi_s`` after the final image. At each image onset the
presenter sends the marker text ``str(class_index)`` (1-based index of the image's class in the stimulus set),
which is what ``bci-dream make-pairs RECORDING --class 1=SET/<class 1>/ ...`` reads; a presenter may also
send :attr:`Trial.detail_marker` (``"stim:<class>/<file>"``) to log the exact image, which ``make-pairs`` reads.

Protocols shipped with the package live in ``calibration/protocols/`` and can be named (``"default"``,
``"quick"``) instead of given as a path.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from bci_dream.calibrate.stimuli import (
    Stimulus,
    StimulusSet,
    calibration_root,
    find_stimulus_set,
    load_stimulus_set,
    shipped_stimulus_sets,
)
from bci_dream.core.errors import BciDreamError
from bci_dream.core.toml_file import read_toml
from bci_dream.training.pairs import DETAIL_PREFIX

__all__ = ["Protocol", "ProtocolError", "Trial", "calibration_root", "list_protocols", "load_protocol"]

log = logging.getLogger(__name__)

_SECONDS_KEYS = ("image_s", "isi_s", "jitter_s", "fixation_s", "rest_s", "lead_in_s")
_INT_KEYS = ("blocks", "repetitions", "seed")
_BOOL_KEYS = ("randomise", "photodiode")
_STR_KEYS = ("name", "description", "stimuli", "background")
#: Every key a protocol file may contain.
KEYS = _STR_KEYS + _SECONDS_KEYS + _INT_KEYS + _BOOL_KEYS


class ProtocolError(BciDreamError):
    """A protocol file is missing, not valid TOML, or has an unknown key or a bad value."""


@dataclass(frozen=True)
class Trial:
    """One image presentation.

    Attributes:
        block: 1-based block number.
        index: 0-based position in the session (``schedule()[i].index == i``).
        class_name: the image's class.
        class_index: 1-based index of the class in the stimulus set.
        image: the image file.
        onset_s: image onset, in seconds from the session start.
        duration_s: how long the image stays on screen, in seconds.
        marker: marker text to send at onset: ``str(class_index)``.
    """

    block: int
    index: int
    class_name: str
    class_index: int
    image: Path
    onset_s: float
    duration_s: float
    marker: str

    @property
    def offset_s(self) -> float:
        """Image offset, in seconds from the session start."""
        return self.onset_s + self.duration_s

    @property
    def detail_marker(self) -> str:
        """``"stim:<class>/<file>"``: an optional second marker naming the exact image."""
        return f"{DETAIL_PREFIX}{self.class_name}/{self.image.name}"


@dataclass(frozen=True)
class Protocol:
    """A calibration protocol; see the module docstring for the meaning of each field (durations in seconds).

    Raises:
        ProtocolError: on construction, if a value is out of range (one line naming the key and the file).
    """

    stimuli: str
    name: str = "protocol"
    description: str = ""
    image_s: float = 0.5
    isi_s: float = 0.75
    jitter_s: float = 0.25
    fixation_s: float = 0.0
    blocks: int = 4
    repetitions: int = 2
    rest_s: float = 20.0
    lead_in_s: float = 3.0
    randomise: bool = True
    seed: int = 0
    background: str = "#808080"
    photodiode: bool = False
    path: Path | None = None

    def __post_init__(self) -> None:
        where = self._where()
        if not self.stimuli:
            raise ProtocolError(f"{where}: 'stimuli' is empty; give a shipped set's name or a folder")
        for key in _SECONDS_KEYS:
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ProtocolError(f"{where}: '{key}' must be a duration >= 0 s, not {value}")
        if self.image_s <= 0:
            raise ProtocolError(f"{where}: 'image_s' must be > 0 s, not {self.image_s}")
        if self.jitter_s > self.isi_s:
            raise ProtocolError(f"{where}: 'jitter_s' ({self.jitter_s}) must not exceed 'isi_s' ({self.isi_s})")
        if self.fixation_s > self.isi_s - self.jitter_s + 1e-9:
            raise ProtocolError(f"{where}: 'fixation_s' ({self.fixation_s}) must fit in the shortest blank, "
                                f"isi_s - jitter_s = {self.isi_s - self.jitter_s:g} s")
        for key in ("blocks", "repetitions"):
            if getattr(self, key) < 1:
                raise ProtocolError(f"{where}: '{key}' must be >= 1, not {getattr(self, key)}")
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.background):
            raise ProtocolError(f"{where}: 'background' must be a colour like \"#808080\", not {self.background!r}")

    def _where(self) -> str:
        return f"protocol {self.path}" if self.path is not None else f"protocol '{self.name}'"

    @property
    def stimulus_folder(self) -> Path:
        """The stimulus set's folder (a folder relative to the protocol file, else a shipped set).

        Raises:
            ProtocolError: no such folder and no shipped set of that name.
        """
        folder = find_stimulus_set(self.stimuli, base=self.path.parent if self.path is not None else None)
        if folder is None:
            shipped = ", ".join(shipped_stimulus_sets()) or "none"
            raise ProtocolError(f"{self._where()}: stimuli = {self.stimuli!r} is neither a folder nor a shipped "
                                f"stimulus set (shipped: {shipped})")
        return folder

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """:attr:`background` as an sRGB triple, 0-255."""
        return tuple(int(self.background[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]

    def load_stimuli(self, check_images: bool = True) -> StimulusSet:
        """Load and check the protocol's stimulus set (see :func:`~bci_dream.calibrate.stimuli.load_stimulus_set`)."""
        return load_stimulus_set(self.stimulus_folder, check_images=check_images)

    def schedule(self, stimuli: StimulusSet | None = None) -> list[Trial]:
        """Every trial of the session, in order, with onsets in seconds from the session start.

        Each block shows every image ``repetitions`` times; with ``randomise`` the block is shuffled (seeded by
        ``seed``) such that no image follows itself where that can be avoided. Blanks are drawn from their own
        seeded generator, so the order does not change with the timing.

        Args:
            stimuli: the stimulus set; default: :meth:`load_stimuli`.
        """
        stimuli = stimuli if stimuli is not None else self.load_stimuli()
        order_rng = random.Random(f"{self.seed}:order")  # str seeds do not depend on PYTHONHASHSEED
        blank_rng = random.Random(f"{self.seed}:blank")
        trials: list[Trial] = []
        t = self.lead_in_s
        for block in range(1, self.blocks + 1):
            if block > 1:
                t += self.rest_s
            sequence = [s for _ in range(self.repetitions) for s in stimuli.items]
            if self.randomise:
                order_rng.shuffle(sequence)
                _separate_repeats(sequence, order_rng)
            for s in sequence:
                t += self.isi_s + (blank_rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s > 0 else 0.0)
                trials.append(Trial(block=block, index=len(trials), class_name=s.class_name,
                                    class_index=s.class_index, image=s.path, onset_s=round(t, 6),
                                    duration_s=self.image_s, marker=str(s.class_index)))
                t += self.image_s
        return trials

    def total_seconds(self, stimuli: StimulusSet | None = None) -> float:
        """Length of the session in seconds: up to the last image's offset plus a final blank of ``isi_s``."""
        trials = self.schedule(stimuli)
        return round(trials[-1].offset_s + self.isi_s, 6)

    @property
    def shortest_onset_interval_s(self) -> float:
        """Seconds between two successive image onsets at least (image, then the shortest blank)."""
        return round(self.image_s + self.isi_s - self.jitter_s, 6)

    def epoch_overlap(self, epoch_s: float) -> str | None:
        """One line when epochs of ``epoch_s`` seconds from each onset would hold the next image's onset too."""
        shortest = self.shortest_onset_interval_s
        if shortest >= epoch_s - 1e-9:
            return None
        return (f"{self._where()}: onsets can be {shortest:g} s apart (image_s + isi_s - jitter_s) but the epochs "
                f"are {epoch_s:g} s long, so an epoch holds up to {epoch_s - shortest:.2f} s of the next image's "
                f"response; lengthen isi_s or shorten the epochs (--epoch)")

    def describe(self, stimuli: StimulusSet | None = None) -> str:
        """One line: trial count, structure, timing and length of the session."""
        stimuli = stimuli if stimuli is not None else self.load_stimuli(check_images=False)
        n = self.blocks * self.repetitions * len(stimuli)
        jitter = f" ± {self.jitter_s:g}" if self.jitter_s else ""
        reps = f"{self.repetitions} repetition{'s' if self.repetitions != 1 else ''}"
        return (f"{self.name}: {n} trials ({self.blocks} blocks × {reps} × {len(stimuli)} images of "
                f"{len(stimuli.classes)} classes from {stimuli.name}), images {self.image_s:g} s, "
                f"blanks {self.isi_s:g}{jitter} s, rests {self.rest_s:g} s, "
                f"{self.total_seconds(stimuli) / 60:.1f} min")


def _separate_repeats(sequence: list[Stimulus], rng: random.Random) -> None:
    """Swap items in place so that no image directly follows itself, where some swap allows it."""
    n = len(sequence)

    def clash(k: int) -> bool:
        return (k > 0 and sequence[k - 1].path == sequence[k].path) or \
               (k + 1 < n and sequence[k + 1].path == sequence[k].path)

    for i in range(1, n):
        if sequence[i].path != sequence[i - 1].path:
            continue
        candidates = list(range(n))
        rng.shuffle(candidates)
        for j in candidates:
            if sequence[j].path == sequence[i].path:
                continue
            sequence[i], sequence[j] = sequence[j], sequence[i]
            if not clash(i) and not clash(j):
                break
            sequence[i], sequence[j] = sequence[j], sequence[i]
        else:
            log.debug("cannot keep %s from following itself at trial %d", sequence[i].relative, i)


def protocols_folder() -> Path:
    """The folder of the shipped protocols (``calibration/protocols``)."""
    return calibration_root() / "protocols"


def list_protocols() -> list[str]:
    """Names of the shipped protocols, sorted."""
    folder = protocols_folder()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def load_protocol(path_or_name: str | os.PathLike) -> Protocol:
    """Read a protocol file, or a shipped protocol by name (``"default"`` → ``calibration/protocols/default.toml``).

    The stimulus set must exist (its images are checked later, by :meth:`Protocol.load_stimuli`).

    Raises:
        ProtocolError: one line naming the file and the problem: unknown name, unreadable file, invalid TOML,
            unknown key, wrong type, value out of range, missing ``stimuli`` or a stimulus set that is not found.
    """
    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if not (text.endswith(".toml") or "/" in text or os.sep in text or path.is_file()):
        path = protocols_folder() / f"{text}.toml"
        if not path.is_file():
            known = ", ".join(list_protocols()) or "none"
            raise ProtocolError(f"unknown protocol '{text}'; shipped protocols: {known} (or give a .toml file)")
    raw = read_toml(path, "protocol", ProtocolError)
    protocol = Protocol(**_check_types(raw, path), path=path)
    _ = protocol.stimulus_folder  # raises ProtocolError naming the key and the file if the set is not found
    log.debug("protocol %s loaded from %s", protocol.name, path)
    return protocol


def _check_types(raw: dict, path: Path) -> dict:
    for key in raw:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(KEYS)})"
            raise ProtocolError(f"protocol {path}: unknown key '{key}'{hint}")
    if "stimuli" not in raw:
        raise ProtocolError(f"protocol {path}: missing key 'stimuli' (a shipped set's name, e.g. "
                            f"\"shapes-colours\", or a folder of class subfolders)")
    values: dict = {"name": path.stem}
    for key, value in raw.items():
        if key in _SECONDS_KEYS:
            ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number of seconds"
            value = float(value) if ok else value
        elif key in _INT_KEYS:
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif key in _BOOL_KEYS:
            ok, expected = isinstance(value, bool), "true or false"
        else:
            ok, expected = isinstance(value, str), "a string"
        if not ok:
            raise ProtocolError(f"protocol {path}: '{key}' must be {expected}, not {value!r}")
        values[key] = value
    return values
