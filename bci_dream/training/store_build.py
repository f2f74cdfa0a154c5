"""``bci-dream dataset build``: cut every window of a corpus once, in parallel worker processes, into a window store
(:mod:`bci_dream.training.window_store`).

Each recording gets the live path's preprocessing exactly (:func:`~bci_dream.training.windows.recording_windows`:
the online filter, the windower's resampling and montage, per-window normalisation). Sources already in the store
(same file size and modification time) are not built again, so adding recordings builds only those, and a build that
was killed or ran out of disk resumes where it stopped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from bci_dream.core.errors import BciDreamError
from bci_dream.io.mne_reader import recording_from_raw
from bci_dream.io.readers import read_recording
from bci_dream.signal.channels import ChannelNaming
from bci_dream.training.corpus_sources import CorpusItem, moabb_dataset
from bci_dream.training.window_store import (
    JOURNAL,
    SHARDS,
    SKIPPED,
    StoredRecording,
    StoreError,
    WindowStore,
    append_line,
    create_store,
    spec_to_dict,
    write_shard,
)
from bci_dream.training.windows import WindowSpec, recording_windows

log = logging.getLogger(__name__)


class StoreWriteError(StoreError):
    """A shard could not be written (a full disk, a read-only folder): the store stays consistent and resumes."""


@dataclass
class BuildReport:
    """What a build did.

    Attributes:
        store: the store after it.
        built: recordings built now; reused: sources already in the store; skipped: ``(source, reason)`` of the
            sources left out now.
        hours_built: hours of EEG in the recordings built now; seconds: the build's wall time; jobs: worker processes.
    """

    store: WindowStore
    built: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    hours_built: float = 0.0
    seconds: float = 0.0
    jobs: int = 1

    def summary(self) -> str:
        rate = self.hours_built / (self.seconds / 60) / self.jobs if self.seconds > 0 and self.hours_built else 0.0
        return (f"built {self.built} recordings ({self.hours_built:.2f} h of EEG) in {self.seconds:.1f} s with "
                f"{self.jobs} worker{'s' if self.jobs != 1 else ''} ({rate:.2f} h of EEG per minute per worker); "
                f"{self.reused} already in the store; {len(self.skipped)} skipped")


def _shard_name(source: str) -> str:
    return f"{SHARDS}/{hashlib.sha1(source.encode()).hexdigest()[:20]}.safetensors"


def _store_recording(store_path: Path, item: CorpusItem, fingerprint: str, recording, spec: WindowSpec,
                     hop_s: float, source: str, session: str | None) -> dict:
    cut = recording_windows(recording, spec, hop_s)
    shard = _shard_name(source)
    try:
        write_shard(store_path / shard, cut.windows, cut.target_index, cut.t_end, source)
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        raise StoreWriteError(("the disk is full" if full else f"cannot write {store_path / shard}: {e.strerror}")
                              + f" while building {store_path}") from e
    record = StoredRecording(
        source=source, fingerprint=fingerprint, shard=shard, n_windows=len(cut.t_end),
        n_channels=len(cut.target_index), duration_s=float(recording.duration), sfreq=float(recording.sfreq),
        subject=item.subject, session=session, dataset=item.dataset, source_format=recording.source_format,
        ch_names=tuple(recording.ch_names), gap_windows=cut.gap_windows, item=item.source,
        shard_bytes=(store_path / shard).stat().st_size)
    return record.to_dict()


def build_item(item: CorpusItem, fingerprint: str, store_path: Path, spec: WindowSpec, hop_s: float,
               naming: ChannelNaming | None) -> tuple[list[dict], str | None]:
    """Build one item's shards (in a worker process): its journal entries, or the reason it is skipped.

    Raises:
        StoreWriteError: a shard could not be written (the build stops; what is written stays consistent).
    """
    try:
        if item.moabb is None:
            recording = read_recording(item.path, naming=naming)
            return [_store_recording(store_path, item, fingerprint, recording, spec, hop_s, item.source,
                                     item.session)], None
        name, subject = item.moabb
        entries, reasons = [], []
        for session, runs in moabb_dataset(name).get_data([subject])[subject].items():
            for run, raw in runs.items():
                source = f"{item.source}:{session}:{run}"
                try:
                    recording = recording_from_raw(raw, Path(name) / f"sub-{subject}" / f"ses-{session}" /
                                                   f"run-{run}", source_format=f"moabb-{name}")
                    entries.append(_store_recording(store_path, item, fingerprint, recording, spec, hop_s, source,
                                                    str(session)))
                except (BciDreamError, ValueError) as e:
                    if isinstance(e, StoreWriteError):
                        raise
                    reasons.append(f"session {session} run {run}: {e}")
        return entries, ("; ".join(reasons) or None) if not entries else None
    except StoreWriteError:
        raise
    except (BciDreamError, ValueError, OSError) as e:
        return [], str(e) or type(e).__name__
    except Exception as e:  # noqa: BLE001 - (MOABB's downloads and readers raise many kinds: one line, skipped)
        return [], f"{type(e).__name__}: {e}"


def _work(item: CorpusItem, fingerprint: str) -> tuple[list[dict], str | None]:
    return build_item(item, fingerprint, *_WORKER_ARGS)


_WORKER_ARGS: tuple = ()


def _init_worker(*args) -> None:
    global _WORKER_ARGS
    _WORKER_ARGS = args
    logging.getLogger("bci_dream").setLevel(logging.ERROR)  # (the main process reports skips, once each)


def build_store(items: Sequence[CorpusItem], store_path: str | Path, spec: WindowSpec, hop_s: float = 1.0, *,
                jobs: int = 1, naming: ChannelNaming | None = None, progress: bool = True) -> BuildReport:
    """Build (or extend, or resume) the store in ``store_path`` from ``items``.

    Args:
        items: the recordings (:mod:`~bci_dream.training.corpus_sources`).
        spec, hop_s: the windows; an existing store must have been built with the same.
        jobs: worker processes (1: in this process).
        naming: what the recordings' channels are (:func:`~bci_dream.io.readers.read_recording`).

    Raises:
        StoreError: the folder holds a store of another specification (what differs is named), or something else.
        StoreWriteError: the disk filled up (the store holds what was complete; the same call resumes).
    """
    from tqdm.auto import tqdm

    store_path = Path(store_path)
    want = spec_to_dict(spec, hop_s)
    if (store_path / "store.json").is_file():
        WindowStore.open(store_path).check_spec(want, "this build")
    elif store_path.exists() and any(store_path.iterdir()):
        raise StoreError(f"{store_path} is a folder that holds other files, not a window store; choose a new or "
                         "empty folder")
    else:
        create_store(store_path, want)
    store = WindowStore.open(store_path)
    built_items: dict[str, str] = {}
    for record in store.recordings:
        built_items.setdefault(record.item or record.source, record.fingerprint)
    todo, reused, seen = [], 0, set()
    for item in items:
        if item.source in seen:
            continue
        seen.add(item.source)
        fingerprint = _fingerprint(item)
        if built_items.get(item.source) == fingerprint or store.skipped_fingerprints.get(item.source) == fingerprint:
            reused += 1
        else:
            todo.append((item, fingerprint))
    report = BuildReport(store, reused=reused, jobs=max(1, min(jobs, len(todo) or 1)))
    started = time.perf_counter()
    bar = tqdm(total=len(todo), desc="dataset build", unit="recording", disable=not progress or not todo)

    def finish(item: CorpusItem, fingerprint: str, entries: list[dict], reason: str | None) -> None:
        for old in store.recordings:  # (a changed file, or a MOABB subject built again: its old entries go)
            if (old.item or old.source) == item.source and old.source not in {e["source"] for e in entries}:
                append_line(store_path / JOURNAL, json.dumps({"source": old.source, "removed": True}))
        for entry in entries:
            append_line(store_path / JOURNAL, json.dumps(entry))
            report.built += 1
            report.hours_built += entry["duration_s"] / 3600
        if reason is not None:
            append_line(store_path / SKIPPED, json.dumps({"source": item.source, "fingerprint": fingerprint,
                                                          "reason": reason}))
            report.skipped.append((item.source, reason))
            log.warning("skipping %s: %s", item.source, reason)
        bar.update(1)
        bar.set_postfix(hours=f"{report.hours_built:.1f}")

    try:
        if report.jobs == 1:
            for item, fingerprint in todo:
                finish(item, fingerprint, *build_item(item, fingerprint, store_path, spec, hop_s, naming))
        else:
            _run_pool(todo, report.jobs, (store_path, spec, hop_s, naming), finish)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - started
        report.store = WindowStore.open(store_path)
    if report.skipped:
        log.warning("%d sources skipped:\n%s", len(report.skipped),
                    "\n".join(f"  {s}: {r}" for s, r in report.skipped))
    return report


def _run_pool(todo, jobs: int, worker_args: tuple, finish) -> None:
    """Build ``todo`` in ``jobs`` spawned processes, a bounded number in flight; stop all at the first write
    failure or interruption (the finished ones are in the journal)."""
    context = multiprocessing.get_context("spawn")  # (not fork: the caller may hold torch's threads)
    pending: dict[Future, tuple[CorpusItem, str]] = {}
    queue = list(reversed(todo))
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=worker_args) as pool:
        try:
            while queue or pending:
                while queue and len(pending) < 2 * jobs:
                    item, fingerprint = queue.pop()
                    pending[pool.submit(_work, item, fingerprint)] = (item, fingerprint)
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item, fingerprint = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as e:
                        raise StoreError(f"a build worker died while reading {item.source} (out of memory?); what "
                                         "was built is kept: run the same command to resume, with fewer --jobs")\
                            from e
                    finish(item, fingerprint, *result)
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _fingerprint(item: CorpusItem) -> str:
    try:
        return item.fingerprint()
    except OSError:
        return "missing"
