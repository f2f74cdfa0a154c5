"""A BrainFlow board's rows beside the EEG (accelerometer, PPG, analog inputs): asked for by the profile or --aux,
recorded to .xdf as streams of their own, read back, and usable as the calibration's photodiode channel.

BrainFlow's real synthetic board delivers every aux kind but 'analog' (a Cyton's); the photodiode test writes a real
file through the recorder with an analog stream lit at known times, as a Cyton in analog mode would record it.
"""

import subprocess
import sys
import time

import numpy as np
import pytest
from pylsl import local_clock

from bci_dream.acquisition.brainflow_source import BrainFlowSource
from bci_dream.acquisition.live import LiveStream, make_source
from bci_dream.acquisition.recorder import SessionRecorder
from bci_dream.calibrate.photodiode import recorded_photodiode_offsets
from bci_dream.core.errors import BciDreamError, DeviceError
from bci_dream.core.types import Chunk, Marker, StreamInfo
from bci_dream.devices import get_profile, load_profile, parse_aux_kinds
from bci_dream.io.readers import read_recording


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        time.sleep(0.02)
    return predicate()


def test_synthetic_board_aux_rows_are_recorded_as_streams_of_their_own(tmp_path):
    # accel shares the EEG preset's samples; 'other' exists only in the board's auxiliary preset (own timestamps)
    live = LiveStream(BrainFlowSource(get_profile("synthetic"), aux=("accel", "other")))
    live.open()
    assert [a.stream_type for a in live.aux_infos] == ["ACC", "AUX"]
    assert live.all_channel_names[16:] == ("AccX", "AccY", "AccZ", "Other1", "Other2", "Other3", "Other4")
    live.start()
    try:
        live.start_recording(tmp_path / "aux.xdf")
        assert _wait(lambda: live.recorder.samples >= 500, 15)
    finally:
        summary = live.stop()
    rec = read_recording(tmp_path / "aux.xdf")
    assert rec.n_channels == 16  # the EEG is still the recording's data
    accel, other = rec.aux
    assert (accel.name, accel.ch_names, accel.sfreq) == ("Synthetic accel", ("AccX", "AccY", "AccZ"), 250.0)
    assert other.ch_names == ("Other1", "Other2", "Other3", "Other4") and other.data.shape[1] == 4
    # every accel row came with an EEG sample; the auxiliary preset streams at the same rate
    assert abs(accel.data.shape[0] - rec.n_samples) <= 5 and other.data.shape[0] > 0.8 * rec.n_samples
    assert summary.aux_samples == accel.data.shape[0] + other.data.shape[0]
    assert np.all(np.isfinite(accel.data)) and abs(accel.times[0] - rec.times[0]) < 0.5
    times, values = rec.channel("AccY")
    assert times.shape == values.shape == (accel.data.shape[0],)
    assert rec.channel("nope") is None


def test_the_profile_asks_for_aux_kinds_and_the_board_must_have_them(tmp_path):
    text = (tmp_path / "s.toml")
    text.write_text('name = "s"\nsource = "brainflow"\nboard = "SYNTHETIC_BOARD"\n'
                    'channels = ["Fz","C3","Cz","C4","Pz","PO7","Oz","PO8","F5","F7","F3","F1","F2","F4","F6","F8"]\n'
                    '[aux]\nrecord = ["ppg"]\n[aux.channels]\nppg = ["Red", "IR"]\n')
    profile = load_profile(text)
    source = BrainFlowSource(profile)
    source.open()
    try:
        assert [a.ch_names for a in source.aux_infos] == [("Red", "IR")]
    finally:
        source._release()
    with pytest.raises(DeviceError, match="has no analog channels.*accel.*ppg"):
        BrainFlowSource(profile, aux=("analog",)).open()
    again = BrainFlowSource(profile)  # looking for the kind left the board usable (BrainFlow 5.23 trap)
    again.open()
    again._release()
    bad = tmp_path / "b.toml"
    bad.write_text('name = "b"\nsource = "lsl"\n[aux]\nrecord = ["accel"]\n')
    with pytest.raises(DeviceError, match="applies to BrainFlow boards"):
        load_profile(bad)
    bad.write_text('name = "b"\nsource = "brainflow"\nboard = "SYNTHETIC_BOARD"\n[aux]\nrecord = ["heartbeat"]\n')
    with pytest.raises(DeviceError, match="unknown aux kind 'heartbeat'"):
        load_profile(bad)


