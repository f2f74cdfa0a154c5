"""Every recording format of the shared data reads into the same Recording: µV, [n, C], markers, times."""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bci_dream.core.errors import RecordingError
from bci_dream.io.readers import read_recording, sniff_format
from bci_dream.io.recording import Recording

OPENBCI = "openbci-gui/"
SAME_RECORDING = [
    OPENBCI + "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt",
    OPENBCI + "OpenBCI_GUI-v5-blinks-jawClench-alpha.txt",
    OPENBCI + "OpenBCI-sampleData-1-blinks-jawClench-alpha.txt",
]
MUSE = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
MNE_DIR = "mne-python/brainvision/tests/data/"
EDF_DIR = "mne-python/edf/tests/data/"

# path, source_format, channels, rate, samples (exact, or None), duration in s (approximate)
CASES = [
    ("bci-essentials/ssvep_example.xdf", "xdf", 8, 300.0, None, 110.0),
    ("bci-essentials/sub-P001_ses-S001_task-P300Checkboard_run-001_eeg.xdf", "xdf", 16, 256.0, None, 74.5),
    ("bci-essentials/sub-P001_ses-S001_task-T1_run-001_eeg_old1.xdf", "xdf", 16, 256.0, None, 42.6),
    (MNE_DIR + "test.vhdr", "mne-vhdr", 26, 1000.0, 7900, 7.9),
    (MNE_DIR + "test_bin_raw.fif", "mne-fif", 32, 1000.0, 7900, 7.9),
    (EDF_DIR + "test.bdf", "mne-bdf", 72, 2048.0, 2048, 1.0),
    (EDF_DIR + "test.edf", "mne-edf", 138, 512.0, 3072, 6.0),
    (EDF_DIR + "test_edf_stim_channel.edf", "mne-edf", 20, 128.0, None, None),
    (SAME_RECORDING[0], "openbci-v6", 8, 250.0, 22490, 90.0),
    (SAME_RECORDING[1], "openbci-v5", 8, 250.0, 22490, 90.0),
    (SAME_RECORDING[2], "openbci-v4", 8, 250.0, 22490, 90.0),
    (OPENBCI + "OpenBCI-RAW-2016-07-21_17-46-29.txt", "openbci-raw", 8, 250.0, 7765, 31.0),
    (OPENBCI + "SDconverted-2014-10-22_16-27-06.txt", "openbci-sd", 8, 250.0, 3471, 13.9),
    ("brainflow/test_data.csv", "brainflow-csv", 16, 250.0, 2502, 10.0),
    (MUSE, "muselsl-csv", 4, 256.0, 30732, 120.0),
]


HAS_MNE = importlib.util.find_spec("mne") is not None
needs_mne = pytest.mark.skipif(not HAS_MNE, reason="MNE-Python is not installed")


