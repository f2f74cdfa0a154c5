"""Where a window store's recordings come from: files and folder trees (globs), BIDS datasets (mne-bids) and MOABB
datasets by name, each with its subject and session.

A :class:`CorpusItem` is one unit of work of a store build: a recording file, or one subject of a MOABB dataset (its
sessions and runs, which MOABB downloads on the user's machine). Subjects and sessions come, in order, from the BIDS
entities of a path (``sub-01_ses-02_...``), the user's ``--subject-pattern`` (a regular expression with the groups
``subject`` and ``session``), the TUH EEG corpus's names (``aaaaaaaa_s001_t000.edf``), or are unknown (None: each such
recording then counts as its own subject in subject-wise splits).
"""

from __future__ import annotations

import difflib
import glob
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bci_dream.core.errors import BciDreamError
from bci_dream.io.readers import MNE_FOLDER_SUFFIXES, recording_suffixes

log = logging.getLogger(__name__)

#: Text files a folder of recordings often holds beside them (not picked up by the folder search).
NOT_RECORDINGS = ("LICENSE", "LICENCE", "README", "CHANGELOG", "NOTICE", "COPYING")
#: The TUH EEG corpus's file names: subject, session, token.
TUH_NAME = re.compile(r"^(?P<subject>[a-z]{8})_(?P<session>s\d{3})_t\d{3}$")
_BIDS_ENTITY = re.compile(r"(?:^|[_/\\])(sub|ses)-([A-Za-z0-9]+)")
_GLOB_CHARS = frozenset("*?[")


class SourceError(BciDreamError):
    """A source that names nothing: a path or glob without recordings, a MOABB dataset that does not exist."""


@dataclass(frozen=True)
class CorpusItem:
    """One unit of a store build.

    Attributes:
        source: what it is, for people and for the store's journal: a file's absolute path, or
            ``moabb:DATASET:SUBJECT``.
        path: the recording file (None for a MOABB subject).
        moabb: ``(dataset name, subject number)`` for a MOABB subject, else None.
        subject, session: what the path says (None: unknown); a MOABB item's runs carry their own sessions.
        dataset: the dataset it belongs to (a BIDS root's name, a MOABB dataset's), or None.
    """

    source: str
    path: Path | None = None
    moabb: tuple[str, int] | None = None
    subject: str | None = None
    session: str | None = None
    dataset: str | None = None

    def fingerprint(self) -> str:
        """Changes when the recording does: size and modification time of a file (a MOABB subject: fixed)."""
        if self.path is None:
            return "moabb"
        if not self.path.exists():
            return "missing"
        stat = self.path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}" if self.path.is_file() else f"folder:{stat.st_mtime_ns}"


def subject_and_session(path: Path, pattern: re.Pattern | None = None) -> tuple[str | None, str | None]:
    """The subject and session a recording's path names (see the module docstring), each None if unknown."""
    entities = dict(_BIDS_ENTITY.findall(str(path)))
    if "sub" in entities:
        return entities["sub"], entities.get("ses")
    if pattern is not None:
        match = pattern.search(path.as_posix())
        if match:
            found = match.groupdict()
            return found.get("subject"), found.get("session")
    stem = path.name.split(".")[0]
    match = TUH_NAME.match(stem)
    if match:
        return match["subject"], match["session"]
    return None, None


