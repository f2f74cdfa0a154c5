"""A window store: every encoder window of a corpus, preprocessed once, in float16 shards on disk.

Layout of a store folder::

    store.json          the format, and the window specification every shard was cut with (WindowSpec + hop)
    recordings.jsonl    one line per recording built (a journal: appended as each shard is complete; a later line
                        for the same source replaces or removes an earlier one; a torn last line is ignored)
    skipped.jsonl       one line per source left out, with the reason
    shards/*.safetensors  one per recording: ``windows`` float16 [N, n_mapped, T] (only the channels it has),
                        ``channels`` int64 [n_mapped] (their montage rows), ``t_end`` float64 [N] (seconds)

Shards are written under a temporary name and renamed when complete, and a recording enters the journal only after
its shard is on disk, so a build killed at any point, or stopped by a full disk, leaves a consistent store that the
same command resumes. The shards are safetensors files: any tool reads them (``safetensors.safe_open``, memory-mapped);
training reads single windows with one positioned read each (:class:`ShardReader`), so its memory does not grow with
the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_dream.core.errors import BciDreamError
from bci_dream.signal.montage import Montage
from bci_dream.training.windows import WindowSpec

log = logging.getLogger(__name__)

FORMAT = "bci-dream-window-store"
VERSION = 1
STORE_FILE, JOURNAL, SKIPPED, SHARDS = "store.json", "recordings.jsonl", "skipped.jsonl", "shards"
#: How the stored windows were normalised (a change here is a change of specification).
NORMALISATION = "per-window, per-channel z-score (signal.normalize.normalize_window)"


class StoreError(BciDreamError):
    """A folder that is not a window store, or a store that cannot be used as asked (named in one line)."""


def spec_to_dict(spec: WindowSpec, hop_s: float) -> dict:
    """What a store's windows are, as JSON: compared key by key when a store is built into or trained from."""
    return {"window_s": float(spec.window_s), "sfreq": float(spec.target_sfreq), "hop_s": float(hop_s),
            "bandpass": list(spec.bandpass) if spec.bandpass else None, "notch": spec.notch,
            "montage": list(spec.montage.names), "dtype": "float16", "normalisation": NORMALISATION}


def spec_from_dict(data: dict) -> tuple[WindowSpec, float]:
    """The :class:`WindowSpec` and hop in seconds of :func:`spec_to_dict`'s output."""
    band = data.get("bandpass")
    return WindowSpec(window_s=data["window_s"], target_sfreq=data["sfreq"], montage=Montage(data["montage"]),
                      bandpass=tuple(band) if band else None, notch=data.get("notch")), float(data["hop_s"])


def spec_differences(have: dict, want: dict) -> list[str]:
    """``key: have → want`` for every key that differs (the montage summarised)."""
    out = []
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key), want.get(key)
        if a == b:
            continue
        if key == "montage":
            out.append(f"montage: {len(a or [])} channels → {len(b or [])} channels" if len(a or []) != len(b or [])
                       else "montage: other channels or order")
        else:
            out.append(f"{key}: {a} → {b}")
    return out


@dataclass(frozen=True)
class StoredRecording:
    """One journal entry: a recording and its shard."""

    source: str
    fingerprint: str
    shard: str  # relative to the store folder
    n_windows: int
    n_channels: int  # rows stored (channels of the montage the recording has)
    duration_s: float
    sfreq: float
    subject: str | None = None
    session: str | None = None
    dataset: str | None = None
    source_format: str = ""
    ch_names: tuple[str, ...] = ()
    gap_windows: int = 0
    item: str = ""  # the corpus item it came from (a MOABB subject for each of its runs; else the source)
    shard_bytes: int | None = None  # the shard's size when written (None in stores built before it was kept)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["ch_names"] = list(self.ch_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StoredRecording:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["ch_names"] = tuple(known.get("ch_names", ()))
        return cls(**known)

    @property
    def subject_key(self) -> str:
        """The subject for splits: its id, or the source itself when unknown (a recording of its own)."""
        return self.subject if self.subject is not None else f"?{self.source}"


