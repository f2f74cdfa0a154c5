"""A calibration session written as EEG-BIDS by mne-bids and read back by mne-bids: a session recorded from
BrainFlow's real synthetic board in two parts (as after a resumed interruption), with the shipped stimuli."""

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bci_dream.acquisition.brainflow_source import BrainFlowSource
from bci_dream.acquisition.live import LiveStream
from bci_dream.calibrate.bids import bids_label, export_session_bids
from bci_dream.calibrate.session import CalibrationSession, SessionError, ShownTrial
from bci_dream.devices import get_profile

STIMULI = Path(__file__).resolve().parents[1] / "calibration" / "stimuli" / "shapes-colours"


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> CalibrationSession:
    folder = tmp_path_factory.mktemp("subjects") / "s_01"
    images = sorted(STIMULI.glob("*/*.png"))[:6]
    s = CalibrationSession.create(folder, "s_01", "synthetic", "default", STIMULI, n_trials=6)
    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    live.open()
    live.start()
    try:
        for part in (1, 2):
            live.start_recording(s.new_part())
            time.sleep(0.5)
            for k in range(3):
                index = (part - 1) * 3 + k
                image = images[index]
                marker = live.mark(str(index % 4))
                s.add_trial(ShownTrial(index, part, marker.text, image.parent.name, str(image), index * 1.0,
                                       marker.timestamp, marker.timestamp, marker.timestamp))
                time.sleep(0.4)
            live.stop_recording()
    finally:
        live.stop()
    s.finish("complete")
    return s


def test_a_session_becomes_a_bids_dataset_that_mne_bids_reads_back(session, tmp_path):
    from mne_bids import BIDSPath, read_raw_bids

    root = tmp_path / "bids"
    written = export_session_bids(session.folder, root)
    assert [p.name for p in written] == [f"sub-s01_ses-{bids_label(session.folder.name)}_task-calibration_run-0{r}"
                                         f"_eeg.edf" for r in (1, 2)]
    for run, trials in ((1, session.trials[:3]), (2, session.trials[3:])):
        path = BIDSPath(subject="s01", session=bids_label(session.folder.name), task="calibration",
                        run=f"0{run}", datatype="eeg", root=root)
        raw = read_raw_bids(path, verbose="error")
        assert raw.ch_names[:3] == ["Fz", "C3", "Cz"] and raw.info["sfreq"] == 250 and raw.info["line_freq"] == 50
        assert raw.get_montage() is not None  # electrodes.tsv from the 10-05 sites
        with open(path.copy().update(suffix="events", extension=".tsv").fpath, encoding="utf-8") as f:
            events = [row for row in csv.DictReader(f, delimiter="\t") if not row["trial_type"].startswith("BAD")]
        assert [(e["trial_type"], e["marker"]) for e in events] == [(t.class_name, t.marker) for t in trials]
        assert [e["stim_file"] for e in events] == [f"shapes-colours/{t.class_name}/{Path(t.image).name}"
                                                    for t in trials]
        for e in events:
            assert (root / "stimuli" / e["stim_file"]).is_file()
        onsets = [a["onset"] for a in raw.annotations if not a["description"].startswith("BAD")]
        # the trial onsets are where the markers are in the recording, to a sample
        assert len(onsets) == 3 and all(0.3 < o for o in onsets)
    assert (root / "participants.tsv").is_file() and (root / "dataset_description.json").is_file()
    with pytest.raises(Exception, match="exists.*--overwrite"):
        export_session_bids(session.folder, root)
    assert export_session_bids(session.folder, root, subject="other", overwrite=True)[0].name.startswith("sub-other")


def test_the_impedance_measured_before_a_session_is_kept_and_exported_to_electrodes_tsv(session, tmp_path):
    """What the wizard's signal page measured (kΩ) is in session.json and in BIDS's electrodes.tsv ``impedance``."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(session.folder, folder)
    copy = CalibrationSession.load(folder)
    assert copy.impedance is None
    copy.set_impedance("cyton-lead-off", {"Fz": 4.25, "C3": 61.0, "Cz": float("nan")}, measured_at=1_800_000_000)
    again = CalibrationSession.load(folder)
    assert again.impedance == {"measured": "2027-01-15T08:00:00+00:00", "method": "cyton-lead-off",
                               "kohm": {"Fz": 4.25, "C3": 61.0, "Cz": None}}
    root = tmp_path / "bids"
    written = export_session_bids(folder, root)
    electrodes = sorted(written[0].parent.glob("*_electrodes.tsv"))
    assert len(electrodes) == 1
    with open(electrodes[0], encoding="utf-8") as f:
        rows = {row["name"]: row for row in csv.DictReader(f, delimiter="\t")}
    assert rows["Fz"]["impedance"] == "4.25" and rows["C3"]["impedance"] == "61"
    assert rows["Cz"]["impedance"] == rows["Pz"]["impedance"] == "n/a"


def test_export_command_writes_bids_and_says_what_is_wrong_in_one_line(session, tmp_path):
    run = subprocess.run([sys.executable, "-m", "bci_dream.cli", "export", str(session.folder), "--bids",
                          str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "exported 2 runs" in run.stdout and "Traceback" not in run.stderr
    for args, message in (([str(tmp_path)], "is not a calibration session"),
                          ([str(session.folder / "part-01.xdf")], "is not a folder"),
                          ([str(session.folder), "-o", str(tmp_path / "x.edf")], "give -o OUT")):
        bad = subprocess.run([sys.executable, "-m", "bci_dream.cli", "export", *args, "--bids", str(tmp_path / "c")],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert message in bad.stderr


def test_labels_and_an_empty_session(tmp_path):
    assert bids_label("s_01-a.b") == "s01ab"
    with pytest.raises(Exception, match="no letters or digits"):
        bids_label("__")
    empty = CalibrationSession.create(tmp_path, "s01", "synthetic", "default", STIMULI, n_trials=2)
    with pytest.raises(SessionError, match="no recording yet"):
        export_session_bids(empty.folder, tmp_path / "bids")