class _Cache(dict):
    """Recordings read once per module, on first use (so that tests without MNE can skip theirs)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, rel: str) -> Recording:
        self[rel] = read_recording(self.root / rel)
        return self[rel]


@pytest.fixture(scope="module")
def recordings(shared_data: Path) -> dict[str, Recording]:
    return _Cache(shared_data)


@pytest.mark.parametrize("rel, fmt, n_ch, sfreq, n_samples, duration", [
    pytest.param(*c, id=c[0].split("/")[-1], marks=[needs_mne] if c[1].startswith("mne") else []) for c in CASES])
def test_reads_every_format(recordings, rel, fmt, n_ch, sfreq, n_samples, duration):
    rec = recordings[rel]
    assert rec.source_format == fmt
    assert rec.data.dtype == np.float32 and rec.data.ndim == 2
    assert rec.n_channels == n_ch == len(rec.ch_names)
    assert rec.sfreq == sfreq
    if n_samples is not None:
        assert rec.n_samples == n_samples
    if duration is not None:
        assert rec.duration == pytest.approx(duration, abs=0.6)
    assert rec.times.dtype == np.float64 and rec.times.shape == (rec.n_samples,)
    assert np.isfinite(rec.data).all()
    # µV, not V: sample-to-sample steps of the typical channel (flat ones aside; differences ignore
    # the DC offsets and drifts of OpenBCI and g.USBamp) are 0.1 .. 10,000 µV.
    step = np.diff(rec.data.astype(np.float64), axis=0).std(axis=0)
    assert 0.1 < np.median(step[step > 0]) < 10_000
    # Markers are sorted and lie in the recording's time base.
    stamps = [m.timestamp for m in rec.markers]
    assert stamps == sorted(stamps)
    if stamps:
        assert rec.times.min() - 5 <= stamps[0] and stamps[-1] <= rec.times.max() + 5


def test_xdf_keeps_lsl_times_and_markers(recordings):
    rec = recordings["bci-essentials/ssvep_example.xdf"]
    assert rec.ch_names == ("S2", "F4", "C4", "S3", "S1", "C3", "F3", "TRG")
    assert rec.times[0] > 1000  # LSL clock seconds, not 0-based
    assert np.all(np.diff(rec.times) > 0)  # dejittered
    texts = Counter(m.text for m in rec.markers)
    assert texts["Trial Started"] > 0 and any(t.startswith("1.4,") for t in texts)
    # g.USBamp's DC offset survives as microvolts (about -19.7 mV on the first channel).
    old = recordings["bci-essentials/sub-P001_ses-S001_task-T1_run-001_eeg_old1.xdf"]
    assert -25_000 < old.data[:, 0].mean() < -10_000


def test_xdf_minimal_exact_values(shared_data):
    rec = read_recording(shared_data / "xdf-example-files/minimal.xdf")
    assert rec.data.shape == (9, 3) and rec.sfreq == 10.0
    np.testing.assert_array_equal(rec.data[:2], [[192, 255, 238], [12, 22, 32]])
    assert [m.text for m in rec.markers][1:3] == ["Hello", "World"]


@needs_mne
def test_mne_volts_to_microvolts_and_markers(recordings):
    vhdr = recordings[MNE_DIR + "test.vhdr"]
    fif = recordings[MNE_DIR + "test_bin_raw.fif"]
    # The same recording twice: BrainVision annotations and the FIF's STI 014 events agree in time.
    assert vhdr.times[0] == 0.0 and fif.times[0] == 0.0
    assert len(vhdr.markers) == 13 and vhdr.markers[0].text == "Stimulus/S253"
    assert [m.text for m in fif.markers[:3]] == ["253", "255", "254"] and len(fif.markers) == 10
    assert fif.markers[0].stream == "STI 014"
    assert vhdr.markers[0].timestamp == pytest.approx(fif.markers[0].timestamp) == pytest.approx(0.486)
    np.testing.assert_allclose(vhdr.data[:, 0], fif.data[:, 0], rtol=1e-4, atol=1e-2)
    edf = recordings[EDF_DIR + "test.edf"]
    texts = [m.text for m in edf.markers]
    assert "type A" in texts and any(m.stream == "Status" for m in edf.markers)
    bdf = recordings[EDF_DIR + "test.bdf"]
    assert "Status" not in bdf.ch_names and [m.text for m in bdf.markers] == ["128"]


@needs_mne
def test_mne_edf_channel_types_from_labels(recordings):
    rec = recordings[EDF_DIR + "test_edf_stim_channel.edf"]
    assert rec.ch_names[:3] == ("Fp1", "Fp2", "F7")  # "EEG Fp1" → "Fp1"
    assert not any(n.upper().startswith(("ECG", "EOG", "VEOG", "DIG")) for n in rec.ch_names)


def test_openbci_formats_give_the_same_samples(recordings):
    v6, v5, v4 = (recordings[r] for r in SAME_RECORDING)
    assert v6.ch_names == ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
    np.testing.assert_array_equal(v6.data, v5.data)
    np.testing.assert_array_equal(v6.data, v4.data)
    np.testing.assert_allclose(v6.times, v5.times, atol=1e-6)
    np.testing.assert_allclose(v6.times, v4.times, atol=1e-6)
    assert v6.data[0, 0] == pytest.approx(61379.36)  # the v5 zero placeholder row is gone
    assert v6.info["time_source"] == "timestamps"
    assert v6.times[-1] == pytest.approx(89.837, abs=0.01)


def test_openbci_raw_counter_and_sd_truncated_row(recordings):
    raw = recordings[OPENBCI + "OpenBCI-RAW-2016-07-21_17-46-29.txt"]
    assert int(np.count_nonzero(raw.data.any(axis=0))) == 1  # 7 of 8 channels are exactly 0
    assert raw.info["time_source"] == "sample counter"
    steps = np.round(np.diff(raw.times) * raw.sfreq).astype(int)
    assert Counter(steps.tolist()) == {1: 7760, 2: 4}  # the wrap 255 → 0 is one step; 4 skips
    sd = recordings[OPENBCI + "SDconverted-2014-10-22_16-27-06.txt"]
    assert sd.data[-1, 0] == pytest.approx(-3351.2417)  # the truncated last row is dropped


def test_brainflow_csv_matches_datafilter(recordings, shared_data):
    from brainflow.data_filter import DataFilter

    rec = recordings["brainflow/test_data.csv"]
    table = DataFilter.read_file(str(shared_data / "brainflow/test_data.csv"))
    np.testing.assert_allclose(rec.data, table[1:17].T.astype(np.float32))
    np.testing.assert_allclose(rec.times, table[30] - table[30][0])
    assert rec.ch_names[:3] == ("Fz", "C3", "Cz")
    assert rec.info["board"] == "SYNTHETIC_BOARD"


def test_brainflow_csv_other_board(shared_data):
    rec = read_recording(shared_data / "brainflow/test_data.csv", board="CYTON_DAISY_BOARD")
    assert rec.sfreq == 125.0 and rec.n_channels == 16
    assert rec.ch_names[:2] == ("Fp1", "Fp2")
    with pytest.raises(RecordingError, match="CYTON_BOARD writes 24"):
        read_recording(shared_data / "brainflow/test_data.csv", board="CYTON_BOARD")
    with pytest.raises(RecordingError, match="unknown BrainFlow board"):
        read_recording(shared_data / "brainflow/test_data.csv", board="NO_SUCH_BOARD")


def test_muse_csv(recordings):
    rec = recordings[MUSE]
    assert rec.ch_names == ("TP9", "AF7", "AF8", "TP10")
    assert int(np.count_nonzero(np.diff(rec.times) < 0)) == 47  # kept as given
    assert rec.times[0] == pytest.approx(149958.124)
    assert Counter(m.text for m in rec.markers) == {"1": 108, "2": 89}
    idx = rec.index_at([m.timestamp for m in rec.markers])
    np.testing.assert_array_equal(rec.times[idx], [m.timestamp for m in rec.markers])


def test_sniffing_ignores_the_suffix(shared_data, tmp_path):
    copy = tmp_path / "muse_recording.txt"
    copy.write_bytes((shared_data / MUSE).read_bytes())
    assert sniff_format(copy) == "muselsl"
    assert read_recording(copy).n_samples == 30732


@pytest.mark.parametrize("name, content, match", [
    ("junk.txt", b"hello, world\nthis is not EEG\n", "not a recording bci-dream can read"),
    ("junk.xyz", bytes(range(256)) * 4, "not a recording bci-dream can read"),
    ("empty.csv", b"", r"is empty \(0 bytes\)"),
    pytest.param("junk.edf", b"this is not an EDF file at all" * 10, "cannot read .* with MNE", marks=needs_mne),
    ("three_rows.csv", b"1\t2\t3\n4\t5\t6\n", "matches no BrainFlow board"),
    ("bad.xdf", b"XDF:garbage", "holds no streams|cannot read|no EEG stream"),
])
def test_errors_for_junk(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=match) as info:
        read_recording(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


@needs_mne
def test_every_format_mne_reads_goes_to_mne_and_damage_is_one_line(tmp_path):
    """Each suffix in MNE's own table of readers (Neuroscan .cnt, NEDF, Nexstim, CTF, KIT ...) is handed to
    mne.io.read_raw; a damaged file is one line naming the file, MNE's complaint and what to check."""
    from bci_dream.io.readers import mne_suffixes

    for suffix in mne_suffixes():
        if suffix in (".mff", ".ds"):  # (folder formats)
            continue
        path = tmp_path / f"damaged{suffix}"
        path.write_bytes(bytes(range(256)) * 16)
        assert sniff_format(path) == "mne", suffix
        try:
            rec = read_recording(path)
        except RecordingError as e:
            assert str(path) in str(e) and "\n" not in str(e), suffix
        else:  # (a few raw binary formats have no header to find damage in: then it reads as numbers)
            assert rec.n_samples >= 0


