"""The window store: built from real recordings (and MOABB's fake dataset), extended and resumed without rebuilding,
a full disk and another window specification handled in one line, streamed to several ranks without a window
twice, and pretrained from with subjects held out."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch

from bci_dream.cli import main
from bci_dream.training import store_build
from bci_dream.training.corpus_sources import SourceError, file_items, moabb_items
from bci_dream.training.store_build import StoreWriteError, build_store
from bci_dream.training.store_stream import StoreBatches, split_subjects
from bci_dream.training.window_store import StoreError, WindowStore
from bci_dream.training.windows import WindowDataset, WindowSpec


@pytest.fixture()
def sources(shared_data, tmp_path):
    junk = tmp_path / "junk.xdf"
    junk.write_text("not a recording")
    return [shared_data / "bci-essentials", shared_data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv", junk]


def test_a_store_holds_the_live_paths_windows_and_resumes_without_rebuilding(sources, tmp_path, shared_data):
    store_path = tmp_path / "store"
    report = build_store(file_items(sources), store_path, WindowSpec(), 1.0, progress=False)
    store = report.store
    assert report.built == 4 and len(report.skipped) == 1 and "junk.xdf" in report.skipped[0][0]
    assert {r.subject for r in store.recordings} == {None, "P001"} and "junk.xdf" in store.summary()
    muse = next(r for r in store.recordings if r.source.endswith(".csv"))
    reference = WindowDataset.from_paths([shared_data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv"])
    from bci_dream.training.window_store import ShardReader

    reader = ShardReader(store_path / muse.shard)
    row = np.empty(reader.shape[1:], np.float16)
    reader.read(5, row)
    eeg, _, _, _ = reference.window(5)
    np.testing.assert_allclose(row.astype(np.float32), eeg[reader.channels], atol=2e-2)  # (float16)
    reader.close()
    shards = {p: p.stat().st_mtime_ns for p in (store_path / "shards").iterdir()}
    again = build_store(file_items([*sources, shared_data / "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"]),
                        store_path, WindowSpec(), 1.0, progress=False)
    assert again.built == 1 and again.reused == 5  # (only the new recording; the junk stays skipped)
    assert all(p.stat().st_mtime_ns == t for p, t in shards.items())
    with pytest.raises(StoreError, match=r"notch: 50.0 → 60.0"):
        build_store(file_items(sources), store_path, WindowSpec(notch=60.0), 1.0, progress=False)
    assert main(["dataset", "info", str(store_path)]) == 0


def test_a_build_that_makes_nothing_fails_in_one_line(tmp_path, capsys):
    """An empty folder, or sources that are all skipped, end ``dataset build`` with an error, not exit status 0."""
    (tmp_path / "empty").mkdir()
    assert main(["dataset", "build", str(tmp_path / "empty"), "-o", str(tmp_path / "store")]) == 1
    assert "no recordings found in" in capsys.readouterr().err
    (tmp_path / "junk.edf").write_bytes(b"0       " + bytes(300))
    (tmp_path / "blank.xdf").write_bytes(b"")
    out = ["-o", str(tmp_path / "store"), "--jobs", "1"]
    assert main(["dataset", "build", str(tmp_path / "junk.edf"), str(tmp_path / "blank.xdf"), *out]) == 1
    assert "none of the 2 recording(s) could be built" in capsys.readouterr().err.splitlines()[-1]


def test_a_full_disk_stops_the_build_consistently_and_the_same_command_resumes(sources, tmp_path, monkeypatch):
    real = store_build.write_shard
    calls = []

    def fill_up(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store_build, "write_shard", fill_up)
    with pytest.raises(StoreWriteError, match="the disk is full"):
        build_store(file_items(sources), tmp_path / "store", WindowSpec(), 1.0, progress=False)
    assert len(WindowStore.open(tmp_path / "store").recordings) == 1
    assert not list((tmp_path / "store/shards").glob("*.tmp"))
    monkeypatch.setattr(store_build, "write_shard", real)
    report = build_store(file_items(sources), tmp_path / "store", WindowSpec(), 1.0, progress=False)
    assert report.built == 3 and report.reused == 1 and len(report.store.recordings) == 4


def test_ranks_stream_their_own_windows_and_a_resumed_stream_sees_none_twice(sources, tmp_path):
    store = build_store(file_items(sources), tmp_path / "store", WindowSpec(), 1.0, progress=False).store
    for ranks in (1, 2, 3):
        streams = [StoreBatches(store, 8, rank=k, ranks=ranks, seed=3, buffer=64) for k in range(ranks)]
        seen = np.concatenate([np.concatenate(list(s.epoch_indices(0))) for s in streams])
        assert len(np.unique(seen, axis=0)) == len(seen) == ranks * streams[0].batches_per_epoch * 8
    whole = StoreBatches(store, 8, seed=3, buffer=64)
    first = iter(whole)
    for _ in range(whole.batches_per_epoch + 3):  # (into the second epoch)
        expected = next(first)
    resumed = next(iter(StoreBatches(store, 8, seed=3, buffer=64, start=whole.batches_per_epoch + 2)))
    assert torch.equal(resumed["eeg"], expected["eeg"]) and torch.equal(resumed["mask"], expected["mask"])
    assert split_subjects(store, "P001") == ["P001"]
    with pytest.raises(Exception, match="holds no subject P999"):
        split_subjects(store, "P999")


def test_pretrain_streams_from_a_store_with_subjects_held_out(sources, tmp_path, capsys):
    build_store(file_items(sources), tmp_path / "store", WindowSpec(), 1.0, progress=False)
    out = tmp_path / "ckpt"
    assert main(["pretrain", "--store", str(tmp_path / "store"), "-o", str(out), "--preset", "tiny", "--max-steps",
                 "4", "--batch-size", "8", "--holdout-subjects", "P001"]) == 0
    printed = capsys.readouterr().out
    assert "pretrained 'tiny' for 4 steps" in printed and "held-out subjects (1: P001)" in printed
    assert main(["pretrain", "--store", str(tmp_path / "store"), "-o", str(tmp_path / "c2"), "--preset", "tiny",
                 "--max-steps", "1", "--notch", "60"]) == 1
    assert "notch: 50.0 → 60.0" in capsys.readouterr().err


def test_moabb_datasets_by_name(tmp_path):
    """MOABB's fake dataset (made up, no network) stands for a downloaded one; a name MOABB lacks gets the closest."""
    pytest.importorskip("moabb")
    with pytest.raises(SourceError, match="closest: BNCI2014_001"):
        moabb_items(["BNCI2014_01"])
    report = build_store(moabb_items(["FakeDataset"], subjects=[1, 2]), tmp_path / "store", WindowSpec(), 1.0,
                         progress=False)
    store = report.store
    assert report.built == 4 and store.subjects() == ["FakeDataset-1", "FakeDataset-2"]
    assert {r.session for r in store.recordings} == {"0", "1"} and store.recordings[0].n_channels == 3


