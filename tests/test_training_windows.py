"""Training windows: same preprocessing as the live path, normalisation, epochs, and the dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.core.types import Chunk, StreamInfo
from bci_dream.io.readers import read_recording
from bci_dream.signal.montage import CANONICAL_128
from bci_dream.signal.normalize import CLIP, normalize_window
from bci_dream.signal.windower import Windower
from bci_dream.training.windows import (
    WindowDataset,
    WindowSpec,
    extract_epochs,
    extract_windows,
    preprocess,
    window_ends,
)

V6 = "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"
MUSE = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
CYTON = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")


@pytest.fixture(scope="module")
def v6(shared_data: Path):
    return read_recording(shared_data / V6)


@pytest.fixture(scope="module")
def muse(shared_data: Path):
    return read_recording(shared_data / MUSE)


# ---------------------------------------------------------------------------------------------
# normalize_window


def test_normalize_window_zero_mean_one_scale_masked_zero():
    rng = np.random.default_rng(0)
    C, T = 6, 512
    x = rng.normal(size=(C, T)).astype(np.float32) * np.array([1, 2, 1, 1, 1, 50], np.float32)[:, None]
    x += np.float32(30_000)  # a large DC offset
    x[4] = 7.0  # a masked channel with junk in it
    mask = np.array([True, True, True, True, False, True])
    out = normalize_window(x, mask)
    assert out.dtype == np.float32 and out.shape == (C, T)
    np.testing.assert_array_equal(out[4], 0.0)
    np.testing.assert_allclose(out[:4].mean(axis=1), 0.0, atol=1e-4)
    # One scale for all channels: channel 1 stays twice as large as channel 0.
    assert out[1].std() / out[0].std() == pytest.approx(x[1].std() / x[0].std(), rel=1e-3)
    # The median std (over present channels) sets the scale, so a typical channel has std ≈ 1 ...
    assert np.median(out[mask].std(axis=1)) == pytest.approx(1.0, rel=0.05)
    # ... and the wild channel 5 (50x) is clipped.
    assert np.abs(out).max() == pytest.approx(CLIP)


def test_normalize_window_flat_channels_and_batches():
    rng = np.random.default_rng(1)
    x = np.zeros((3, 8, 256), np.float32)
    x[:, 0] = rng.normal(size=(3, 256)) * 40  # one live channel, seven present but flat (exactly 0)
    out = normalize_window(x, np.ones(8, bool))
    assert np.abs(out[:, 0].std(axis=-1) - 1.0).max() < 1e-3  # flat channels do not shrink the scale
    np.testing.assert_array_equal(out[:, 1:], 0.0)
    # Batched equals one by one, with a shared [C] or a per-window [N, C] mask.
    x = rng.normal(size=(4, 5, 100)).astype(np.float32)
    masks = rng.random((4, 5)) > 0.3
    masks[:, 0] = True
    one_by_one = np.stack([normalize_window(x[i], masks[i]) for i in range(4)])
    np.testing.assert_allclose(normalize_window(x, masks), one_by_one, atol=1e-6)
    np.testing.assert_allclose(normalize_window(x, masks[0]), np.stack([normalize_window(w, masks[0]) for w in x]),
                               atol=1e-6)
    # No present channel at all: all zero, no NaN.
    assert not normalize_window(x[0], np.zeros(5, bool)).any()


# ---------------------------------------------------------------------------------------------
# extract_windows


def test_windows_shape_mask_and_normalisation(v6):
    windows, mask, t_end = extract_windows(v6, WindowSpec(), hop_s=1.0)
    assert windows.dtype == np.float32 and windows.shape[1:] == (128, 512)
    assert windows.shape[0] == len(t_end) == int((v6.n_samples - 501) / 250) + 1  # first at ~2 s, every 1 s
    assert mask.dtype == bool and mask.sum() == 8
    assert {CANONICAL_128[i] for i in np.flatnonzero(mask)} == set(CYTON)
    np.testing.assert_array_equal(windows[:, ~mask], 0.0)
    present = windows[:, mask]
    unclipped = np.abs(present).max(axis=-1) < CLIP  # [N, 8]
    np.testing.assert_allclose(present.mean(axis=-1)[unclipped], 0.0, atol=1e-4)
    assert np.median(present.std(axis=-1)) == pytest.approx(1.0, rel=0.2)
    assert t_end[0] == pytest.approx(2.0, abs=0.02) and np.all(np.diff(t_end) > 0.9)
    assert np.abs(windows).max() <= CLIP


def test_offline_windows_equal_live_windows(v6):
    """Chunks through the live StreamPipeline + Windower give the windows extract_windows cuts."""
    spec = WindowSpec(notch=60.0)
    info = StreamInfo("cyton", v6.ch_names, v6.sfreq, units="uV")
    pipeline = StreamPipeline(info, buffer_seconds=v6.duration + 5, filters=FilterSettings(spec.bandpass, spec.notch))
    rng = np.random.default_rng(0)
    i = 0
    while i < v6.n_samples:  # irregular chunk sizes, as a headset delivers them
        n = int(rng.integers(1, 40))
        pipeline.push(Chunk(v6.data[i:i + n], v6.times[i:i + n]))
        i += n
    live = Windower(pipeline.filtered, v6.sfreq, v6.ch_names, window_s=spec.window_s,
                    target_sfreq=spec.target_sfreq, montage=spec.montage)
    offline, mask, t_end = extract_windows(v6, spec, hop_s=1.0)
    ends = window_ends(v6.n_samples, v6.sfreq, spec, hop_s=1.0)
    assert len(ends) == len(offline)
    T = spec.n_samples
    middle = slice(int(0.1 * T), int(0.9 * T))
    for k in (0, 1, 2, len(ends) // 2, len(ends) - 1):
        window = live.window_at(int(ends[k]))
        assert window is not None and window.t_end == t_end[k]
        np.testing.assert_array_equal(window.mask, mask)
        expected = normalize_window(window.data, window.mask)
        np.testing.assert_allclose(offline[k][:, middle], expected[:, middle], atol=1e-3)
        np.testing.assert_allclose(offline[k], expected, atol=1e-2)  # edges included


def test_preprocess_is_the_live_filter(v6):
    filtered = preprocess(v6, bandpass=(1.0, 45.0), notch=50.0)
    assert filtered.dtype == np.float32 and filtered.shape == v6.data.shape
    # Steady-state start: no ringing from the ~60 mV offset; the DC is gone after the first second.
    assert np.abs(filtered[:250]).max() < 2_000
    assert np.abs(filtered[250:].mean(axis=0)).max() < 50
    unfiltered = preprocess(v6, bandpass=None, notch=None)
    np.testing.assert_array_equal(unfiltered, v6.data)


def test_short_recordings_give_no_windows(v6):
    from dataclasses import replace

    short = replace(v6, data=v6.data[:300], times=v6.times[:300], markers=[])
    windows, mask, t_end = extract_windows(short)
    assert windows.shape == (0, 128, 512) and t_end.shape == (0,) and mask.sum() == 8


# ---------------------------------------------------------------------------------------------
# extract_epochs


def test_epochs_start_at_the_onset(muse):
    spec = WindowSpec(window_s=1.0)
    onsets = np.array([m.timestamp for m in muse.markers])
    labels = np.array([m.text for m in muse.markers])
    epochs, mask, valid = extract_epochs(muse, spec, onsets, offset_s=-0.1, normalise=False)
    assert epochs.shape == (197, 128, 256) and mask.sum() == 4
    assert valid.sum() >= 195
    # The epoch is the live window whose first sample is the one nearest to onset - 0.1 s.
    filtered = preprocess(muse)
    buffer = RingBuffer(muse.n_samples, muse.n_channels)
    buffer.write(filtered, muse.times)
    live = Windower(buffer, muse.sfreq, muse.ch_names, window_s=1.0, target_sfreq=256.0)
    start = int(muse.index_at(onsets[10] - 0.1))
    np.testing.assert_array_equal(epochs[10], live.window_at(start + 256).data)
    # N170: faces give a larger positive deflection than houses 130-210 ms after onset at TP9/TP10.
    rows = [spec.montage.index(c) for c in ("TP9", "TP10")]
    t = np.arange(256) / 256 - 0.1
    erp = {}
    for label in ("1", "2"):
        x = epochs[valid & (labels == label)][:, rows]
        x = x - x[:, :, t < 0].mean(axis=-1, keepdims=True)
        erp[label] = x[:, :, (t >= 0.13) & (t <= 0.21)].mean(axis=(0, 2))
    assert np.all(erp["2"] - erp["1"] > 1.0), erp
    # Onsets outside the recording are invalid and zero.
    out, _, ok = extract_epochs(muse, spec, [muse.times.min() - 10, muse.times.max() - 0.2, np.nan])
    assert not ok.any() and not out.any()


# ---------------------------------------------------------------------------------------------
# WindowDataset


def test_window_dataset_over_mixed_formats(shared_data, tmp_path, caplog):
    torch = pytest.importorskip("torch")
    pytest.importorskip("mne")
    junk = tmp_path / "junk.csv"
    junk.write_text("this,is\nnot,eeg\n")
    paths = [
        shared_data / V6,
        shared_data / MUSE,
        shared_data / "brainflow/test_data.csv",
        shared_data / "bci-essentials/sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf",
        shared_data / "mne-python/brainvision/tests/data/test.vhdr",
        junk,
        shared_data / "mne-python/brainvision/tests/data/test_bin_raw.fif",  # channels 'EEG 001'...: no montage site
    ]
    with caplog.at_level("WARNING"):
        ds = WindowDataset.from_paths(paths, WindowSpec(), hop_s=2.0)
    assert [r["source_format"] for r in ds.recordings] == [
        "openbci-v6", "muselsl-csv", "brainflow-csv", "xdf", "mne-vhdr"]
    assert [p for p, _ in ds.skipped] == [junk, paths[-1]]
    assert "not a recording bci-dream can read" in ds.skipped[0][1]
    assert "no channel" in ds.skipped[1][1]
    assert "2 of 7 recordings skipped" in caplog.text
    assert len(ds) == sum(r["n_windows"] for r in ds.recordings)
    assert [r["n_windows"] for r in ds.recordings][:3] == [44, 60, 5]
    item = ds[0]
    assert item["eeg"].dtype == torch.float32 and item["eeg"].shape == (128, 512)
    assert item["mask"].dtype == torch.bool and int(item["mask"].sum()) == 8
    assert item["recording"] == 0
    assert not item["eeg"][~item["mask"]].any()
    last = ds[len(ds) - 1]
    assert last["recording"] == 4 and int(last["mask"].sum()) == 26
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True)))
    assert batch["eeg"].shape == (16, 128, 512) and batch["mask"].shape == (16, 128)
    with pytest.raises(Exception, match="not a recording"):
        WindowDataset.from_paths([junk], on_error="raise")


def test_window_dataset_float16_matches_extract_windows(v6):
    ds = WindowDataset(WindowSpec(), dtype=np.float16)
    ds.add(v6, hop_s=1.0)
    windows, mask, t_end = extract_windows(v6, WindowSpec(), hop_s=1.0)
    eeg, m, r, t = ds.window(3)
    np.testing.assert_array_equal(m, mask)
    assert t == t_end[3] and r == 0
    np.testing.assert_allclose(eeg, windows[3], atol=2e-2)


def test_training_windows_never_straddle_a_gap():
    """Windows whose samples span a hole in the timestamps (samples that never arrived) are left out and counted."""
    from bci_dream.training.windows import straddles_gap

    times = np.arange(5000) / 250.0
    times[2600:] += 0.5  # a 0.5 s hole between samples 2599 and 2600
    ends = np.arange(512, 5001, 250)
    across = straddles_gap(times, 250.0, ends, 512)
    expected = [(end - 512 <= 2599) and (2600 <= end - 1) for end in ends]
    assert across.tolist() == expected and 0 < across.sum() < len(ends)
    assert not straddles_gap(np.arange(5000) / 250.0, 250.0, ends, 512).any()


def test_windows_of_a_dead_amplifier_or_missing_values_are_left_out(v6, caplog):
    """Real EEG (the OpenBCI recording) with 20 s of zeros (a disconnected amplifier) and 20 s of NaN (values that
    never came): the windows within them are left out and said; a recording that is all zeros is refused."""
    from dataclasses import replace

    from bci_dream.core.errors import RecordingError
    from bci_dream.training.windows import recording_windows

    fs = v6.sfreq
    data = v6.data.copy()
    data[int(10 * fs):int(30 * fs)] = 0.0
    data[int(50 * fs):int(70 * fs)] = np.nan
    damaged = replace(v6, data=data)
    whole = recording_windows(v6, WindowSpec(), hop_s=1.0)
    kept = recording_windows(damaged, WindowSpec(), hop_s=1.0)
    t = whole.t_end - v6.times[0]  # (each window holds the 2 s before its t_end)
    within = ((10 <= t - 2) & (t <= 30)) | ((50 <= t - 2) & (t <= 70))
    touching = ((t > 10) & (t - 2 < 30)) | ((t > 50) & (t - 2 < 70))
    assert not set(whole.t_end[within]) & set(kept.t_end) and set(whole.t_end[~touching]) <= set(kept.t_end)
    left_out = len(whole.t_end) - len(kept.t_end)
    assert within.sum() >= 30 and f"{left_out} of {len(whole.t_end)} windows are flat or missing" in caplog.text
    with pytest.raises(RecordingError, match="every window of .* is flat or missing"):
        recording_windows(replace(v6, data=np.zeros_like(v6.data)), WindowSpec())