@dataclass
class WindowStore:
    """A store folder, read: its specification, recordings and skipped sources.

    Attributes:
        path: the folder.
        spec_dict: :func:`spec_to_dict` of its windows.
        recordings: the recordings built, in journal order (one per source: the latest).
        skipped: ``source → reason`` of the sources left out.
        damaged: ``source → what is wrong`` of recordings whose shard is missing or of another size than written
            (deleted, truncated by a copy): left out of training; building again from the same sources remakes them.
    """

    path: Path
    spec_dict: dict
    recordings: list[StoredRecording] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_fingerprints: dict[str, str] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | os.PathLike) -> WindowStore:
        """Read the store in ``path``.

        Raises:
            StoreError: no store there, or another program's file (one line).
        """
        path = Path(path)
        meta_file = path / STORE_FILE
        if not meta_file.is_file():
            raise StoreError(f"{path} is not a window store (no {STORE_FILE}); build one with "
                             "'bci-dream dataset build DATA... -o STORE'")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{meta_file} cannot be read ({e}); build the store again into a new folder") from e
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_file} is not a bci-dream window store")
        if int(meta.get("version", 0)) > VERSION:
            raise StoreError(f"{path} was built by a newer bci-dream (store version {meta['version']}); upgrade")
        store = cls(path, meta["spec"])
        latest: dict[str, StoredRecording] = {}
        for entry in _read_journal(path / JOURNAL):
            latest.pop(entry["source"], None)  # (a later line replaces an earlier one, or removes it)
            if not entry.get("removed"):
                record = StoredRecording.from_dict(entry)
                latest[record.source] = record
        for source, record in list(latest.items()):
            problem = _shard_problem(path / record.shard, record.shard_bytes)
            if problem:
                store.damaged[source] = problem
                del latest[source]
        if store.damaged:
            log.warning("%s: %d shards are missing or damaged and are left out (%s); 'bci-dream dataset build' with "
                        "the same sources and -o %s remakes them", path, len(store.damaged),
                        "; ".join(f"{s}: {p}" for s, p in list(store.damaged.items())[:3])
                        + (" ..." if len(store.damaged) > 3 else ""), path)
        store.recordings = list(latest.values())
        for entry in _read_journal(path / SKIPPED):
            if entry["source"] not in latest:
                store.skipped[entry["source"]] = entry.get("reason", "")
                store.skipped_fingerprints[entry["source"]] = entry.get("fingerprint", "")
        return store

    @property
    def spec(self) -> WindowSpec:
        return spec_from_dict(self.spec_dict)[0]

    @property
    def hop_s(self) -> float:
        return float(self.spec_dict["hop_s"])

    @property
    def n_windows(self) -> int:
        return sum(r.n_windows for r in self.recordings)

    @property
    def hours(self) -> float:
        """Hours of EEG in the recordings built."""
        return sum(r.duration_s for r in self.recordings) / 3600

    def subjects(self) -> list[str]:
        """The subjects (:attr:`StoredRecording.subject_key`), sorted."""
        return sorted({r.subject_key for r in self.recordings})

    def fingerprint(self) -> str:
        """Changes when the recordings in the store do (their sources, shard files and window counts)."""
        digest = hashlib.sha1()
        for r in self.recordings:
            digest.update(f"{r.source}|{r.fingerprint}|{r.n_windows}\n".encode())
        return digest.hexdigest()[:16]

    def check_spec(self, want: dict, doing: str) -> None:
        """Refuse, naming what differs, when this store's windows are not ``want`` (:func:`spec_to_dict`).

        Raises:
            StoreError: they differ.
        """
        differences = spec_differences(self.spec_dict, want)
        if differences:
            raise StoreError(f"{self.path} was built with another window specification than {doing} needs "
                             f"({'; '.join(differences)}); build a new store for it")

    def summary(self) -> str:
        """Several lines: what the store holds (``bci-dream dataset info``)."""
        spec = self.spec_dict
        band, notch = spec.get("bandpass"), spec.get("notch")
        band_text = f"{band[0]:g}-{band[1]:g} Hz" if band else "none"
        notch_text = f"{notch:g} Hz" if notch else "none"
        lines = [f"{self.path}: {self.n_windows} windows of {len(spec['montage'])} x "
                 f"{int(round(spec['window_s'] * spec['sfreq']))} ({spec['window_s']:g} s at {spec['sfreq']:g} Hz, "
                 f"every {spec['hop_s']:g} s; band-pass {band_text}, notch {notch_text}; float16)",
                 f"{len(self.recordings)} recordings, {self.hours:.2f} h of EEG, {len(self.subjects())} subjects, "
                 f"{len({(r.subject_key, r.session) for r in self.recordings})} sessions"]
        datasets = sorted({r.dataset for r in self.recordings if r.dataset})
        if datasets:
            lines.append(f"datasets: {', '.join(datasets)}")
        unknown = sum(r.subject is None for r in self.recordings)
        if unknown:
            lines.append(f"{unknown} recordings name no subject (each counts as its own in subject-wise splits; "
                         "--subject-pattern names them)")
        channels: dict[int, int] = {}
        for r in self.recordings:
            channels[r.n_channels] = channels.get(r.n_channels, 0) + 1
        if channels:
            lines.append("channels in the montage: " + ", ".join(f"{n} ({k} recordings)" for n, k in
                                                                 sorted(channels.items(), key=lambda i: -i[1])[:6]))
        gaps = sum(r.gap_windows for r in self.recordings)
        if gaps:
            lines.append(f"{gaps} windows across gaps in the timestamps were left out")
        size = sum(r.shard_bytes if r.shard_bytes is not None else (self.path / r.shard).stat().st_size
                   for r in self.recordings)  # (sizes checked against the files when the store was opened)
        lines.append(f"{size / 2**30:.2f} GiB on disk")
        if self.skipped:
            lines.append(f"{len(self.skipped)} skipped:")
            lines += [f"  {source}: {reason}" for source, reason in self.skipped.items()]
        if self.damaged:
            lines.append(f"{len(self.damaged)} missing or damaged (left out; building again from the same sources "
                         "remakes them):")
            lines += [f"  {source}: {problem}" for source, problem in self.damaged.items()]
        return "\n".join(lines)


