"""Training batches streamed from a window store (:mod:`bci_dream.training.window_store`), for any number of ranks.

Every epoch, the store's windows are cut into pieces (contiguous runs of one shard, at most ``piece`` windows), the
pieces are shuffled with the epoch's seed and dealt to the ranks so that each holds about the same number of windows
(each rank reads its own pieces: no window is read by two ranks). A rank takes its pieces in order a shuffle
buffer's load at a time (``buffer`` windows), shuffles each load, and reads only the windows of the batch it is
making, so its memory is a load's indices, one batch and the piece table (8 bytes a piece), whatever the store's
size. Every rank makes the same number of full batches per epoch (the
shortest rank's), as distributed training needs.

The order is a function of (seed, epoch, rank, ranks) alone, so a run resumed at global batch ``b`` passes over the
loads before it without making them: no window is seen twice in an epoch, and none is left out.

Subject-wise splits: :func:`split_subjects` holds out whole subjects; :class:`StoreBatches` leaves their recordings out.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from bci_dream.core.errors import BciDreamError
from bci_dream.training.window_store import ShardReader, StoredRecording, WindowStore

log = logging.getLogger(__name__)

#: Shards kept open per reader (file descriptors, not memory).
OPEN_SHARDS = 64


def split_subjects(store: WindowStore, holdout: str | Sequence[str] | float | None, seed: int = 0) -> list[str]:
    """The held-out subjects (:attr:`StoredRecording.subject_key`): those named, or a share of them drawn with
    ``seed`` (``0.2``: a fifth, at least one, never all).

    Raises:
        BciDreamError: a named subject that the store does not hold (the known ones are named), or a share that
            leaves no subject to train on.
    """
    subjects = store.subjects()
    if holdout is None or holdout == [] or holdout == "":
        return []
    if isinstance(holdout, str):
        try:
            holdout = float(holdout)
        except ValueError:
            holdout = [s.strip() for s in holdout.split(",") if s.strip()]
    if isinstance(holdout, float):
        if not 0 < holdout < 1:
            raise BciDreamError(f"a held-out share of subjects must be between 0 and 1, not {holdout}")
        if len(subjects) < 2:
            raise BciDreamError(f"{store.path} holds {len(subjects)} subject: none can be held out (name subjects with "
                                "--subject-pattern when building it)")
        k = min(len(subjects) - 1, max(1, round(holdout * len(subjects))))
        order = np.random.default_rng(seed).permutation(len(subjects))
        return sorted(subjects[i] for i in order[:k])
    unknown = [s for s in holdout if s not in subjects]
    if unknown:
        raise BciDreamError(f"{store.path} holds no subject {', '.join(unknown)}; its subjects: "
                            f"{', '.join(subjects[:12])}{' ...' if len(subjects) > 12 else ''}")
    if set(holdout) >= set(subjects):
        raise BciDreamError("every subject of the store is held out: none is left to train on")
    return sorted(holdout)


class StoreBatches(torch.utils.data.IterableDataset):
    """Batches of a window store for one rank (see the module docstring), endless: epoch after epoch.

    Items are dicts ``eeg`` float32 [B, C, T], ``mask`` bool [B, C] (the montage rows a window has). With DataLoader
    workers (``batch_size=None``), worker ``w`` of ``W`` makes batches ``w, w + W, ...``, which the loader hands out in
    order: the same stream as without workers.

    Args:
        store: the store.
        batch_size: windows per batch on this rank.
        rank, ranks: this process and how many there are.
        seed: the order's seed.
        start: global batches already consumed (a resumed run's step): the stream starts after them.
        buffer: window indices in the shuffle buffer.
        piece: windows per piece at most.
        exclude_subjects: subjects (:attr:`StoredRecording.subject_key`) left out.
    """

    def __init__(self, store: WindowStore, batch_size: int, *, rank: int = 0, ranks: int = 1, seed: int = 0,
                 start: int = 0, buffer: int = 4096, piece: int = 256, exclude_subjects: Sequence[str] = ()) -> None:
        super().__init__()
        if batch_size < 1 or ranks < 1 or not 0 <= rank < ranks:
            raise ValueError(f"bad batch_size {batch_size} / rank {rank} of {ranks}")
        self.store, self.batch_size, self.rank, self.ranks = store, int(batch_size), int(rank), int(ranks)
        self.seed, self.start, self.buffer, self.piece = int(seed), int(start), max(1, int(buffer)), max(1, int(piece))
        excluded = set(exclude_subjects)
        self.recordings: list[StoredRecording] = [r for r in store.recordings if r.subject_key not in excluded
                                                  and r.n_windows > 0]
        self.n_windows = sum(r.n_windows for r in self.recordings)
        spec = store.spec_dict
        self.n_channels, self.n_samples = len(spec["montage"]), int(round(spec["window_s"] * spec["sfreq"]))
        # (pieces small enough that every rank gets several, so the ranks' shares stay even)
        self.piece = max(1, min(self.piece, self.n_windows // (8 * self.ranks) or 1))
        pieces = [(i, a, min(a + self.piece, r.n_windows)) for i, r in enumerate(self.recordings)
                  for a in range(0, r.n_windows, self.piece)]
        self._pieces = np.asarray(pieces, np.int64).reshape(-1, 3)  # [P, (recording, start, stop)]
        # Dealt to the least-loaded rank, no rank is more than one piece short of the mean: every rank can make this
        # many batches in every epoch.
        per_rank = self.n_windows if self.ranks == 1 else max(0, self.n_windows // self.ranks - self.piece)
        if 0 < per_rank < self.batch_size and self.ranks == 1:  # (fewer windows than a batch: one smaller batch)
            log.warning("%d windows: fewer than one batch of %d; training on batches of %d", per_rank,
                        self.batch_size, per_rank)
            self.batch_size = per_rank
        self.batches_per_epoch = per_rank // self.batch_size
        if self.batches_per_epoch == 0:
            raise BciDreamError(f"{store.path} holds {self.n_windows} windows to train on: fewer than one batch of "
                                f"{self.batch_size} for each of {self.ranks} processes; add recordings or lower "
                                "--batch-size")

    def _deal(self, epoch: int) -> np.ndarray:
        """This rank's pieces in ``epoch`` (rows of the piece table): shuffled, then each dealt to the rank with the
        fewest windows so far."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self._pieces))
        if self.ranks == 1:
            return order
        sizes = (self._pieces[:, 2] - self._pieces[:, 1])[order].tolist()
        heap = [(0, k) for k in range(self.ranks)]
        mine = []
        for i, size in zip(order.tolist(), sizes):
            load, k = heapq.heappop(heap)
            if k == self.rank:
                mine.append(i)
            heapq.heappush(heap, (load + size, k))
        return np.asarray(mine, np.int64)

    def _chunks(self, epoch: int) -> Iterator[tuple[int, np.ndarray]]:
        """This rank's pieces in ``epoch`` grouped into shuffle-buffer loads: (windows, piece rows) per load."""
        mine = self._deal(epoch)
        ends = np.cumsum(self._pieces[mine, 2] - self._pieces[mine, 1])
        start, before = 0, 0
        while start < len(mine):
            stop = min(len(mine), max(start + 1, int(np.searchsorted(ends, before + self.buffer, side="left")) + 1))
            yield int(ends[stop - 1] - before), mine[start:stop]
            start, before = stop, int(ends[stop - 1])

    def epoch_indices(self, epoch: int, skip: int = 0) -> Iterator[np.ndarray]:
        """This rank's windows in ``epoch`` from the ``skip``-th on, in the order they are trained on, a buffer load
        at a time: int64 [n, 2] (recording, row). Loads before ``skip`` are passed over without being made."""
        left = self.batches_per_epoch * self.batch_size
        position = 0
        for number, (size, rows) in enumerate(self._chunks(epoch)):
            if left <= 0:
                return
            if position + size <= skip:
                position += size
                left -= size
                continue
            pieces = self._pieces[rows]
            load = np.concatenate([np.stack([np.full(b - a, r), np.arange(a, b)], axis=1) for r, a, b in pieces])
            load = load[np.random.default_rng([self.seed, epoch, self.rank, number]).permutation(len(load))]
            load = load[:left]
            left -= len(load)
            first = max(0, skip - position)
            position += size
            if first < len(load):
                yield load[first:]

    def position(self, batch: int) -> tuple[int, int]:
        """(epoch, batch in epoch) of global batch ``batch``."""
        return divmod(int(batch), self.batches_per_epoch)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = _Readers(self.store.path, self.recordings)
        try:
            batch = self.start
            while True:
                epoch, within = self.position(batch)
                pending = np.zeros((0, 2), np.int64)
                for load in self.epoch_indices(epoch, skip=within * self.batch_size):
                    pending = np.concatenate([pending, load])
                    while len(pending) >= self.batch_size:
                        if batch % workers == worker:
                            yield reader.batch(pending[:self.batch_size], self.n_channels, self.n_samples)
                        pending = pending[self.batch_size:]
                        batch += 1
                batch = (epoch + 1) * self.batches_per_epoch
        finally:
            reader.close()


class _Readers:
    """Open shards of a stream (at most :data:`OPEN_SHARDS`, least recently used closed first)."""

    def __init__(self, root: os.PathLike, recordings: list[StoredRecording]) -> None:
        self.root, self.recordings = root, recordings
        self._open: OrderedDict[int, ShardReader] = OrderedDict()

    def reader(self, r: int) -> ShardReader:
        reader = self._open.get(r)
        if reader is None:
            reader = ShardReader(os.path.join(self.root, self.recordings[r].shard))
            self._open[r] = reader
            if len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(r)
        return reader

    def batch(self, indices: np.ndarray, n_channels: int, n_samples: int) -> dict:
        eeg = torch.zeros(len(indices), n_channels, n_samples)
        mask = torch.zeros(len(indices), n_channels, dtype=torch.bool)
        target = eeg.numpy()
        for i, (r, row) in enumerate(indices):
            reader = self.reader(int(r))
            rows = np.empty((len(reader.channels), n_samples), np.float16)
            reader.read(int(row), rows)
            target[i, reader.channels] = rows
            mask[i, torch.from_numpy(reader.channels)] = True
        return {"eeg": eeg, "mask": mask}

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()


def subject_windows(store: WindowStore, subjects: Sequence[str], limit: int = 4096,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``subjects`` (at most ``limit``, spread evenly over their recordings, drawn with ``seed``), for a
    held-out report: float32 [N, C, T] and bool [N, C]."""
    chosen = [i for i, r in enumerate(store.recordings) if r.subject_key in set(subjects)]
    total = sum(store.recordings[i].n_windows for i in chosen)
    if total == 0:
        raise BciDreamError("the held-out subjects have no windows in the store")
    rng = np.random.default_rng(seed)
    pairs = np.concatenate([np.stack([np.full(n, i), np.arange(n)], axis=1)
                            for i, n in ((i, store.recordings[i].n_windows) for i in chosen)])
    if len(pairs) > limit:
        pairs = pairs[np.sort(rng.choice(len(pairs), limit, replace=False))]
    spec = store.spec_dict
    n_channels, n_samples = len(spec["montage"]), int(round(spec["window_s"] * spec["sfreq"]))
    reader = _Readers(store.path, store.recordings)
    try:
        batch = reader.batch(pairs, n_channels, n_samples)
    finally:
        reader.close()
    return batch["eeg"].numpy(), batch["mask"].numpy()

