"""Export a recording to the formats other EEG tools read: EDF, BDF (through edfio) and FIF, with MNE's writers.

The samples go out as recorded (µV in, volts in MNE), at the nominal rate, with the channels named as the
recording (or a naming) says; markers become annotations (zero duration, onset from the first sample); stretches
where samples never arrived become ``BAD_gap`` annotations (EDF and FIF have no timestamps per sample).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from bci_dream.core.errors import BciDreamError, first_line
from bci_dream.core.files import write_atomically
from bci_dream.io.readers import read_recording
from bci_dream.io.recording import Recording
from bci_dream.signal.channels import ChannelNaming
from bci_dream.signal.gaps import gap_threshold_s

log = logging.getLogger(__name__)

#: Suffix → MNE's name for the format.
FORMATS = {".edf": "edf", ".bdf": "bdf", ".fif": "fif", ".fif.gz": "fif"}


class ExportError(BciDreamError):
    """The recording cannot be written in the format asked for."""


def export_format(path: str | os.PathLike) -> str:
    """MNE's name of the format of ``path`` from its suffix.

    Raises:
        ExportError: a suffix bci-dream cannot write (the ones it can are named).
    """
    name = Path(path).name.lower()
    for suffix, fmt in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ExportError(f"cannot export to {Path(path).name}: bci-dream writes .edf, .bdf and .fif (give -o with one "
                      "of those suffixes)")


def raw_from_recording(recording: Recording, *, annotations: bool = True):
    """An ``mne.io.RawArray`` of ``recording``: EEG channels in volts; with ``annotations``, its markers (zero
    duration) and gaps (``BAD_gap``) as annotations, onsets in seconds from the first sample."""
    import mne

    names = _unique(recording.ch_names)
    info = mne.create_info(names, float(recording.sfreq), ch_types="eeg")
    raw = mne.io.RawArray(recording.data.T.astype(np.float64) * 1e-6, info, verbose="error")
    if not annotations:
        return raw
    at = file_seconds(recording, [m.timestamp for m in recording.markers])
    keep = np.isfinite(at)
    onsets = [float(x) for x in at[keep]]
    texts = [str(m.text) for m, ok in zip(recording.markers, keep) if ok]
    durations = [0.0] * len(onsets)
    for start, length in gap_annotations(recording):
        onsets.append(start)
        durations.append(length)
        texts.append("BAD_gap")
    if onsets:
        raw.set_annotations(mne.Annotations(onsets, durations, texts), verbose="error")
    return raw


def file_seconds(recording: Recording, times) -> np.ndarray:
    """Where events at LSL times ``times`` fall in a file without per-sample timestamps (EDF, FIF): seconds from the
    first sample in the file's own clock (sample index / rate), so that an event after a gap stays on its samples;
    NaN for times outside the recording."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if recording.n_samples == 0 or t.size == 0:
        return np.full(t.shape, np.nan)
    nearest = recording.index_at(t)
    within = np.clip((t - recording.times[nearest]) * recording.sfreq, -0.5, 0.5)  # (the part of a sample)
    period = 1.0 / recording.sfreq
    inside = (t >= recording.times.min() - period / 2) & (t <= recording.times.max() + period / 2)
    return np.where(inside, np.maximum(nearest + within, 0.0) / recording.sfreq, np.nan)


def _unique(names) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}-{count}")
    return out


def gap_annotations(recording: Recording) -> list[tuple[float, float]]:
    """(onset in s from the first sample, seconds missing) of each gap in the recording's timestamps."""
    if recording.n_samples < 2:
        return []
    period = 1.0 / recording.sfreq
    steps = np.diff(recording.times)
    where = np.flatnonzero(steps > gap_threshold_s(recording.sfreq))
    return [(float((i + 1) * period), float(steps[i] - period)) for i in where]


def export_recording(source: str | os.PathLike, output: str | os.PathLike, *, stream: str | None = None,
                     naming: ChannelNaming | None = None, overwrite: bool = False) -> Path:
    """Write the recording ``source`` (any format :func:`read_recording` reads) to ``output`` (.edf, .bdf, .fif).

    Raises:
        ExportError: an output format bci-dream cannot write, an output that exists (without ``overwrite``), or
            a writer that fails (its reason in one line).
        RecordingError: the source cannot be read.
    """
    output = Path(output)
    fmt = export_format(output)
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists; pass --overwrite to replace it")
    recording = read_recording(source, stream=stream, naming=naming)
    missing = int(np.count_nonzero(~np.isfinite(recording.data)))
    if missing and fmt != "fif":
        raise ExportError(f"{Path(source).name} holds {missing} missing (NaN) values, which {fmt.upper()} cannot "
                          "store; export to .fif, which can")
    raw = raw_from_recording(recording)

    def write(partial: Path) -> None:
        if fmt == "fif":
            raw.save(partial, overwrite=True, verbose="error")
        else:
            import mne

            mne.export.export_raw(partial, raw, fmt=fmt, overwrite=True, verbose="error")

    try:
        write_atomically(output, write)  # (nothing half-written is left behind)
    except ImportError as e:
        raise ExportError(f"writing {fmt.upper()} needs the '{e.name or 'edfio'}' package: pip install edfio") from e
    except UnicodeError as e:
        bad = e.object[e.start:e.end] if isinstance(e, UnicodeEncodeError) else ""
        raise ExportError(f"cannot write {output}: a channel name or marker holds a character {fmt.upper()} cannot "
                          f"store ({bad!r}); rename the channels with --channels NAMES") from e
    except (OSError, ValueError, RuntimeError) as e:
        raise ExportError(f"cannot write {output}: {first_line(e)}") from e
    log.info("exported %s to %s (%d channels, %g Hz, %.1f s, %d annotations)", Path(source).name, output,
             recording.n_channels, recording.sfreq, recording.duration, len(raw.annotations))
    return output
