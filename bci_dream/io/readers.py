"""One reader layer for every recording format: ``read_recording(path)`` → :class:`~bci_dream.io.recording.Recording`.

Whatever the file, the result is the same: float32 samples [n, channels] in microvolts (time-major,
like live chunks), the sampling rate, channel names, markers and one timestamp per sample.

Formats, chosen by suffix and, for text files, by sniffing the first lines:

=============================  ===============================  ==========================================
format                          suffix / signature              ``times``
=============================  ===============================  ==========================================
XDF (LabRecorder)               ``.xdf``, ``.xdfz``, ``XDF:``     the file's LSL timestamps (dejittered)
MNE-readable                    ``.fif .edf .bdf .vhdr .set      ``arange(n) / sfreq`` (start 0)
                                .gdf .cnt .mff`` (+ ``.fif.gz``)
OpenBCI GUI text (v3-v6, RAW,   ``%`` header lines               file timestamps relative to the first
SD-converted)                                                    when sane, else sample counter / sfreq
BrainFlow ``write_file``        numeric rows, no header          timestamp row relative to the first
muselsl / Mind Monitor CSV      ``timestamps,TP9,...`` header    the file's LSL timestamps (as given; ms → s),
                                (``TimeStamp,...,RAW_TP9,...``)   Mind Monitor's date-times from the first row
=============================  ===============================  ==========================================

Markers carry timestamps in the same time base as ``times``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from bci_dream.core.errors import RecordingError
from bci_dream.core.types import Marker, unit_scale_to_microvolts
from bci_dream.io.brainflow_csv import read_brainflow_csv
from bci_dream.io.channels_file import bids_sidecar, read_channels_file
from bci_dream.io.mne_reader import read_mne
from bci_dream.io.muse_csv import TIME_COLUMNS, read_muse_csv
from bci_dream.io.openbci_reader import read_openbci
from bci_dream.io.recording import AuxStream, Recording
from bci_dream.io.text_table import column_separator
from bci_dream.io.xdf_reader import EegStream, MarkerStream, XdfSession, read_xdf
from bci_dream.signal.channels import ChannelNaming, naming_from_positions
from bci_dream.signal.montage import CANONICAL_128, normalise_channel_name

log = logging.getLogger(__name__)
_CANONICAL = frozenset(CANONICAL_128)

#: Suffixes handed to :func:`mne.io.read_raw` before looking inside the file (the common EEG formats).
MNE_SUFFIXES = (".fif", ".fif.gz", ".edf", ".bdf", ".vhdr", ".set", ".gdf", ".cnt", ".mff", ".nedf", ".nxe", ".cdt",
                ".cdt.cef", ".cdt.dpa", ".mefd")
#: MNE suffixes that also name companion or generic files (BrainVision's .eeg data beside its .vhdr, MATLAB
#: files, ...): read when given, not picked up when a folder of recordings is searched.
_GENERIC_SUFFIXES = (".eeg", ".dat", ".data", ".bin", ".mat", ".hdr", ".lay", ".cef", ".dap", ".asc")
#: Formats that are folders (EGI MFF, CTF).
MNE_FOLDER_SUFFIXES = (".mff", ".ds")
XDF_SUFFIXES = (".xdf", ".xdfz")
SUPPORTED = (".xdf, everything mne.io.read_raw reads (.fif .edf .bdf .vhdr .set .gdf .cnt .mff .nedf ...), "
             "OpenBCI GUI .txt, BrainFlow .csv, muselsl and Mind Monitor .csv")


def mne_suffixes() -> tuple[str, ...]:
    """Every suffix :func:`mne.io.read_raw` reads, longest first (asked of MNE; the common ones if it cannot say)."""
    try:
        from mne.io._read_raw import _get_supported  # (private: MNE's own table of readers)

        found = set(_get_supported())
    except Exception:  # noqa: BLE001 - another MNE: the formats named here
        found = set()
    return tuple(sorted(found | set(MNE_SUFFIXES), key=len, reverse=True))


def recording_suffixes() -> tuple[str, ...]:
    """Suffixes of files a folder of recordings is searched for (``bci-dream pretrain DATA/``)."""
    return tuple(s for s in dict.fromkeys((*XDF_SUFFIXES, *mne_suffixes(), ".txt", ".csv"))
                 if s not in _GENERIC_SUFFIXES)


def _unsupported(path: Path, why: str = "") -> RecordingError:
    detail = f" ({why})" if why else ""
    return RecordingError(f"{path} is not a recording bci-dream can read{detail} (supported: {SUPPORTED})")


def _text_head(path: Path, n_lines: int = 12) -> list[str] | None:
    """The first non-empty lines of ``path`` if it looks like text, else None."""
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    if not raw or b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[:n_lines]


def sniff_format(path: str | os.PathLike) -> str:
    """Name of the reader for ``path``: ``"xdf"``, ``"mne"``, ``"openbci"``, ``"muselsl"``, ``"brainflow"``.

    Raises:
        RecordingError: the file is missing or in no supported format.
    """
    path = Path(path)
    if not path.exists():
        raise RecordingError(f"recording {path} does not exist; check the path")
    name = path.name.lower()
    if path.is_dir():
        if name.endswith(MNE_FOLDER_SUFFIXES):
            return "mne"
        raise RecordingError(f"{path} is a folder, not a recording; pass the recording files inside it")
    if path.stat().st_size == 0:
        raise RecordingError(f"{path} is empty (0 bytes): the recording was not saved; choose another file")
    if name.endswith(XDF_SUFFIXES):
        return "xdf"
    if name.endswith(MNE_SUFFIXES):
        return "mne"
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from e
    if magic.startswith(b"XDF:"):
        return "xdf"
    if magic == b"\xffBIOSEMI" or magic == b"0       ":
        return "mne"  # BDF / EDF without their usual suffix
    lines = _text_head(path)
    if lines == []:
        raise _unsupported(path, "empty file")
    if lines is None:
        if name.endswith(mne_suffixes()):
            return "mne"
        raise _unsupported(path, "binary content of unknown type")
    first = lines[0]
    if first.startswith("%"):
        return "openbci"
    header = [c.strip().lower() for c in first.split(column_separator(first))]
    if header and header[0] in TIME_COLUMNS and len(header) > 1:
        return "muselsl"
    if _numeric_rows(lines):
        return "brainflow"
    if header and header[0].startswith("sample index"):
        return "openbci"  # a v6 file whose % header was removed
    if name.endswith(mne_suffixes()) and not name.endswith((".txt", ".csv")):
        return "mne"  # a text format of MNE's (e.g. EyeLink .asc); .txt is left to the text readers above
    raise _unsupported(path, "unrecognised text content")


def _numeric_rows(lines: list[str]) -> bool:
    sep = "\t" if "\t" in lines[0] else ","
    try:
        counts = {len([float(v) for v in ln.split(sep) if v.strip()]) for ln in lines[: min(len(lines), 5)]}
    except ValueError:
        return False
    return len(counts) == 1 and counts.pop() >= 2


def read_recording(path: str | os.PathLike, *, stream: str | None = None, board: str | int | None = None,
                   naming: ChannelNaming | None = None) -> Recording:
    """Read any supported recording into a :class:`Recording` (µV, time-major), its channels named.

    Channel names come from ``naming`` when given; else from a BIDS ``*_channels.tsv`` / ``*_electrodes.tsv``
    beside the file; else, when none of the file's labels is a 10-05 site, from the electrode positions the file
    stores (nearest canonical site); else the file's own labels. ``info["channel_naming"]`` and
    ``info["file_ch_names"]`` say what was done.

    Args:
        path: the recording file.
        stream: XDF only: name or type of the EEG stream (default: type EEG, else the fastest).
        board: BrainFlow CSV only: the ``BoardIds`` member that recorded it (name or number);
            default: the synthetic board, or the board whose row count matches (logged).
        naming: what the channels are (:func:`bci_dream.signal.channels.parse_channel_list`,
            :func:`bci_dream.io.channels_file.read_channels_file` ...).

    Raises:
        RecordingError: missing file, unknown format or unreadable content; one line naming the
            file, the problem and what to do.
    """
    path = Path(path)
    kind = sniff_format(path)
    try:
        if kind == "xdf":
            recording = _read_xdf(path, stream)
        elif kind == "mne":
            recording = read_mne(path)
        elif kind == "openbci":
            recording = read_openbci(path)
        elif kind == "muselsl":
            recording = read_muse_csv(path)
        else:
            recording = read_brainflow_csv(path, board=board)
    except RecordingError:
        raise
    except (OSError, ValueError, IndexError, KeyError, UnicodeError) as e:
        raise RecordingError(f"cannot read {path} as {kind}: {type(e).__name__}: {e}; the file may be damaged") from e
    return name_channels(recording, naming)


def name_channels(recording: Recording, naming: ChannelNaming | None = None) -> Recording:
    """``recording`` with its channels named (see :func:`read_recording`), in place; returns it."""
    if naming is None:
        sidecar = bids_sidecar(recording.path)
        if sidecar is not None:
            naming = read_channels_file(sidecar)
        elif not any(normalise_channel_name(c) in _CANONICAL for c in recording.ch_names) and \
                recording.info.get("positions"):
            naming = naming_from_positions(recording.info["positions"], f"{recording.path.name}'s own positions",
                                           frame=recording.info.get("positions_frame", "unknown"))
    if naming is None:
        return recording
    recording.info["file_ch_names"] = list(recording.ch_names)
    recording.ch_names = naming.apply(recording.ch_names)
    recording.info["channel_naming"] = naming.to_dict()
    log.info("%s: %s", recording.path.name, naming.describe())
    return recording


def read_session(path: str | os.PathLike, *, stream: str | None = None) -> XdfSession:
    """Any supported recording as the streams a replay plays: an ``.xdf`` as it is (every stream, the damage found),
    any other format through :func:`read_recording` as one EEG stream in µV (its times start where the file's do)
    and one marker stream per marker source.

    Raises:
        RecordingError: as :func:`read_recording`.
    """
    path = Path(path)
    if sniff_format(path) == "xdf":
        return read_xdf(path, stream)
    rec = read_recording(path, stream=stream)
    eeg = EegStream(name=path.stem, stream_type="EEG", ch_names=rec.ch_names, units="uV", sfreq=rec.sfreq,
                    data=rec.data, timestamps=rec.times, source_id=str(path))
    by_stream: dict[str, list[Marker]] = {}
    for m in rec.markers:
        by_stream.setdefault(m.stream or "markers", []).append(m)
    markers = [MarkerStream(name, np.array([m.timestamp for m in ms], np.float64), [m.text for m in ms])
               for name, ms in by_stream.items()]
    aux = [EegStream(a.name, a.stream_type, a.ch_names, "", a.sfreq, a.data, a.times) for a in rec.aux]
    return XdfSession(path=path, eeg=eeg, markers=markers, aux=aux)


def _read_xdf(path: Path, stream: str | None) -> Recording:
    session = read_xdf(path, stream)
    eeg = session.eeg
    scale = unit_scale_to_microvolts(eeg.units)
    data = eeg.data.astype(np.float32, copy=True)
    if scale != 1.0:
        data *= np.float32(scale)
    markers = [Marker(float(t), text, ms.name) for ms in session.markers for t, text in zip(ms.timestamps, ms.texts)]
    return Recording(
        data=data, sfreq=eeg.sfreq, ch_names=eeg.ch_names, markers=markers, times=eeg.timestamps,
        path=path, source_format="xdf",
        info={"stream": eeg.name, "stream_type": eeg.stream_type, "units": eeg.units,
              "other_streams": list(session.other_streams)},
        aux=tuple(AuxStream(a.name, a.stream_type, a.ch_names, a.sfreq, a.data, a.timestamps) for a in session.aux),
    )
