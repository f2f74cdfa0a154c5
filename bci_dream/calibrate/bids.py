"""A calibration session as EEG-BIDS, written by mne-bids: one run per recording part, the trials as events with
the image each one showed, the stimuli copied under ``stimuli/``.

Layout (``ROOT/sub-<subject>/ses-<session>/eeg/``)::

    sub-s01_ses-20261201T101500Z_task-calibration_run-01_eeg.edf     the part's EEG (EDF, through edfio)
    ..._run-01_events.tsv      onset, duration, trial_type (the image's class), value and sample (mne-bids'),
                               marker (the text sent at onset), stim_file (the image, relative to ROOT/stimuli),
                               and BAD_gap rows where samples never arrived
    ..._channels.tsv, ..._eeg.json, ..._electrodes.tsv (10-05 sites), dataset_description.json, participants.tsv

BIDS labels are letters and digits only: a subject ``s_01`` becomes ``s01`` (said in the log).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np

from bci_dream.calibrate.session import CalibrationSession, SessionError, ShownTrial
from bci_dream.core.errors import BciDreamError, first_line
from bci_dream.devices import get_profile
from bci_dream.io.export import file_seconds, gap_annotations, raw_from_recording
from bci_dream.io.readers import read_recording
from bci_dream.signal.channels import ChannelNaming, standard_1005_montage

log = logging.getLogger(__name__)

TASK = "calibration"


class BidsExportError(BciDreamError):
    """The session cannot be written as BIDS."""


def bids_label(text: str) -> str:
    """``text`` as a BIDS label (letters and digits only); :class:`BidsExportError` if nothing is left."""
    label = re.sub(r"[^A-Za-z0-9]", "", text)
    if not label:
        raise BidsExportError(f"'{text}' has no letters or digits to make a BIDS label of; pass --subject ID")
    return label


def export_session_bids(folder: str | os.PathLike, root: str | os.PathLike, *, subject: str | None = None,
                        task: str = TASK, naming: ChannelNaming | None = None, line_freq: float | None = None,
                        overwrite: bool = False) -> list[Path]:
    """Write the calibration session in ``folder`` under the BIDS root ``root``; return the EEG files written.

    Args:
        folder: a session folder (``SUBJECT/sessions/<started>/``).
        root: the BIDS dataset's root (created if missing; other subjects and sessions in it are kept).
        subject: the BIDS subject label (default: the session's subject, made a label).
        task: the BIDS task label.
        naming: channel names for the recordings (default: their own, or a BIDS sidecar next to them).
        line_freq: mains frequency in Hz for ``PowerLineFrequency`` (default: the device profile's notch).
        overwrite: replace this session's files if they exist.

    Raises:
        BidsExportError: nothing to export, files that exist (without ``overwrite``), or mne-bids failing.
        SessionError, RecordingError: the session or a recording cannot be read.
    """
    try:
        import mne_bids
    except ImportError as e:
        raise BidsExportError("writing BIDS needs the 'mne-bids' package: pip install mne-bids") from e
    session = CalibrationSession.load(folder)
    if not session.parts:
        raise SessionError(f"{session.folder} has no recording yet; nothing to export")
    sub = bids_label(subject or session.subject)
    ses = bids_label(session.folder.name)
    task = bids_label(task)
    if sub != (subject or session.subject):
        log.info("BIDS subject label: %s (from '%s')", sub, subject or session.subject)
    root = Path(root)
    stimuli = Path(session.stimuli)
    trials = session.usable_trials()
    line_freq = line_freq if line_freq is not None else _profile_notch(session.device)
    written = []
    for number, part in enumerate(session.parts, 1):
        recording = read_recording(session.folder / part, naming=naming)
        raw = raw_from_recording(recording, annotations=False)
        raw.info["line_freq"] = line_freq
        mine = [t for t in trials if t.part == number]
        onsets = file_seconds(recording, [t.frame_time for t in mine])
        _set_events(raw, mine, onsets, gap_annotations(recording))
        raw.set_montage(standard_1005_montage(), on_missing="ignore", verbose="error")
        path = mne_bids.BIDSPath(subject=sub, session=ses, task=task, run=f"{number:02d}", datatype="eeg",
                                 root=root)
        try:
            out = mne_bids.write_raw_bids(raw, path, format="EDF", allow_preload=True, overwrite=overwrite,
                                          verbose="error")
        except FileExistsError as e:
            raise BidsExportError(f"{path.basename} exists in {root}; pass --overwrite to replace it") from e
        except (OSError, ValueError, RuntimeError) as e:
            raise BidsExportError(f"mne-bids cannot write {path.basename}: {first_line(e)}") from e
        events = out.copy().update(suffix="events", extension=".tsv")
        _add_stim_files(events.fpath, mine, onsets, stimuli)
        if session.impedance:  # (mne-bids names the file with the coordinate space it chose: found, not built)
            for electrodes in sorted(Path(out.fpath).parent.glob(f"sub-{sub}_ses-{ses}*_electrodes.tsv")):
                _add_impedance(electrodes, session.impedance)
        written.append(out.fpath)
        log.info("BIDS: %s (%d trials)", out.fpath, len(mine))
    _copy_stimuli(trials, stimuli, root / "stimuli")
    return written


def _profile_notch(device: str) -> float | None:
    try:
        return get_profile(device).notch
    except BciDreamError:
        return None


def _set_events(raw, trials: list[ShownTrial], onsets: np.ndarray, gaps: list[tuple[float, float]]) -> None:
    """Trials (at ``onsets``, s in the file; NaN: outside it) as annotations named by their class (mne-bids writes
    ``trial_type`` from them), and the gaps."""
    import mne

    keep = np.isfinite(onsets)
    names = [t.class_name for t, ok in zip(trials, keep) if ok] + ["BAD_gap"] * len(gaps)
    starts = [float(x) for x in onsets[keep]] + [start for start, _ in gaps]
    durations = [0.0] * int(keep.sum()) + [length for _, length in gaps]
    raw.set_annotations(mne.Annotations(starts, durations, names), verbose="error")


def _add_stim_files(path: Path, trials: list[ShownTrial], onsets: np.ndarray, stimuli: Path) -> None:
    """Add ``marker`` (the text sent at onset) and ``stim_file`` (the image, relative to ``ROOT/stimuli``) to the
    events file."""
    rows = _read_tsv(path)
    if not rows:
        return
    for row in rows:
        row["marker"] = row["stim_file"] = "n/a"
        if row.get("trial_type", "").startswith("BAD_") or not onsets.size:
            continue
        distance = np.abs(onsets - float(row["onset"]))  # (NaN for trials outside the file: never the nearest)
        k = int(np.nanargmin(distance)) if np.isfinite(distance).any() else -1
        if k >= 0 and distance[k] < 0.01:
            row["marker"] = trials[k].marker
            row["stim_file"] = _stimulus_name(Path(trials[k].image), stimuli).as_posix()
    _write_tsv(path, rows)


def _add_impedance(path: Path, impedance: dict) -> None:
    """Fill ``electrodes.tsv``'s ``impedance`` column (kΩ, as BIDS asks) from the session's measurement."""
    rows = _read_tsv(path)
    kohm = impedance.get("kohm", {})
    for row in rows:
        value = kohm.get(row.get("name", ""))
        row["impedance"] = f"{value:g}" if value is not None else "n/a"
    if rows:
        _write_tsv(path, rows)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _write_tsv(path: Path, rows: list[dict[str, str]]) -> None:
    """``rows`` (at least one) as a BIDS TSV, the columns those of the first row."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0].keys()], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _stimulus_name(image: Path, stimuli: Path) -> Path:
    """The image's path under ``ROOT/stimuli``: relative to the stimulus set's folder (its name first)."""
    try:
        return Path(stimuli.name) / image.relative_to(stimuli)
    except ValueError:
        return Path(image.name)


def _copy_stimuli(trials: list[ShownTrial], stimuli: Path, target: Path) -> None:
    for image in sorted({Path(t.image) for t in trials}):
        dest = target / _stimulus_name(image, stimuli)
        if dest.exists():
            continue
        if not image.is_file():
            log.warning("BIDS: stimulus %s is missing; its events name it but it is not copied", image)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, dest)
