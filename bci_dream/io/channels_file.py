"""Channels files: what the channels of a recording are, from a file beside it or given by the user.

One name per line; a BIDS ``*_channels.tsv`` (names in recording order, non-EEG types left out) or
``*_electrodes.tsv`` (positions, frame from its ``*_coordsystem.json``); any montage or digitisation file MNE reads
(``.elc``, ``.sfp``, ``.loc``/``.locs``, ``.bvef``, ``.hpts``, ``.elp``, ``.csd``, FIF ...): positions. Positions
become names through :func:`bci_dream.signal.channels.naming_from_positions`.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from bci_dream.core.errors import first_line
from bci_dream.signal.channels import (
    EEG_TYPES,
    ChannelNaming,
    ChannelNamingError,
    check_unique_sites,
    listing,
    naming_from_positions,
    ordered_naming,
)
from bci_dream.signal.montage import CANONICAL_128, normalise_channel_name

_CANONICAL = frozenset(CANONICAL_128)


def read_channels_file(path: str | os.PathLike) -> ChannelNaming:
    """A naming from a file: BIDS ``channels.tsv`` / ``electrodes.tsv``, a montage or digitisation file MNE reads,
    or a text file with one name per line (see the module docstring).

    Raises:
        ChannelNamingError: the file is missing or unreadable, names a non-site, or holds positions in another
            coordinate frame than MNE's head frame.
    """
    path = Path(path)
    if not path.is_file():
        raise ChannelNamingError(f"channels file {path} does not exist; give a list of names, a BIDS channels.tsv "
                                 "or electrodes.tsv, or a montage file")
    name = path.name.lower()
    try:
        if name.endswith(".tsv"):
            return _read_bids_tsv(path)
        if name.endswith((".txt", ".csv")) and not _looks_like_positions(path):
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
            items = [ln.split(",")[0].strip() for ln in lines if ln and not ln.startswith("#")]
            return ordered_naming(items, str(path))
        return _read_montage_file(path)
    except ChannelNamingError:
        raise
    except (OSError, UnicodeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise ChannelNamingError(f"cannot read channels file {path}: {type(e).__name__}: "
                                 f"{first_line(e)}") from e


def _looks_like_positions(path: Path) -> bool:
    """A text file whose rows carry three numbers (name x y z, or index theta radius ...)."""
    try:
        rows = [ln.replace(",", " ").split() for ln in path.read_text(encoding="utf-8-sig").splitlines()[:5]
                if ln.strip() and not ln.startswith("#")]
    except (OSError, UnicodeError):
        return False

    def numbers(row: list[str]) -> int:
        count = 0
        for cell in row:
            try:
                float(cell)
                count += 1
            except ValueError:
                pass
        return count

    return bool(rows) and all(numbers(r) >= 2 for r in rows)


def _read_bids_tsv(path: Path) -> ChannelNaming:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "name" not in rows[0]:
        raise ChannelNamingError(f"{path} has no 'name' column; a BIDS channels.tsv or electrodes.tsv starts with "
                                 "a header row 'name ...'")
    if {"x", "y", "z"} <= set(rows[0]):  # electrodes.tsv: positions by electrode name
        positions = {}
        for row in rows:
            try:
                xyz = np.array([float(row["x"]), float(row["y"]), float(row["z"])])
            except (TypeError, ValueError):
                continue  # ("n/a": an electrode without a position)
            if np.all(np.isfinite(xyz)):
                positions[row["name"]] = xyz
        frame = _bids_coordinate_frame(path)
        return naming_from_positions(positions, str(path), frame=frame)
    items = [row["name"] if (row.get("type") or "EEG").upper() in EEG_TYPES else None for row in rows]
    names: list[str | None] = []
    for item in items:  # (in channels.tsv an EEG channel's name may still be generic: such a row is left out)
        if item is None:
            names.append(None)
            continue
        site = normalise_channel_name(item)
        names.append(site if site in _CANONICAL else None)
    if not any(names):
        raise ChannelNamingError(f"{path} names no EEG channel with a 10-05 site (names: "
                                 f"{listing([r['name'] for r in rows])}); give positions in an electrodes.tsv")
    check_unique_sites([n for n in names if n], str(path))
    return ChannelNaming(str(path), ordered=tuple(names))


def _bids_coordinate_frame(electrodes_tsv: Path) -> str:
    """The coordinate system of a BIDS electrodes.tsv from its ``*_coordsystem.json`` sibling ("unknown" without)."""
    stem = electrodes_tsv.name[: -len("_electrodes.tsv")] if electrodes_tsv.name.endswith("_electrodes.tsv") else ""
    for candidate in sorted(electrodes_tsv.parent.glob("*_coordsystem.json")):
        if not stem or candidate.name.startswith(stem.split("_acq-")[0].split("_space-")[0]):
            try:
                system = str(json.loads(candidate.read_text()).get("EEGCoordinateSystem", "")).lower()
            except (OSError, ValueError):
                continue
            return {"captrak": "head", "eeglab": "head", "besa": "head", "other": "unknown"}.get(system, system)
    return "unknown"


def _read_montage_file(path: Path) -> ChannelNaming:
    import mne

    name = path.name.lower()
    if name.endswith((".fif", ".fif.gz")):
        montage = mne.channels.read_dig_fif(path)
    else:
        montage = mne.channels.read_custom_montage(path)
    pos = montage.get_positions()
    return naming_from_positions(pos["ch_pos"], str(path), frame=str(pos.get("coord_frame") or "unknown"))


def bids_sidecar(recording: str | os.PathLike) -> Path | None:
    """The BIDS ``*_channels.tsv`` (else ``*_electrodes.tsv``) beside a BIDS-named recording, or None.

    ``sub-01_ses-1_task-rest_run-1_eeg.edf`` looks for ``sub-01_ses-1_task-rest_run-1_channels.tsv`` and, per
    BIDS inheritance, for the same without ``run``, ``task`` and ``ses`` entities.
    """
    path = Path(recording)
    stem = path.name.split(".")[0]
    if not stem.startswith("sub-") or "_" not in stem:
        return None
    entities = stem.split("_")[:-1]  # (the last part is the modality suffix, e.g. "eeg")
    for kind in ("channels", "electrodes"):
        for k in range(len(entities), 0, -1):
            candidate = path.with_name("_".join(entities[:k]) + f"_{kind}.tsv")
            if candidate.is_file():
                return candidate
    return None