DDP_WORKER = """
import sys
from pathlib import Path

import torch

from bci_dream.training import pretrain


def save_on_every_rank(accelerator, model, *args, **kwargs):  # (the real one saves on the first process only)
    accelerator.wait_for_everyone()
    weights = accelerator.unwrap_model(model).encoder.state_dict()
    torch.save(weights, Path(sys.argv[-1]) / f"rank{accelerator.process_index}.pt")


pretrain._save = save_on_every_rank
from bci_dream.cli import main

sys.exit(main(["pretrain", *sys.argv[1:]]))
"""


def test_two_processes_train_one_model_from_one_store_on_the_one_process_schedule(sources, tmp_path):
    """Two real CPU processes (torchrun, gloo) at half the batch each end with the same weights (their gradients are
    averaged, not each process training on its own) and follow the one-process learning-rate schedule (accelerate
    would step it once per process and step)."""
    import json
    import math
    import os
    import subprocess
    import sys

    from bci_dream.training.pretrain import lr_factor
    from bci_dream.training.settings import PretrainSettings

    build_store(file_items(sources), tmp_path / "store", WindowSpec(), 1.0, progress=False)
    out = tmp_path / "ckpt"
    out.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(worker), "--store",
               str(tmp_path / "store"), "--preset", "tiny", "--max-steps", "12", "--batch-size", "4",
               "--warmup-steps", "1", "--checkpoint-every", "12", "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("pretrained 'tiny' for 12 steps") == 1  # (only the first process reports)
    first, second = (torch.load(out / f"rank{k}.pt") for k in (0, 1))
    assert all(torch.equal(first[k], second[k]) for k in first)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"lr"' in line]
    at_10 = next(m for m in logged if m["step"] == 10)
    assert math.isclose(at_10["lr"], PretrainSettings().lr * lr_factor(10, 1, 12), rel_tol=1e-6)
    assert math.isfinite(at_10["loss"])