def _shard_problem(path: Path, expected_bytes: int | None) -> str | None:
    """What is wrong with a shard file (missing, or not the size it was written with), or None."""
    try:
        size = path.stat().st_size
    except OSError:
        return f"its shard {path.name} is missing"
    if expected_bytes is not None and size != expected_bytes:
        return f"its shard {path.name} has {size} bytes, not the {expected_bytes} written"
    return None


def _read_journal(path: Path) -> Iterable[dict]:
    """The entries of a JSON-lines journal; a line that does not parse (torn by a kill or a full disk) is left out."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for raw in f:
            try:
                entry = json.loads(raw)
            except ValueError:
                log.debug("%s: a torn line is left out", path)
                continue
            if isinstance(entry, dict) and "source" in entry:
                yield entry


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to a journal and put it on disk (a torn write is left out when read)."""
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def create_store(path: Path, spec_dict: dict) -> None:
    """Make an empty store folder with ``spec_dict`` (written atomically)."""
    (path / SHARDS).mkdir(parents=True, exist_ok=True)
    tmp = path / (STORE_FILE + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION, "spec": spec_dict}, indent=1))
    os.replace(tmp, path / STORE_FILE)


def write_shard(path: Path, windows: np.ndarray, channels: np.ndarray, t_end: np.ndarray, source: str) -> None:
    """Write one shard (safetensors) to ``path``, complete or not at all (a temporary file renamed at the end).

    Raises:
        OSError: it cannot be written (a full disk: nothing is left behind).
    """
    from safetensors.numpy import save_file

    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file({"windows": np.ascontiguousarray(windows, np.float16),
                   "channels": np.ascontiguousarray(channels, np.int64),
                   "t_end": np.ascontiguousarray(t_end, np.float64)}, str(tmp), metadata={"source": source})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ShardReader:
    """Single windows of one shard by positioned reads (no memory map: what is read is all that is held).

    Args:
        path: a shard file (:func:`write_shard`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            (header_len,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
            header = json.loads(os.pread(self._fd, header_len, 8))
            base = 8 + header_len
            windows = header["windows"]
            if windows["dtype"] != "F16" or len(windows["shape"]) != 3:
                raise StoreError(f"{self.path} is not a window shard (windows {windows['dtype']} "
                                 f"{windows['shape']})")
            self.shape = tuple(windows["shape"])  # [N, n_mapped, T]
            self._windows_at = base + windows["data_offsets"][0]
            self._row_bytes = 2 * self.shape[1] * self.shape[2]
            start, end = header["channels"]["data_offsets"]
            self.channels = np.frombuffer(os.pread(self._fd, end - start, base + start), np.int64).copy()
        except (KeyError, ValueError, struct.error) as e:
            os.close(self._fd)
            raise StoreError(f"{self.path} is damaged ({type(e).__name__}: {e}); delete its line from "
                             f"{JOURNAL} and build again to remake it") from e
        except BaseException:
            os.close(self._fd)
            raise

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, row: int, out: np.ndarray) -> None:
        """Window ``row`` into ``out`` (float16 [n_mapped, T], written in place)."""
        data = os.pread(self._fd, self._row_bytes, self._windows_at + row * self._row_bytes)
        if len(data) != self._row_bytes:
            raise StoreError(f"{self.path} is truncated (window {row} of {self.shape[0]}); delete its line from "
                             f"{JOURNAL} and build again to remake it")
        out[...] = np.frombuffer(data, np.float16).reshape(out.shape)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
