"""Replay of real .xdf recordings, checked sample-exactly against pyxdf, and bad files."""

import time

import numpy as np
import pytest
import pyxdf

from bci_dream.acquisition.xdf_replay import XdfReplaySource
from bci_dream.core.errors import RecordingError
from bci_dream.io.xdf_writer import XdfWriter

REAL_FILES = [
    ("bci-essentials/ssvep_example.xdf", "DSI7", 258),
    ("bci-essentials/sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf", "g.USBamp-1", 74),
    ("bci-essentials/sub-P001_ses-S001_task-T1_run-001_eeg_old1.xdf", "g.USBamp-1", 180),
    ("xdf-example-files/minimal.xdf", "SendDataC", 9),
    ("xdf-jl/twochannel_string_marker.xdf", "SendDataC", 1),
]


def _replay(source: XdfReplaySource, timeout: float = 60):
    chunks = []
    source.open()
    source.start(chunks.append)
    assert source.wait(timeout)
    data = np.concatenate([c.samples for c in chunks])
    ts = np.concatenate([c.timestamps for c in chunks])
    markers = [m for c in chunks for m in c.markers]
    return data, ts, markers


@pytest.mark.parametrize("rel,name,n_markers", REAL_FILES)
def test_replay_at_full_speed_is_sample_exact(shared_data, rel, name, n_markers):
    path = shared_data / rel
    streams, _ = pyxdf.load_xdf(str(path))
    ref = next(s for s in streams if s["info"]["name"][0] == name)
    source = XdfReplaySource(path, speed=0)
    data, ts, markers = _replay(source)
    assert source.info.name == name
    np.testing.assert_array_equal(data, np.asarray(ref["time_series"], np.float32))
    np.testing.assert_allclose(ts + source.time_offset, ref["time_stamps"], rtol=0, atol=1e-6)
    assert len(markers) == n_markers
    # markers keep their place relative to the samples
    others = [s for s in streams if s is not ref and s["info"]["channel_format"][0] == "string"]
    ref_marker_times = np.sort(np.concatenate([s["time_stamps"] for s in others]))
    np.testing.assert_allclose(sorted(m.timestamp + source.time_offset for m in markers), ref_marker_times, atol=1e-6)


@pytest.mark.parametrize("rel", ["mne-python/brainvision/tests/data/test.vhdr", "mne-python/edf/tests/data/test.edf",
                                 "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt",
                                 "muse-lsl/N170/data_2017-09-13-15.30.01.csv"])
def test_any_recording_bci_dream_reads_replays_sample_exact_with_its_markers(shared_data, rel):
    """Not only .xdf: a BrainVision, EDF, OpenBCI or Muse recording replays its samples (µV) and markers as read."""
    from bci_dream.io.readers import read_recording

    rec = read_recording(shared_data / rel)
    source = XdfReplaySource(shared_data / rel, speed=0)
    data, ts, markers = _replay(source)
    assert source.info.ch_names == rec.ch_names and source.info.sfreq == rec.sfreq and source.info.units == "uV"
    np.testing.assert_array_equal(data, rec.data)
    np.testing.assert_allclose(ts + source.time_offset, rec.times, rtol=0, atol=1e-6)
    assert sorted((round(m.timestamp + source.time_offset, 6), m.text) for m in markers) == \
        sorted((round(m.timestamp, 6), m.text) for m in rec.markers)


def test_real_time_pace_and_speed_factor(shared_data):
    path = shared_data / "bci-essentials/ssvep_example.xdf"
    source = XdfReplaySource(path, speed=50.0)
    t0 = time.monotonic()
    data, ts, _ = _replay(source)
    took = time.monotonic() - t0
    assert data.shape[0] == 33002
    assert 0.8 * 110 / 50 < took < 1.5 * 110 / 50 + 0.5
    # emitted timestamps are compressed by the speed factor
    file_span = source.session.eeg.timestamps[-1] - source.session.eeg.timestamps[0]
    assert ts[-1] - ts[0] == pytest.approx(file_span / 50, rel=1e-6)


def test_loop_continues_the_timeline(shared_data):
    source = XdfReplaySource(shared_data / "xdf-example-files/minimal.xdf", speed=0, loop=True)
    chunks = []
    source.open()
    source.start(chunks.append)
    deadline = time.monotonic() + 5
    while source.loops_done < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    source.stop()
    ts = np.concatenate([c.timestamps for c in chunks])
    assert len(ts) >= 27 and np.all(np.diff(ts) > 0)


