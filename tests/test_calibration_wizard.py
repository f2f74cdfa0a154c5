"""The calibration wizard, offscreen (pytest-qt), on BrainFlow's real synthetic board with tiny random-weight models.

The stimulus session runs for real: a short protocol over a small test-made stimulus set, presented in a
window (offscreen), recorded to .xdf through the streaming core, markers read back with pyxdf and compared
to the frame times. The diffusion and CLIP models are tiny ones built here (no downloads, no GPU).
"""

import json

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from bci_dream.calibrate.session import CalibrationSession  # noqa: E402
from bci_dream.gui.calibration_wizard import CalibrationWizard, WizardOptions  # noqa: E402
from bci_dream.gui.stimulus_presenter import RESUME_LEAD_S  # noqa: E402
from bci_dream.models.subject_profile import load_profile  # noqa: E402
from bci_dream.training.finetune import FinetuneSettings  # noqa: E402

COLOURS = {"red": (220, 40, 40), "green": (30, 170, 60), "blue": (40, 90, 230)}


@pytest.fixture
def models(calibration_models):
    return calibration_models


def write_protocol(folder, **overrides):
    """A fast protocol over a 3-class x 2-image set made here: 2 blocks x 2 repetitions = 24 trials (~6 s)."""
    stimuli = folder / "stimuli"
    for name, rgb in COLOURS.items():
        (stimuli / name).mkdir(parents=True, exist_ok=True)
        for k in range(2):
            Image.new("RGB", (32, 32), tuple(c // (k + 1) for c in rgb)).save(stimuli / name / f"{name}-{k}.png")
    values = {"stimuli": str(stimuli), "image_s": 0.1, "isi_s": 0.1, "jitter_s": 0.03, "blocks": 2,
              "repetitions": 2, "rest_s": 0.5, "lead_in_s": 0.3, "fixation_s": 0.05, **overrides}
    path = folder / "fast.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


@pytest.fixture
def make_wizard(qtbot, tmp_path, models, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wizards = []

    def make(**options) -> CalibrationWizard:
        settings = FinetuneSettings(model=str(models["sd"]), clip_model=str(models["clip"]), resolution=64,
                                    batch_size=4, max_steps=4, checkpoint_every=2, eval_every=2, device="cpu")
        options = {"subject": "s01", "device": "synthetic", "protocol": str(write_protocol(tmp_path)),
                   "settings": settings, "init": models["init"], "subjects_dir": tmp_path / "subjects",
                   "fullscreen": False, "check_seconds": 2, "figure_rows": 2, **options}
        wizard = CalibrationWizard(WizardOptions(**options))
        qtbot.addWidget(wizard)
        wizard.show()
        wizards.append(wizard)
        return wizard

    yield make
    for wizard in wizards:
        wizard.close()


def through_signal_check(wizard, qtbot):
    wizard.next()
    assert wizard.currentPage() is wizard.signal_page
    qtbot.waitUntil(lambda: wizard.live is not None, timeout=15000)
    qtbot.waitUntil(lambda: wizard.signal_page.check is not None and wizard.signal_page.check.ready, timeout=10000)
    if not wizard.signal_page.check.passed:
        wizard.signal_page.anyway_box.setChecked(True)
    assert wizard.signal_page.isComplete()
    wizard.next()
    assert wizard.currentPage() is wizard.session_page


def run_session(wizard, qtbot, timeout=30000):
    wizard.session_page.start_button.click()
    qtbot.waitUntil(lambda: wizard.session is not None and wizard.session.status == "complete", timeout=timeout)
    qtbot.waitUntil(lambda: wizard.timing is not None, timeout=10000)


def test_a_full_wizard_pass_on_the_synthetic_board(make_wizard, qtbot, tmp_path, models):
    settings = FinetuneSettings(model=str(models["sd"]), clip_model=str(models["clip"]), resolution=64, batch_size=4,
                                max_steps=12, checkpoint_every=100, eval_every=100, device="cpu")
    wizard = make_wizard(settings=settings)
    through_signal_check(wizard, qtbot)
    # the signal check names its thresholds and gives one verdict per synthetic channel
    assert "µV" in wizard.signal_page.thresholds_label.text()
    assert wizard.signal_page.table.rowCount() == wizard.live.info.n_channels
    # the synthetic board cannot measure impedance: the page says so, and offers no button to press
    impedance = wizard.signal_page.impedance
    assert not impedance.measure_button.isEnabled() and not impedance.can_measure
    assert "cannot measure electrode impedance" in impedance.status_label.text()
    assert "signal check stands in" in impedance.status_label.text()
    run_session(wizard, qtbot)
    session = wizard.session
    assert len(session.usable_trials()) == session.n_trials == 24 and not session.affected
    # every onset was marked at its frame time: the markers read back from the .xdf match to the microsecond
    timing = wizard.timing
    assert timing.missing == 0 and timing.marker_offset_ms.size == 24
    assert np.max(np.abs(timing.marker_offset_ms)) < 1e-3
    # (drawing is aimed early by its median duration, so a frame may land a little before its intended time)
    assert np.all(np.abs(timing.lateness_ms) < 100) and np.all(timing.draw_ms >= 0)
    print("offscreen marker timing:", timing.summary())

    import pyxdf

    streams, _ = pyxdf.load_xdf(str(session.folder / "part-01.xdf"))
    texts = [t[0] for s in streams if s["info"]["type"][0] == "Markers" for t in s["time_series"]]
    assert sum(t in ("1", "2", "3") for t in texts) == 24 and sum(t.startswith("stim:") for t in texts) == 24
    assert (session.folder / "pairs.csv").read_text().count("\n") == 25

    wizard.next()  # fine-tuning starts by itself; it is cancelled after a step, then goes on from there
    page = wizard.training_page
    assert wizard.currentPage() is page
    qtbot.waitUntil(lambda: page.progress.value() >= 1, timeout=60000)
    assert "left" in page.time_label.text()
    page.cancel_button.click()
    qtbot.waitUntil(lambda: page.start_button.isEnabled(), timeout=60000)
    assert page.start_button.text() == "Go on" and "cancelled at step" in page.error_label.text()
    assert wizard.result is None and not wizard.training_page.isComplete()
    cancelled_at = page.progress.value()
    page.start_button.click()
    qtbot.waitUntil(lambda: wizard.result is not None, timeout=120000)
    assert page.progress.value() == 12 and cancelled_at < 12
    wizard.next()
    assert wizard.currentPage() is wizard.result_page
    text = wizard.result_page.summary_label.text()
    assert "identification" in text and "chance" in text and "Stimulus timing" in text
    assert not wizard.result_page.figure_label.pixmap().isNull()
    profile = load_profile(tmp_path / "subjects" / "s01")
    assert profile.validation["n_items"] > 0 and (tmp_path / "subjects" / "s01" / "validation.png").is_file()
    assert profile.recordings == [str((session.folder / "part-01.xdf").resolve())]


def test_a_session_stopped_half_way_is_kept_and_resumed(make_wizard, qtbot, tmp_path):
    wizard = make_wizard()
    through_signal_check(wizard, qtbot)
    wizard.session_page.start_button.click()
    qtbot.waitUntil(lambda: len(wizard.session.trials) >= 6, timeout=20000)
    qtbot.keyClick(wizard.presenter, QtCore.Qt.Key.Key_Escape)  # the participant stops
    session = wizard.session
    assert session.status == "stopped" and wizard.presenter is None
    shown = len(session.usable_trials())
    # (a trial on screen when the participant stopped is shown again)
    assert len(session.trials) - 1 <= shown < 24 and (session.folder / "part-01.xdf").is_file()
    assert CalibrationSession.load(session.folder).next_index() == session.next_index()
    assert wizard.session_page.start_button.text() == f"Go on at trial {session.next_index() + 1}"

    run_session(wizard, qtbot)  # goes on in part-02.xdf from where it stopped
    assert session.parts == ["part-01.xdf", "part-02.xdf"]
    assert [t.index for t in session.usable_trials()] == list(range(24))
    assert wizard.timing.missing == 0 and np.max(np.abs(wizard.timing.marker_offset_ms)) < 1e-3


def test_an_interrupted_session_is_offered_again_and_goes_on(make_wizard, qtbot, tmp_path):
    wizard = make_wizard()
    through_signal_check(wizard, qtbot)
    wizard.session_page.start_button.click()
    qtbot.waitUntil(lambda: len(wizard.session.trials) >= 4, timeout=20000)
    folder = wizard.session.folder
    wizard.close()  # the window closed mid-session: what was recorded is kept
    kept = CalibrationSession.load(folder)
    assert kept.status == "stopped" and len(kept.trials) >= 4

    again = make_wizard()
    assert again.resume_session is not None and again.resume_session.folder == folder
    assert "unfinished" in again.subject_page.resume_box.text()
    through_signal_check(again, qtbot)
    assert again.session_page.start_button.text().startswith("Go on at trial")
    run_session(again, qtbot)
    assert again.session.folder == folder and len(again.session.usable_trials()) == 24


def test_a_headset_lost_during_the_session_pauses_it_and_its_trials_are_shown_again(make_wizard, qtbot):
    wizard = make_wizard(source_options={"stall_timeout": 0.5, "reconnect_after": 3.0})
    through_signal_check(wizard, qtbot)
    wizard.session_page.start_button.click()
    qtbot.waitUntil(lambda: len(wizard.session.trials) >= 5, timeout=20000)
    wizard.live.source.board.stop_stream()  # the "headset" goes quiet: BrainFlow's real board stops sending
    qtbot.waitUntil(lambda: wizard.presenter.state == "paused", timeout=5000)
    session = wizard.session
    assert session.affected and all("headset" in why or "pause" in why for why in session.affected.values())
    assert "headset" in wizard.presenter.message
    shown = len(session.trials)
    wizard.presenter.resume()  # the participant presses Space too early: it stays paused until the signal is back
    assert wizard.presenter.state == "paused" and "No signal" in wizard.presenter.message
    qtbot.wait(int((RESUME_LEAD_S + 0.5) * 1000))
    assert len(session.trials) == shown and wizard.presenter.state == "paused"  # nothing shown without EEG
    qtbot.waitUntil(lambda: wizard.live.source.reconnects == 1 and wizard.live.source.state.value == "streaming"
                    and "signal is back" in wizard.session_page.status_label.text(), timeout=15000)
    wizard.session_page.pause_button.click()  # Resume
    qtbot.waitUntil(lambda: session.status == "complete", timeout=30000)
    assert not session.affected and [t.index for t in session.usable_trials()] == list(range(24))
    qtbot.waitUntil(lambda: wizard.timing is not None, timeout=10000)
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(session.folder / "part-01.xdf"))
    texts = [t[0] for s in streams if s["info"]["type"][0] == "Markers" for t in s["time_series"]]
    assert any(t.startswith("affected: trials") for t in texts)


def test_impedance_measured_on_the_signal_page_of_a_cyton_is_kept_with_the_session(make_wizard, qtbot,
                                                                                  shared_data):
    """On a Cyton (BrainFlow's real driver; the board emulated on a pseudo-terminal, its EEG a real recording) the
    signal page measures each electrode; the page does not go on while it measures, and the session keeps the kΩ."""
    from cyton_emulator import CytonEmulator

    from bci_dream.io.readers import read_recording

    rec = read_recording(shared_data / "openbci-gui" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")
    true_kohm = [3.0, 2.0, 30.0, 4.0, 25.0, 3.0, 80.0, 2.0]  # (ratings that hold within the error bound)
    with CytonEmulator(rec.data, true_kohm) as board:
        wizard = make_wizard(device="cyton", params={"serial_port": board.port})
        wizard.next()
        page = wizard.signal_page
        qtbot.waitUntil(lambda: page.check is not None and page.check.ready, timeout=15000)
        page.anyway_box.setChecked(True)
        assert page.impedance.can_measure and page.isComplete()
        with qtbot.waitSignal(page.impedance.finished, timeout=40000) as finished:
            page.impedance.measure_button.click()
            assert not page.isComplete()  # (not while the board carries the lead-off current)
        assert page.isComplete() and "1 of 8 poor (O1)" in page.impedance.status_label.text()
        wizard.next()
        wizard.session_page.start_button.click()
        qtbot.waitUntil(lambda: wizard.session is not None and len(wizard.session.trials) >= 2, timeout=20000)
        kept = CalibrationSession.load(wizard.session.folder).impedance
        assert kept["method"] == "cyton-lead-off" and list(kept["kohm"]) == list(wizard.live.info.ch_names)
        for measured, true in zip(kept["kohm"].values(), true_kohm):  # (within test_impedance.close_to's bound)
            assert abs(measured - true) <= 0.1 * true + 4.5
        assert finished.args[0].finished_at > 0
        wizard.close()


def test_back_from_a_running_session_keeps_it_and_next_goes_on_with_it(make_wizard, qtbot):
    wizard = make_wizard()
    through_signal_check(wizard, qtbot)
    wizard.session_page.start_button.click()
    qtbot.waitUntil(lambda: len(wizard.session.trials) >= 3, timeout=20000)
    session = wizard.session
    wizard.back()  # to the signal check: the session ends here (kept) and the signal is checked afresh
    assert wizard.currentPage() is wizard.signal_page and wizard.presenter is None
    assert session.status == "stopped" and wizard.signal_page.timer.isActive()
    qtbot.waitUntil(lambda: wizard.signal_page.isComplete() or wizard.signal_page.check.ready, timeout=10000)
    wizard.signal_page.anyway_box.setChecked(True)
    wizard.next()
    assert wizard.session_page.start_button.text().startswith("Go on at trial")
    run_session(wizard, qtbot)
    assert wizard.session is session and len(session.usable_trials()) == 24 and len(session.parts) == 2

    wizard.back()  # Back to the signal check and Next again: the complete session is kept, and Next goes on
    qtbot.waitUntil(lambda: wizard.signal_page.check is not None and wizard.signal_page.check.ready, timeout=10000)
    wizard.signal_page.anyway_box.setChecked(True)
    wizard.next()
    assert wizard.session is session and wizard.session_page.isComplete()
    assert not wizard.session_page.start_button.isEnabled()

    wizard.back()  # after a complete session, Back and another subject: a new session in that subject's folder
    wizard.back()
    wizard.subject_page.subject_box.setEditText("s02")
    through_signal_check(wizard, qtbot)
    assert wizard.session is None
    wizard.session_page.start_button.click()
    qtbot.waitUntil(lambda: wizard.session is not None and len(wizard.session.trials) >= 1, timeout=20000)
    assert wizard.session.folder.parent.parent.name == "s02"


def test_bad_stimuli_and_subject_ids_are_said_on_the_first_page(make_wizard, qtbot, tmp_path):
    empty = tmp_path / "empty-set"
    (empty / "class-a").mkdir(parents=True)
    protocol = tmp_path / "empty.toml"
    protocol.write_text(f'stimuli = "{empty}"\n')
    wizard = make_wizard(protocol=str(protocol))
    wizard.next()
    assert wizard.currentPage() is wizard.subject_page
    assert "class-a" in wizard.subject_page.error_label.text() or "no images" in wizard.subject_page.error_label.text()
    assert wizard.errors and "\n" not in wizard.errors[-1]
    wizard.subject_page.subject_box.setEditText("../escape")
    assert not wizard.subject_page.isComplete() and "refused" in wizard.subject_page.error_label.text()


def test_the_wizard_command_refuses_bad_input_in_one_line(capsys):
    from bci_dream.cli import main

    assert main(["calibrate", "--subject", "s01", "--device", "no-such-headset"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no-such-headset" in err and len(err.splitlines()) == 1
    assert main(["calibrate", "--subject", "s01", "--recording", "x.xdf"]) == 1
    assert "--headless" in capsys.readouterr().err
    assert main(["calibrate", "--subject", "a/b"]) == 1
    assert "refused" in capsys.readouterr().err
    assert main(["calibrate", "--headless"]) == 1
    assert "--subject" in capsys.readouterr().err

