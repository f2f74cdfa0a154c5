"""The stimulus presenter on its own, offscreen: rests, the headset gate, pauses and the photodiode square."""

import pytest

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402

from bci_dream.calibrate.protocol import Protocol  # noqa: E402
from bci_dream.gui.stimulus_presenter import StimulusPresenter  # noqa: E402


@pytest.fixture
def make_presenter(qtbot, tmp_path):
    for name, rgb in {"a": (200, 30, 30), "b": (30, 30, 200)}.items():
        (tmp_path / "set" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), rgb).save(tmp_path / "set" / name / f"{name}.png")

    def make(**values):
        protocol = Protocol(**{"stimuli": str(tmp_path / "set"), "image_s": 0.15, "isi_s": 0.1, "jitter_s": 0.0,
                               "blocks": 2, "repetitions": 2, "rest_s": 0.6, "lead_in_s": 0.1, **values})
        marks, log = [], []
        presenter = StimulusPresenter(protocol, protocol.schedule(), mark=lambda text, t: marks.append((text, t)))
        presenter.state_changed.connect(lambda state, why: log.append(state))
        qtbot.addWidget(presenter)
        presenter.resize(400, 300)
        presenter.show()
        return presenter, marks, log

    return make


def test_every_rest_is_shown_and_each_onset_is_marked_twice(make_presenter, qtbot):
    presenter, marks, log = make_presenter()
    onsets = []
    presenter.shown.connect(onsets.append)
    presenter.start()
    qtbot.waitUntil(lambda: presenter.state == "finished", timeout=10000)
    assert len(onsets) == 8 and log.count("rest") >= 1 and "rest" in log[log.index("running") + 1:]
    assert [o.trial.index for o in onsets] == list(range(8))
    assert [m[0] for m in marks[::2]] == [o.trial.marker for o in onsets]
    assert all(m[0].startswith("stim:") for m in marks[1::2])
    assert all(o.frame_time >= o.requested_time for o in onsets)
    assert onsets[4].frame_time - onsets[3].frame_time > 0.6  # the rest between the blocks took place


def test_a_gate_keeps_it_paused_and_a_pause_shows_the_cut_trial_again(make_presenter, qtbot):
    presenter, marks, log = make_presenter()
    why = ["no signal from the headset"]
    presenter.gate = lambda: why[0]
    presenter.start(2)  # going on with a session at trial 3, while the headset is lost
    assert presenter.state == "paused" and "no signal" in presenter.message and not marks
    why[0] = ""
    interrupted, onsets = [], []
    presenter.interrupted.connect(interrupted.append)
    presenter.shown.connect(onsets.append)
    presenter.resume()
    qtbot.waitUntil(lambda: len(onsets) == 2, timeout=8000)
    presenter.pause("test")  # the second image is on screen
    assert [o.trial.index for o in onsets] == [2, 3] and interrupted == [3] and presenter.index == 3
    presenter.resume()
    qtbot.waitUntil(lambda: len(onsets) == 3, timeout=8000)
    assert onsets[2].trial.index == 3


def test_the_photodiode_square_is_white_only_while_an_image_is_on(make_presenter, qtbot):
    presenter, marks, log = make_presenter(photodiode=True)
    corner = []

    def sample(onset):
        image = presenter.grab().toImage()
        corner.append(image.pixelColor(2, image.height() - 3).lightness())

    presenter.shown.connect(sample)
    presenter.start()
    qtbot.waitUntil(lambda: len(corner) == 2, timeout=5000)
    presenter.pause()
    image = presenter.grab().toImage()
    assert corner == [255, 255] and image.pixelColor(2, image.height() - 3).lightness() == 0
