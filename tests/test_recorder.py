"""Record → read with pyxdf → replay gives back the same samples; a killed recorder leaves a readable file."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import pyxdf

from bci_dream.acquisition.brainflow_source import BrainFlowSource
from bci_dream.acquisition.live import LiveStream
from bci_dream.acquisition.xdf_replay import XdfReplaySource
from bci_dream.core.errors import RecordingError
from bci_dream.devices import get_profile


def _streams_by_type(path):
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["type"][0]: s for s in streams}


def test_record_read_replay_round_trip(tmp_path, shared_data):
    out = tmp_path / "session.xdf"
    live = LiveStream(XdfReplaySource(shared_data / "bci-essentials/ssvep_example.xdf", speed=0))
    live.open()
    live.start_recording(out)
    live.start()
    assert live.source.wait(30)
    summary = live.stop()
    assert summary.samples == 33002 and summary.markers == 258
    raw = live.pipeline.raw.latest(live.pipeline.raw.capacity)
    original = pyxdf.load_xdf(str(shared_data / "bci-essentials/ssvep_example.xdf"))[0]
    original_eeg = next(s for s in original if s["info"]["type"][0] == "EEG")

    streams = _streams_by_type(out)
    eeg = streams["EEG"]
    assert [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]] == list(live.info.ch_names)
    np.testing.assert_array_equal(eeg["time_series"], original_eeg["time_series"])
    np.testing.assert_array_equal(eeg["time_stamps"][-len(raw):], raw.timestamps)
    assert len(streams["Markers"]["time_series"]) == 258
    events = [e[0] for e in streams["Events"]["time_series"]]
    assert events[0].startswith("recording started") and events[-1] == "recording stopped"

    # ... and the recording replays to the very same samples as the original file
    replay = LiveStream(XdfReplaySource(out, speed=0))
    replay.open()
    replay.start()
    assert replay.source.wait(30)
    replay.stop()
    replayed = replay.pipeline.raw.latest(replay.pipeline.raw.capacity)
    assert replay.pipeline.stats.samples == 33002
    np.testing.assert_array_equal(replayed.data, original_eeg["time_series"][-len(replayed):])


def test_recording_a_live_board_keeps_every_sample(tmp_path):
    out = tmp_path / "synthetic.xdf"
    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    live.open()
    live.start_recording(out)
    live.start()
    time.sleep(1.5)
    live.source.insert_marker(7)
    time.sleep(0.5)
    summary = live.stop()
    eeg = _streams_by_type(out)["EEG"]
    assert eeg["time_series"].shape[0] == summary.samples == live.pipeline.raw.total_written > 300
    np.testing.assert_array_equal(eeg["time_series"], live.pipeline.raw.since(0).data)
    assert [m[0] for m in _streams_by_type(out)["Markers"]["time_series"]] == ["7"]


def test_refuses_to_overwrite_and_wrong_suffix(tmp_path, shared_data):
    live = LiveStream(XdfReplaySource(shared_data / "xdf-example-files/minimal.xdf", speed=0))
    live.open()
    existing = tmp_path / "a.xdf"
    existing.write_bytes(b"keep me")
    with pytest.raises(RecordingError, match="already exists"):
        live.start_recording(existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(RecordingError, match=r"\.xdf"):
        live.start_recording(tmp_path / "a.csv")
    with pytest.raises(RecordingError, match="does not exist"):
        live.start_recording(tmp_path / "no" / "folder.xdf")


def test_record_command_killed_with_sigkill_leaves_a_readable_file(tmp_path):
    out = tmp_path / "killed.xdf"
    proc = subprocess.Popen([sys.executable, "-m", "bci_dream.cli", "record", "--device", "synthetic",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "recording 3." in line or "recording 4." in line:
                break
        else:
            pytest.fail("the record command printed no progress: " + "".join(lines))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    eeg = _streams_by_type(out)["EEG"]
    # at 250 Hz, 3 s of recording means at least 2 s of samples on disk
    assert eeg["time_series"].shape[0] >= 500
    assert np.all(np.isfinite(eeg["time_series"]))


def test_record_command_stops_cleanly_on_sigterm(tmp_path):
    out = tmp_path / "term.xdf"
    proc = subprocess.Popen([sys.executable, "-m", "bci_dream.cli", "record", "--device", "synthetic",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "recording" not in (line := proc.stdout.readline()) or "1." not in line:
        assert line, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out_text = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out_text
    streams, _ = pyxdf.load_xdf(str(out))
    assert all("footer" in s for s in streams)
    assert "recorded" in out_text


def test_app_markers_from_another_thread_are_recorded_at_their_times(tmp_path):
    """Stimulus onsets marked by the app (here from the test's thread, as the GUI would at frame time) go into
    the recording's marker stream with their exact timestamps while BrainFlow's real synthetic board streams."""
    from pylsl import local_clock

    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    live.open()
    live.start()
    path = tmp_path / "marked.xdf"
    try:
        live.start_recording(path)
        time.sleep(0.3)
        marks = []
        for k in range(5):
            marks.append(live.mark(str(k % 2 + 1), local_clock()))
            time.sleep(0.1)
        time.sleep(0.2)
        summary = live.stop_recording()
    finally:
        live.stop()
    assert summary.markers == 5
    assert [m.text for m in live.pipeline.markers.since(0)[0]] == ["1", "2", "1", "2", "1"]
    streams, _ = pyxdf.load_xdf(str(path))
    markers = next(s for s in streams if s["info"]["type"][0] == "Markers" and len(s["time_series"]) == 5)
    assert [x[0] for x in markers["time_series"]] == [m.text for m in marks]
    np.testing.assert_allclose(markers["time_stamps"], [m.timestamp for m in marks], atol=1e-6)