def test_error_for_missing_file(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        read_recording(tmp_path / "nope.xdf")
    with pytest.raises(RecordingError, match="does not exist"):
        read_recording(tmp_path / "nope.txt")


def test_error_for_xdf_without_samples(shared_data):
    with pytest.raises(RecordingError, match="holds no samples"):
        read_recording(shared_data / "bci4als/empty_eeg_stream.xdf")


def test_a_short_gap_in_an_xdf_survives_the_dejittering(tmp_path):
    """pyxdf smooths timestamps per segment and by default starts a segment only after a 1-s (or 500-sample) break:
    a 0.4-s dropout of a 250-Hz stream would be spread over the samples around it. The reader breaks segments where
    the live pipeline sees a gap, so the samples after it keep their time."""
    from bci_dream.io.xdf_writer import XdfWriter

    rate, n = 250.0, 2000
    rng = np.random.default_rng(0)
    stamps = 1000.0 + np.arange(n) / rate + rng.normal(0, 2e-4, n)
    stamps[1000:] += 0.4  # 100 samples never arrived
    path = tmp_path / "gap.xdf"
    with XdfWriter(path) as w:
        sid = w.add_stream("amp", "EEG", 2, rate, channel_labels=["O1", "O2"])
        w.write_samples(sid, rng.normal(0, 10, (n, 2)).astype(np.float32), stamps)
    rec = read_recording(path)
    steps = np.diff(rec.times)
    assert steps.argmax() == 999 and steps.max() == pytest.approx(0.4 + 1 / rate, abs=2e-3)
    assert np.abs(steps[:999] - 1 / rate).max() < 1e-3 and np.abs(steps[1000:] - 1 / rate).max() < 1e-3


def test_a_late_burst_of_timestamps_is_not_a_gap():
    """Timestamps given on arrival: chunks of 10 samples share a stamp, and one chunk comes 150 ms late. No sample
    is missing, so the smoothed timestamps are one line, as pyxdf makes them."""
    from bci_dream.signal.gaps import dejitter, gap_starts

    rate, n = 250.0, 3000
    true = 50.0 + np.arange(n) / rate
    arrival = true.copy()
    for start in range(0, n, 10):
        arrival[start:start + 10] = true[start + 9] + 0.004
    arrival[1500:1510] += 0.15
    assert gap_starts(arrival, rate).size == 0
    smoothed = dejitter(arrival, rate)
    np.testing.assert_allclose(np.diff(smoothed), 1 / rate, rtol=1e-3)

    with_gap = arrival.copy()
    with_gap[2000:] += 0.3
    assert gap_starts(with_gap, rate).tolist() == [1999]
    steps = np.diff(dejitter(with_gap, rate))
    assert steps[1999] == pytest.approx(0.3 + 1 / rate, abs=5e-3)


# -- MNE-readable files as other labs leave them ---------------------------------------------------------------

def test_a_cropped_fif_without_a_measurement_date_keeps_its_markers_on_time(shared_data, tmp_path):
    """Annotation onsets include the first sample's time whether or not the file has a measurement date (a FIF cut
    with crop() starts at first_samp > 0): the marker lands where MNE's own events put it."""
    import mne

    raw = mne.io.read_raw(shared_data / MNE_DIR / "test_bin_raw.fif", preload=True, verbose="error")
    raw.set_meas_date(None)
    raw.set_annotations(mne.Annotations([5.0], [0.0], ["stimulus"]))
    raw.crop(2.0, None)
    raw.save(tmp_path / "cropped_raw.fif", verbose="error")
    rec = read_recording(tmp_path / "cropped_raw.fif")
    events, _ = mne.events_from_annotations(mne.io.read_raw(tmp_path / "cropped_raw.fif", verbose="error"),
                                            verbose="error")
    onset = next(m.timestamp for m in rec.markers if m.text == "stimulus")
    assert onset == pytest.approx((events[0, 0] - raw.first_samp) / raw.info["sfreq"]) == pytest.approx(3.0)


def test_channels_the_file_marks_bad_are_left_out_and_said(shared_data, tmp_path, caplog):
    import mne

    raw = mne.io.read_raw(shared_data / MNE_DIR / "test_bin_raw.fif", preload=True, verbose="error")
    eeg = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)]
    raw.info["bads"] = eeg[:3]
    raw.save(tmp_path / "bads_raw.fif", verbose="error")
    rec = read_recording(tmp_path / "bads_raw.fif")
    assert rec.data.shape[1] == len(eeg) - 3 and not set(eeg[:3]) & set(rec.ch_names)
    assert f"leaving out 3 channel(s) the file marks bad: {', '.join(eeg[:3])}" in caplog.text
    raw.info["bads"] = eeg
    raw.save(tmp_path / "all_bad_raw.fif", verbose="error")
    with pytest.raises(RecordingError, match=r"every EEG channel is marked bad in the file .*unmark the usable"):
        read_recording(tmp_path / "all_bad_raw.fif")