def test_aux_kinds_from_the_command_line():
    assert parse_aux_kinds(None) is None and parse_aux_kinds("none") == () and parse_aux_kinds("") == ()
    assert parse_aux_kinds("ACCEL, ppg,accel") == ("accel", "ppg")
    with pytest.raises(DeviceError, match="unknown aux kind 'eye'.*accel"):
        parse_aux_kinds("eye")
    with pytest.raises(DeviceError, match="LSL stream"):
        make_source(get_profile("lsl"), {}, aux=("accel",))


def test_a_photodiode_on_an_analog_input_measures_the_true_onsets(tmp_path):
    """What a Cyton in analog mode records (EEG, markers, and A5..A7 as their own stream); the light comes on 23 ms
    after each marker. The photodiode check finds the channel in the aux stream and measures those 23 ms."""
    fs = 250.0
    eeg = StreamInfo("Cyton", tuple(f"C{i}" for i in range(8)), fs, source_id="test")
    analog = StreamInfo("Cyton analog", ("A5", "A6", "A7"), fs, units="", source_id="test:analog", stream_type="AUX")
    path = tmp_path / "part.xdf"
    recorder = SessionRecorder(path, eeg, aux=[analog])
    t0 = local_clock()
    times = t0 + np.arange(int(20 * fs)) / fs
    markers = [t0 + 2.0 + 3.0 * k for k in range(5)]
    light = np.zeros(times.size, np.float32)
    for m in markers:
        light[(times >= m + 0.023) & (times < m + 1.0)] = 900.0
    for start in range(0, times.size, 25):
        block = slice(start, start + 25)
        ms = [Marker(m, "img", "bci-dream") for m in markers if times[block][0] <= m < times[block][-1] + 1 / fs]
        recorder.push(Chunk(np.zeros((len(times[block]), 8), np.float32), times[block], ms))
        recorder.push_aux(0, Chunk(np.stack([light[block], light[block] * 0, light[block] * 0], 1), times[block]))
    summary = recorder.stop()
    assert summary.aux_samples == times.size
    offsets = recorded_photodiode_offsets(path, "A5", markers)
    assert offsets == pytest.approx([23.0] * 5, abs=4.1)  # one sample at 250 Hz
    with pytest.raises(BciDreamError, match="no channel 'A9'.*A5, A6, A7"):
        recorded_photodiode_offsets(path, "A9", markers)


def test_record_command_with_aux(tmp_path):
    out = tmp_path / "r.xdf"
    run = subprocess.run([sys.executable, "-m", "bci_dream.cli", "record", "-o", str(out), "--seconds", "1.5",
                          "--aux", "accel,gyro"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Synthetic accel: AccX, AccY, AccZ at 250 Hz" in run.stdout and "aux samples" in run.stdout
    assert [a.stream_type for a in read_recording(out).aux] == ["ACC", "GYRO"]
    bad = subprocess.run([sys.executable, "-m", "bci_dream.cli", "record", "-o", str(tmp_path / "x.xdf"), "--seconds", "1",
                          "--aux", "analog"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "bci-dream: error: BrainFlow synthetic board (16 ch, 250 Hz, no hardware) has no analog channels (aux kinds "
        "it has: accel, eda, gyro, ppg, temperature, other); change --aux or [aux] record in the profile"]
    assert not (tmp_path / "x.xdf").exists()
