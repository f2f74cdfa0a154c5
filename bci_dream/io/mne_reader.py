"""Read everything :func:`mne.io.read_raw` reads (FIF, EDF, BDF, BrainVision, EEGLAB, GDF, ...).

* EEG channels only: channels typed EEG, minus names that are clearly not scalp EEG (``DIG ...``,
  ``TRIG``, ``ECG``, ``EOG`` ... when the file typed everything as EEG). EDF/BDF are read with
  ``infer_types=True`` so that ``EEG Fp1`` / ``EOG ...`` / ``ECG ...`` labels get their types (and
  ``EEG Fp1`` becomes ``Fp1``). When no channel is typed EEG, channels whose names are 10-05 sites
  (after :func:`~bci_dream.signal.montage.normalise_channel_name`) are taken instead.
* Channels the file marks bad (``info['bads']``) are left out, with a warning.
* Volts → microvolts.
* Markers: annotations (onset relative to the first sample) and the events of one stim channel
  (``STI 014``, ``Status``, ``Trigger``, ``DIG DTRIG`` ...; :func:`mne.find_events`, every change
  to a non-zero value; a level already present at the first sample is not an event), text = the
  event code. ``times`` start at 0 at the first sample.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError, first_line
from bci_dream.core.types import Marker
from bci_dream.io.recording import Recording
from bci_dream.signal.montage import CANONICAL_128, normalise_channel_name

log = logging.getLogger(__name__)

#: Labels of channels that carry triggers, whatever type the file gives them.
_TRIGGER_NAME = re.compile(r"^(?:STI\s*\d+|STI\d+|STATUS|TRIGGER|TRIG|DIG\s*DTRIG|DTRIG|EVENT|MARKER)$", re.IGNORECASE)
#: Labels of channels typed EEG by formats that cannot say otherwise, but that are not scalp EEG.
_NOT_EEG_NAME = re.compile(r"^(?:DIG|TRIG|STI|STATUS|EVENT|MARK|ECG|EKG|EOG|VEOG|HEOG|EMG|RESP|PHOTIC|SPO2|"
                           r"PULSE|BATT|ACC|GYRO)", re.IGNORECASE)
#: Stim channel names preferred when a file has several (a combined channel over single-bit ones).
_PREFERRED_STIM = ("sti 014", "sti101", "status", "trigger")
_CANONICAL_LOWER = {n.lower() for n in CANONICAL_128}
#: µV beyond which a value cannot be a potential an amplifier measured (1 V; an EEG amplifier rails at a fraction).
IMPOSSIBLE_UV = 1e6
#: What a format needs beside the file MNE is given.
_COMPANIONS = {".vhdr": " (BrainVision needs its .vmrk and .eeg beside the .vhdr)",
               ".set": " (EEGLAB may need its .fdt beside the .set)"}


def read_mne(path: str | Path):
    """Read ``path`` with MNE and return a :class:`~bci_dream.io.recording.Recording` in µV."""
    path = Path(path)
    try:
        import mne
    except ImportError as e:
        raise RecordingError(f"reading {path} needs MNE-Python: pip install mne") from e
    suffix = path.suffix.lower()
    kwargs = {"infer_types": True} if suffix in (".edf", ".bdf") else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = mne.io.read_raw(path, preload=True, verbose="warning", **kwargs)
        except Exception as e:  # MNE raises many kinds on damaged or unsupported files
            message = str(e).splitlines()[0] if str(e).strip() else "its header contradicts itself"
            companions = _COMPANIONS.get(suffix, "")
            raise RecordingError(f"cannot read {path} with MNE ({type(e).__name__}: {message}); the file is damaged "
                                 f"or incomplete{companions}: choose another file") from e
    for w in caught:  # (a truncated EDF, a header that disagrees with the data: MNE reads on and says so)
        if issubclass(w.category, RuntimeWarning) or "mne" in w.filename:
            log.warning("%s: %s", path.name, first_line(w.message))
    return recording_from_raw(raw, path)


def recording_from_raw(raw, path: str | Path, source_format: str | None = None):
    """An MNE ``Raw`` (loaded) as a :class:`~bci_dream.io.recording.Recording` in µV, EEG channels only (see the
    module docstring); ``path`` names it (a file, or where a dataset's run came from), ``source_format`` defaults
    to ``mne-`` and the path's suffix.

    Raises:
        RecordingError: it holds no EEG channels or no samples.
    """
    import mne

    path = Path(path)
    names = list(raw.ch_names)
    types = raw.get_channel_types()
    retype = {n: "stim" for n, t in zip(names, types) if t != "stim" and _TRIGGER_NAME.match(n.strip())}
    if retype:
        raw.set_channel_types(retype, verbose="error")
        types = raw.get_channel_types()
    stim_names = [n for n, t in zip(names, types) if t == "stim"]

    eeg_idx = [i for i, (n, t) in enumerate(zip(names, types)) if t == "eeg" and not _NOT_EEG_NAME.match(n.strip())]
    if not eeg_idx:
        eeg_idx = [i for i, (n, t) in enumerate(zip(names, types))
                   if t != "stim" and normalise_channel_name(n).lower() in _CANONICAL_LOWER]
        if eeg_idx:
            log.info("%s: no channel is typed EEG; taking the %d channels with 10-20 names", path.name, len(eeg_idx))
    if not eeg_idx:
        raise RecordingError(f"{path} holds no EEG channels (channels: {', '.join(names[:12])}"
                             f"{' ...' if len(names) > 12 else ''}); it cannot be used for EEG training")
    bads = set(raw.info["bads"])
    if any(names[i] in bads for i in eeg_idx):
        marked = [names[i] for i in eeg_idx if names[i] in bads]
        eeg_idx = [i for i in eeg_idx if names[i] not in bads]
        if not eeg_idx:
            raise RecordingError(f"{path}: every EEG channel is marked bad in the file ({', '.join(marked[:8])}"
                                 f"{' ...' if len(marked) > 8 else ''}); unmark the usable ones (raw.info['bads'])")
        log.warning("%s: leaving out %d channel(s) the file marks bad: %s", path.name, len(marked),
                    ", ".join(marked))
    sfreq = float(raw.info["sfreq"])
    data = raw.get_data(picks=eeg_idx).T * 1e6  # volts → µV, [n, C]
    n = data.shape[0]
    if n == 0:
        raise RecordingError(f"{path} holds no samples")
    impossible = ~(np.abs(data) <= IMPOSSIBLE_UV)  # (NaN and inf too)
    if impossible.any():
        log.warning("%s: %d values are missing (NaN) or impossible (beyond %g V: damaged bytes); kept as missing "
                    "samples", path.name, int(impossible.sum()), IMPOSSIBLE_UV * 1e-6)
        data[impossible] = np.nan

    markers: list[Marker] = []
    ann = raw.annotations
    if len(ann):
        # Onsets count from orig_time (meas_date) when set, else from sample 0 of the acquisition: either way
        # they include raw.first_time, the first sample's time (non-zero in a cropped or MaxFiltered file).
        shift = raw.first_time
        for onset, desc in zip(ann.onset, ann.description):
            markers.append(Marker(float(onset - shift), str(desc), "annotations"))
    stim = _choose_stim(stim_names)
    if stim is not None:
        try:
            events = mne.find_events(raw, stim_channel=stim, shortest_event=1, consecutive=True,
                                     verbose="error")
        except Exception as e:  # a weird stim channel must not cost the recording
            log.warning("%s: cannot read events from stim channel %s: %s", path.name, stim, e)
            events = np.zeros((0, 3), np.int64)
        for sample, _, code in events:
            markers.append(Marker(float((sample - raw.first_samp) / sfreq), str(int(code)), stim))

    eeg_names = tuple(names[i] for i in eeg_idx)
    kept = set(eeg_idx)
    positions, frame = _positions(raw, eeg_names)
    fmt = source_format or f"mne-{path.suffix.lower().lstrip('.') or 'raw'}"
    log.info("%s: %d EEG channels of %d, %g Hz, %.1f s, %d markers", path.name, len(eeg_names), len(names),
             sfreq, n / sfreq, len(markers))
    return Recording(
        data=data.astype(np.float32), sfreq=sfreq, ch_names=eeg_names, markers=markers,
        times=np.arange(n, dtype=np.float64) / sfreq, path=path, source_format=fmt,
        info={"stim_channel": stim, "dropped_channels": [c for i, c in enumerate(names) if i not in kept],
              **({"positions": positions, "positions_frame": frame} if positions else {})},
    )


def _positions(raw, ch_names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], str]:
    """Electrode positions the file stores (FIF digitisation, EEGLAB chanlocs, BrainVision coordinates), metres,
    by channel name, and their coordinate frame; empty when it stores none."""
    try:
        montage = raw.get_montage()
    except Exception:  # noqa: BLE001 - odd digitisation: no positions
        return {}, "unknown"
    if montage is None:
        return {}, "unknown"
    pos = montage.get_positions()
    wanted = set(ch_names)
    found = {k: np.asarray(v, float) for k, v in pos["ch_pos"].items()
             if k in wanted and v is not None and np.all(np.isfinite(v)) and np.linalg.norm(v) > 0}
    return found, str(pos.get("coord_frame") or "unknown")


def _choose_stim(stim_names: list[str]) -> str | None:
    if not stim_names:
        return None
    lower = {n.lower(): n for n in stim_names}
    for name in _PREFERRED_STIM:
        if name in lower:
            return lower[name]
    return stim_names[0]