def test_missing_corrupt_and_truncated_files(tmp_path, shared_data):
    with pytest.raises(RecordingError, match="does not exist"):
        XdfReplaySource(tmp_path / "nope.xdf").open()
    junk = tmp_path / "junk.xdf"
    junk.write_bytes(b"this is not xdf at all")
    with pytest.raises(RecordingError, match="is not an XDF file"):
        XdfReplaySource(junk).open()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes((shared_data / "bci-essentials/ssvep_example.xdf").read_bytes()[:700_000])
    data, _, _ = _replay(XdfReplaySource(cut, speed=0))
    assert 0 < data.shape[0] < 33002
    header_only = tmp_path / "header.xdf"
    header_only.write_bytes((shared_data / "bci-essentials/ssvep_example.xdf").read_bytes()[:60])
    with pytest.raises(RecordingError):
        XdfReplaySource(header_only).open()


def test_empty_eeg_stream_and_no_eeg_stream(tmp_path, shared_data):
    with pytest.raises(RecordingError, match="'obci_eeg1'.*holds no samples"):
        XdfReplaySource(shared_data / "bci4als/empty_eeg_stream.xdf").open()
    only_markers = tmp_path / "markers.xdf"
    with XdfWriter(only_markers) as w:
        sid = w.add_stream("Markers", "Markers", 1, 0.0, channel_format="string")
        w.write_strings(sid, ["a", "b"], [1.0, 2.0])
    with pytest.raises(RecordingError, match="has no EEG stream"):
        XdfReplaySource(only_markers).open()
    with pytest.raises(RecordingError, match="no stream named or typed 'EMG'"):
        XdfReplaySource(shared_data / "xdf-example-files/minimal.xdf", stream="EMG").open()


def test_pause_seek_and_speed_keep_timestamps_increasing(shared_data):
    """Playback controls of the desktop app on a real recording (ssvep_example.xdf, 300 Hz, 110 s)."""
    source = XdfReplaySource(shared_data / "bci-essentials/ssvep_example.xdf", speed=1.0)
    source.open()
    chunks = []
    source.start(chunks.append)
    try:
        time.sleep(0.5)
        source.pause()
        time.sleep(0.1)
        n_paused = sum(len(c.samples) for c in chunks)
        time.sleep(0.5)
        assert source.paused and sum(len(c.samples) for c in chunks) == n_paused  # nothing while paused
        at_pause = source.position
        assert 0.3 < at_pause < 1.0
        source.seek(60.0)
        source.resume()
        time.sleep(0.5)
        assert 60.0 <= source.position < 61.0
        source.set_speed(4.0)
        before = source.position
        time.sleep(0.5)
        assert source.position - before > 1.2  # about 2 s of signal in 0.5 s
    finally:
        source.stop()
    data = np.concatenate([c.samples for c in chunks])
    ts = np.concatenate([c.timestamps for c in chunks])
    assert np.all(np.diff(ts) > 0)  # across pause, seek and speed change
    eeg = source.session.eeg
    first_after_seek = int(np.searchsorted(eeg.timestamps, eeg.timestamps[0] + 60.0))
    k = n_paused  # the first sample emitted after the seek is the file's sample at 60 s
    np.testing.assert_array_equal(data[k], eeg.data[first_after_seek])


def test_real_time_after_a_pass_at_full_speed_does_not_freeze(shared_data):
    """Speed 0 stamps run ahead of the clock; switching to real time must go on at once, not wait for it."""
    source = XdfReplaySource(shared_data / "xdf-example-files/minimal.xdf", speed=0, loop=True)
    source.open()
    chunks = []
    source.start(chunks.append)
    try:
        time.sleep(0.3)
        source.set_speed(1.0)
        time.sleep(0.1)
        n = sum(len(c.samples) for c in chunks)
        time.sleep(1.0)
        assert sum(len(c.samples) for c in chunks) > n  # still replaying
    finally:
        source.stop()
    ts = np.concatenate([c.timestamps for c in chunks])
    assert np.all(np.diff(ts) > 0)


def test_a_paused_replay_is_not_counted_as_lost_samples(shared_data):
    from bci_dream.acquisition.live import LiveStream

    source = XdfReplaySource(shared_data / "bci-essentials/ssvep_example.xdf", speed=1.0)
    live = LiveStream(source)
    live.open()
    live.start()
    try:
        time.sleep(0.4)
        source.pause()
        time.sleep(1.5)  # longer than the pipeline's jump threshold
        source.resume()
        time.sleep(0.4)
        source.seek(30.0)
        time.sleep(0.3)
    finally:
        live.stop()
    stats = live.pipeline.stats
    assert stats.samples > 0 and stats.timestamp_jumps == 0 and stats.timestamps_backwards == 0