def test_real_recordings_with_packet_loss_a_clock_reset_truncation_and_clinical_labels_build(shared_data, tmp_path):
    """Real EEG (bci-essentials g.USBamp) written back to .xdf with 0.8 s that never arrived and with the amplifier's
    clock reset, a recording cut off mid-chunk, a clinical EDF ('EEG Fp1' labels) and an empty file: each is built or
    skipped with its reason; then a shard truncated on disk is named, left out of training and remade by the same
    build."""
    from bci_dream.io.readers import read_recording
    from bci_dream.io.xdf_writer import XdfWriter

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    source = read_recording(shared_data / "bci-essentials/sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf")
    eeg = np.ascontiguousarray(source.data[:int(60 * source.sfreq)], np.float32)
    n = len(eeg)
    stamps = 5000.0 + np.arange(n) / source.sfreq
    lost, reset = stamps.copy(), stamps.copy()
    lost[n // 3:] += 0.8
    reset[2 * n // 3:] -= 3000.0
    for name, times in (("lost", lost), ("reset", reset)):
        with XdfWriter(corpus / f"{name}.xdf") as writer:
            stream = writer.add_stream("amp", "EEG", eeg.shape[1], source.sfreq, channel_labels=list(source.ch_names))
            writer.write_samples(stream, eeg, times)
    whole = (shared_data / "bci-essentials/ssvep_example.xdf").read_bytes()
    (corpus / "cut.xdf").write_bytes(whole[:int(len(whole) * 0.55)])
    (corpus / "clinical.edf").write_bytes((shared_data / "mne-python/edf/tests/data/test_edf_stim_channel.edf")
                                          .read_bytes())
    (corpus / "empty.edf").write_bytes(b"")

    report = build_store(file_items([corpus]), tmp_path / "store", WindowSpec(), 1.0, progress=False)
    built = {r.source.rsplit("/", 1)[-1]: r for r in report.store.recordings}
    assert set(built) == {"lost.xdf", "reset.xdf", "cut.xdf", "clinical.edf"}
    assert [s.rsplit("/", 1)[-1] for s, _ in report.skipped] == ["empty.edf"]
    assert built["lost.xdf"].gap_windows >= 1 and built["lost.xdf"].n_windows < built["reset.xdf"].n_windows
    assert built["clinical.edf"].n_channels == 19 and built["cut.xdf"].n_windows > 0

    shard = tmp_path / "store" / built["reset.xdf"].shard
    shard.write_bytes(shard.read_bytes()[:-4096])  # (a copy cut short)
    store = WindowStore.open(tmp_path / "store")
    assert "reset.xdf" not in {r.source.rsplit("/", 1)[-1] for r in store.recordings}
    assert any("reset.xdf" in s and "bytes, not the" in p for s, p in store.damaged.items())
    assert "1 missing or damaged" in store.summary()
    again = build_store(file_items([corpus]), tmp_path / "store", WindowSpec(), 1.0, progress=False)
    assert again.built == 1 and not again.store.damaged and len(again.store.recordings) == 4