def _is_recording(path: Path, suffixes: tuple[str, ...]) -> bool:
    return (path.name.lower().endswith(suffixes) and not path.name.upper().startswith(NOT_RECORDINGS)
            and (path.is_file() or path.name.lower().endswith(MNE_FOLDER_SUFFIXES))
            and not any(q.name.lower().endswith(MNE_FOLDER_SUFFIXES) for q in path.parents))


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, globs expanded (``'data/**/*.edf'``, recursive), and the recordings inside given folders
    (recursively, sorted; an MFF or CTF folder is one recording); a path that does not exist stays, to be reported
    as skipped.

    Raises:
        SourceError: a glob that matches nothing.
    """
    suffixes = recording_suffixes()
    out: list[Path] = []
    for given in paths:
        text = str(given)
        if not os.path.exists(text) and _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            matches = [m for m in matches if _is_recording(m, suffixes)]
            if not matches:
                raise SourceError(f"no recordings match {text!r}")
            out += matches
            continue
        path = Path(given)
        if path.is_dir() and not path.name.lower().endswith(MNE_FOLDER_SUFFIXES):
            out += sorted(p for p in path.rglob("*") if _is_recording(p, suffixes))
        else:
            out.append(path)
    return out


def is_bids_root(path: Path) -> bool:
    """A folder with a BIDS ``dataset_description.json`` and ``sub-*`` folders."""
    return path.is_dir() and (path / "dataset_description.json").is_file() and any(path.glob("sub-*"))


def bids_items(root: Path) -> list[CorpusItem]:
    """The EEG recordings of the BIDS dataset ``root`` (mne-bids finds them), with their subjects and sessions."""
    from mne_bids import find_matching_paths  # (mne-bids imports MNE: only for BIDS sources)

    extensions = [".edf", ".bdf", ".vhdr", ".set", ".fif", ".cnt", ".mff"]
    found = find_matching_paths(root, datatypes="eeg", suffixes="eeg", extensions=extensions)
    items = []
    for bids_path in sorted(found, key=lambda b: str(b.fpath)):
        path = Path(bids_path.fpath).absolute()
        items.append(CorpusItem(str(path), path=path, subject=bids_path.subject, session=bids_path.session,
                                dataset=root.name))
    if not items:
        raise SourceError(f"the BIDS dataset {root} holds no EEG recordings (sub-*/[ses-*/]eeg/*_eeg.*)")
    return items


def file_items(paths: Sequence[str | os.PathLike], subject_pattern: str | None = None) -> list[CorpusItem]:
    """The recordings that ``paths`` name (files, folders, globs; a BIDS root through :func:`bids_items`).

    Raises:
        SourceError: a glob that matches nothing, a BIDS dataset without EEG, a bad ``subject_pattern``.
    """
    try:
        pattern = re.compile(subject_pattern) if subject_pattern else None
    except re.error as e:
        raise SourceError(f"--subject-pattern {subject_pattern!r} is not a regular expression: {e}") from e
    if pattern is not None and not {"subject", "session"} & set(pattern.groupindex):
        raise SourceError(f"--subject-pattern {subject_pattern!r} has no group named subject or session "
                          "(write (?P<subject>...))")
    items: list[CorpusItem] = []
    for given in paths:
        path = Path(given)
        if is_bids_root(path):
            items += bids_items(path)
            continue
        for found in expand_paths([given]):
            absolute = found.absolute()
            subject, session = subject_and_session(absolute, pattern)
            items.append(CorpusItem(str(absolute), path=absolute, subject=subject, session=session))
    return items


def moabb_dataset_names() -> list[str]:
    """The datasets MOABB knows, by class name."""
    from moabb.datasets.utils import dataset_list  # (MOABB: only for MOABB sources)

    return sorted(d.__name__ for d in dataset_list)


def moabb_dataset(name: str):
    """MOABB's dataset ``name`` (its class name, e.g. ``BNCI2014_001``), made.

    Raises:
        SourceError: MOABB is not installed, or it has no such dataset (the closest names are given).
    """
    try:
        from moabb import datasets
    except ImportError as e:
        raise SourceError("MOABB datasets need MOABB: pip install moabb") from e
    if name == "FakeDataset":  # (MOABB's own test dataset: made up, no network)
        from moabb.datasets.fake import FakeDataset

        return FakeDataset(n_sessions=2, n_runs=1, n_subjects=3, duration=30, seed=0)
    known = moabb_dataset_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; known: {', '.join(known[:8])} ..."
        raise SourceError(f"MOABB has no dataset {name!r}{hint}")
    return getattr(datasets, name)()


def moabb_items(names: Iterable[str], subjects: Sequence[int] | None = None) -> list[CorpusItem]:
    """One item per subject of each MOABB dataset ``names`` (all subjects, or those in ``subjects``).

    Raises:
        SourceError: a dataset MOABB does not have (with the closest names).
    """
    items = []
    for name in names:
        dataset = moabb_dataset(name)
        chosen = [s for s in dataset.subject_list if subjects is None or s in subjects]
        items += [CorpusItem(f"moabb:{name}:{s}", moabb=(name, int(s)), subject=f"{name}-{s}", dataset=name)
                  for s in chosen]
    return items
