"""The calibration session on disk and the signal check, without a window."""

import json

import numpy as np
import pytest

from bci_dream.calibrate.session import CalibrationSession, SessionError, ShownTrial
from bci_dream.calibrate.signal_check import SignalCheck, is_muse
from bci_dream.signal.quality import ChannelQuality
from bci_dream.training.pairs import read_pairs


def trial(index: int, part: int = 1, t: float = 100.0) -> ShownTrial:
    return ShownTrial(index, part, str(index % 3 + 1), f"class-{index % 3 + 1}", f"/img/{index % 3}.png",
                      1.0 + index, t + index, t + index + 0.0005, t + index + 0.001)


def test_a_session_is_written_through_and_read_back(tmp_path):
    s = CalibrationSession.create(tmp_path / "s01", "s01", "synthetic", "default", "/stim", n_trials=10)
    assert s.new_part().name == "part-01.xdf"
    for i in range(4):
        s.add_trial(trial(i))
    s.mark_affected([3], "cut short by a pause")
    again = CalibrationSession.load(s.folder)  # (as after a crash: nothing was "finished")
    assert again.status == "recording" and again.parts == ["part-01.xdf"]
    assert [t.index for t in again.usable_trials()] == [0, 1, 2] and again.affected == {3: "cut short by a pause"}
    assert again.next_index() == 3
    assert CalibrationSession.unfinished(tmp_path / "s01").folder == s.folder

    s.new_part()
    for i in range(3, 10):
        s.add_trial(trial(i, part=2))
    assert not s.affected and s.next_index() == 10
    s.finish("complete")
    assert CalibrationSession.unfinished(tmp_path / "s01") is None
    # (pairs name recordings that exist only once recorded; here only the manifest's rows are checked)
    rows = (s.folder / "pairs.csv").read_text().splitlines()
    assert rows[0] == "recording,onset,marker,image,class" and len(rows) == 11
    assert rows[4].startswith("part-02.xdf,")  # trial 3 was shown again in the second part


def test_a_torn_last_line_is_skipped_and_a_broken_session_is_said(tmp_path):
    s = CalibrationSession.create(tmp_path, "s01", "synthetic", "default", "/stim", n_trials=5)
    s.new_part()
    s.add_trial(trial(0))
    with open(s.folder / "trials.jsonl", "a") as f:
        f.write('{"index": 1, "part": 1, "mar')  # the process died mid-write
    assert len(CalibrationSession.load(s.folder).trials) == 1
    (s.folder / "session.json").write_text("{not json")
    with pytest.raises(SessionError, match="cannot be read"):
        CalibrationSession.load(s.folder)
    with pytest.raises(SessionError, match="not a calibration session"):
        CalibrationSession.load(tmp_path / "nothing")


def test_trials_after_a_time_are_those_a_lost_headset_cut_into(tmp_path):
    s = CalibrationSession.create(tmp_path, "s01", "synthetic", "default", "/stim", n_trials=10)
    s.new_part()
    for i in range(6):
        s.add_trial(trial(i, t=100.0))  # frame times 100.001, 101.001, ...
    assert s.trials_after(103.0) == [3, 4, 5]


def test_the_pairs_manifest_reads_back_with_the_frame_times(tmp_path):
    s = CalibrationSession.create(tmp_path, "s01", "synthetic", "default", "/stim", n_trials=2)
    part = s.new_part()
    part.write_bytes(b"")  # the manifest reader wants the recording and the images to exist
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    s.add_trial(ShownTrial(0, 1, "1", "a", str(img), 1.0, 10.0, 10.0005, 10.001))
    s.add_trial(ShownTrial(1, 1, "1", "a", str(img), 2.0, 11.0, 11.0005, 11.00125))
    pairs = read_pairs(s.write_pairs())
    assert [p.onset for p in pairs] == [10.001, 11.00125] and all(p.recording == part for p in pairs)


def quality(name: str, status: str, std: float = 10.0) -> ChannelQuality:
    return ChannelQuality(name, status, std, 50.0, 0.5, 0.0, 10.0)


def test_the_signal_check_passes_a_channel_good_in_most_seconds_and_advises_muse_wearers():
    names = ["TP9", "AF7", "AF8", "TP10"]
    assert is_muse(names) and not is_muse(["Fp1", "Fp2", "C3", "C4"])
    check = SignalCheck(names, seconds=5)
    assert not check.ready and not check.passed and check.verdicts()[0].problem == "no signal yet"
    for second in range(5):
        check.update([quality("TP9", "good", 10.0 + second), quality("AF7", "line_noise" if second else "good"),
                      quality("AF8", "good" if second else "high_amplitude"), quality("TP10", "flat")])
        check.update(check._history[-1])  # polled again before the next second: not counted twice
    v = {x.name: x for x in check.verdicts()}
    assert v["TP9"].passed and v["AF8"].passed and v["AF8"].good_share == pytest.approx(0.8)
    assert not v["AF7"].passed and v["AF7"].problem == "line_noise" and v["AF7"].contact == "poor"
    assert "left forehead" in v["AF7"].advice and "Mains hum" in v["AF7"].advice
    assert "behind the right ear" in v["TP10"].advice and not check.passed
    text = check.describe_thresholds()
    assert "0.5 µV" in text and "100 µV" in text and "50 ± 1 Hz" in text and "80%" in text
    check.update([quality("TP9", "good")])  # a snapshot with the wrong channel count is ignored
    assert check.seconds_seen == 5


def test_quality_of_the_real_synthetic_board_feeds_the_check():
    """BrainFlow's synthetic board through the real pipeline: every channel gets a verdict within a few seconds."""
    import time

    from bci_dream.acquisition.filter_settings import FilterSettings
    from bci_dream.acquisition.live import LiveStream, make_source
    from bci_dream.devices import get_profile

    profile = get_profile("synthetic")
    live = LiveStream(make_source(profile), filters=FilterSettings(profile.bandpass, profile.notch))
    live.start()
    try:
        check = SignalCheck(live.info.ch_names, seconds=2)
        deadline = time.monotonic() + 15
        while not check.ready and time.monotonic() < deadline:
            time.sleep(1.0)
            check.update(live.status().quality)
    finally:
        live.stop()
    assert check.ready and len(check.verdicts()) == live.info.n_channels
    assert all(np.isfinite(v.good_share) for v in check.verdicts())
    json.dumps([v.__dict__ for v in check.verdicts()])


def test_photodiode_onsets_are_found_after_their_markers(tmp_path):
    from bci_dream.calibrate.photodiode import photodiode_offsets

    fs = 1000.0
    times = 50.0 + np.arange(20000) / fs
    light = np.zeros_like(times)
    markers = [52.0, 55.5, 60.0, 65.25]
    for m in markers[:3]:
        light[(times >= m + 0.0183) & (times < m + 0.5)] = 800.0  # the screen lit 18.3 ms after each marker
    offsets = photodiode_offsets(times, light + np.random.default_rng(0).normal(0, 5, times.size), markers)
    assert offsets[:3] == pytest.approx([18.3, 18.3, 18.3], abs=1.01) and np.isnan(offsets[3])