def test_a_truncated_edf_is_read_with_a_warning_and_damaged_ones_are_refused_in_one_line(shared_data, tmp_path,
                                                                                         caplog):
    whole = (shared_data / EDF_DIR / "test.edf").read_bytes()
    header = int(whole[184:192])
    (tmp_path / "cut.edf").write_bytes(whole[:header + (len(whole) - header) // 2])
    rec = read_recording(tmp_path / "cut.edf")
    assert 0 < len(rec.times) < 3072
    assert "cut.edf: Number of records from the header does not match the file size" in caplog.text
    (tmp_path / "header_only.edf").write_bytes(whole[:header])
    (tmp_path / "empty.edf").write_bytes(b"")
    (tmp_path / "folder.xdf").mkdir()
    for name, why in (("header_only.edf", "the file is damaged or incomplete: choose another file"),
                      ("empty.edf", "is empty (0 bytes)"), ("folder.xdf", "is a folder, not a recording")):
        with pytest.raises(RecordingError, match=re.escape(why)) as e:
            read_recording(tmp_path / name)
        assert "\n" not in str(e.value) and "BrainVision" not in str(e.value)


def test_samples_whose_timestamps_damaged_bytes_made_impossible_are_left_out_and_said(shared_data, tmp_path, caplog):
    """4000 bytes zeroed in the middle of a real XDF: pyxdf reads a few timestamps of ±1e15 s; they are left out (an
    export would otherwise be asked for a gap of 300 million years) and the damage is said."""
    from bci_dream.io.export import export_recording

    damaged = bytearray((shared_data / "bci-essentials/ssvep_example.xdf").read_bytes())
    middle = len(damaged) // 2
    damaged[middle:middle + 4000] = bytes(4000)
    (tmp_path / "zeroed.xdf").write_bytes(bytes(damaged))
    rec = read_recording(tmp_path / "zeroed.xdf")
    assert np.ptp(rec.times) < 1e5 and "impossible timestamps (damaged bytes) and were left out" in caplog.text
    export_recording(tmp_path / "zeroed.xdf", tmp_path / "zeroed.fif")


def test_values_damaged_bytes_made_impossible_become_missing_samples(shared_data, tmp_path, caplog):
    """Random bytes over a FIF's samples read as values of 1e30 V: kept as missing samples (NaN) and said, not passed
    on as inf through a float32 cast."""
    import mne

    raw = mne.io.read_raw(shared_data / MNE_DIR / "test_bin_raw.fif", preload=True, verbose="error").pick("eeg")
    raw._data[2, 1000:1010] = 1e30
    raw.save(tmp_path / "damaged_raw.fif", verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no numpy overflow warning reaches the user)
        rec = read_recording(tmp_path / "damaged_raw.fif")
    assert np.isnan(rec.data[1000:1010, 2]).all() and np.isfinite(np.delete(rec.data, 2, axis=1)).all()
    assert "damaged_raw.fif: 10 values are missing (NaN) or impossible (beyond 1 V: damaged bytes)" in caplog.text
