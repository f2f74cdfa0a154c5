"""Calibration: the shipped shapes-colours set and protocols load, schedules are right, bad input fails in one line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bci_dream
from bci_dream.calibrate.protocol import Protocol, ProtocolError, list_protocols, load_protocol
from bci_dream.calibrate.stimuli import (
    StimulusError,
    StimulusSet,
    calibration_root,
    generate_shapes_colours,
    load_stimulus_set,
    shapes_colours_classes,
    shipped_stimulus_sets,
)
from bci_dream.core.errors import BciDreamError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_SET = calibration_root() / "stimuli" / "shapes-colours"


def _one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, BciDreamError)
    assert message and "\n" not in message, message
    return message


def _image(path: Path, colour=(200, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


@pytest.fixture(scope="module")
def shipped() -> StimulusSet:
    return load_stimulus_set("shapes-colours")


# -- calibration_root and the shipped stimulus set ------------------------------------------------------

def test_calibration_root_finds_the_source_checkout():
    root = calibration_root()
    assert (root / "protocols" / "default.toml").is_file()
    assert (root / "stimuli" / "shapes-colours").is_dir()
    if not (Path(bci_dream.__file__).parent / "_data" / "calibration").is_dir():  # not an installed wheel
        assert root == REPO_ROOT / "calibration"
    assert "shapes-colours" in shipped_stimulus_sets()
    assert {"default", "quick"} <= set(list_protocols())


def test_shipped_set_has_16_classes_of_3_readable_images(shipped):
    assert shipped.classes == tuple(sorted(shapes_colours_classes())) and len(shipped.classes) == 16
    assert len(shipped) == 48
    assert Counter(s.class_name for s in shipped.items) == {c: 3 for c in shipped.classes}
    for s in shipped.items:
        assert shipped.classes[s.class_index - 1] == s.class_name
        with Image.open(s.path) as im:
            im.load()
            assert im.size == (224, 224) and im.mode == "RGB"
    assert shipped.marker_classes()["1"] == SHIPPED_SET / "blue-circle"
    total = sum(p.stat().st_size for p in SHIPPED_SET.rglob("*") if p.is_file())
    assert total < 1_000_000
    assert "CC0" in (SHIPPED_SET / "LICENSE.txt").read_text()
    assert "python -m bci_dream.calibrate.stimuli" in (SHIPPED_SET / "README.txt").read_text()


def test_generation_is_deterministic_and_matches_the_shipped_images(tmp_path):
    a = generate_shapes_colours(tmp_path / "a")
    b = generate_shapes_colours(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 48
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        new, old = np.asarray(Image.open(a / rel)), np.asarray(Image.open(SHIPPED_SET / rel))
        # the same Pillow gives identical pixels; allow a few antialiased edge pixels for another version
        assert new.shape == old.shape and (new != old).any(axis=-1).mean() < 0.005, rel
    assert (a / "LICENSE.txt").read_text() == (SHIPPED_SET / "LICENSE.txt").read_text()
    assert (a / "README.txt").read_text() == (SHIPPED_SET / "README.txt").read_text()


def test_another_seed_moves_the_variants_but_not_the_canonical_image(tmp_path):
    generate_shapes_colours(tmp_path, variants=2, size=64, seed=1)
    generate_shapes_colours(tmp_path / "s2", variants=2, size=64, seed=2)
    one = np.asarray(Image.open(tmp_path / "red-star" / "red-star-1.png"))
    assert one.shape == (64, 64, 3)
    assert np.array_equal(one, np.asarray(Image.open(tmp_path / "s2" / "red-star" / "red-star-1.png")))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "red-star" / "red-star-2.png")),
                              np.asarray(Image.open(tmp_path / "s2" / "red-star" / "red-star-2.png")))


# -- any folder of class subfolders ---------------------------------------------------------------------

def test_a_folder_of_class_subfolders_loads(tmp_path):
    _image(tmp_path / "zebra" / "b.png")
    _image(tmp_path / "zebra" / "a.jpg")
    _image(tmp_path / "apple" / "x.PNG")
    (tmp_path / "zebra" / "notes.txt").write_text("not an image")
    _image(tmp_path / ".hidden" / "h.png")
    (tmp_path / "README.txt").write_text("ignored")
    s = load_stimulus_set(tmp_path)
    assert s.classes == ("apple", "zebra") and s.name == tmp_path.name and s.folder == tmp_path
    assert [(i.class_name, i.class_index, i.path.name) for i in s.items] == \
        [("apple", 1, "x.PNG"), ("zebra", 2, "a.jpg"), ("zebra", 2, "b.png")]
    assert s.items[1].relative == "zebra/a.jpg"
    assert s.class_index("zebra") == 2 and s.images_of("zebra") == [tmp_path / "zebra" / "a.jpg",
                                                                     tmp_path / "zebra" / "b.png"]
    assert s.marker_classes() == {"1": tmp_path / "apple", "2": tmp_path / "zebra"}
    with pytest.raises(StimulusError):
        s.class_index("mango")


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(StimulusError) as e:
        load_stimulus_set(tmp_path / "nope")
    message = _one_line(e)
    assert "nope" in message and "shapes-colours" in message


def test_folder_without_class_subfolders_is_named(tmp_path):
    with pytest.raises(StimulusError) as e:
        load_stimulus_set(tmp_path)
    assert str(tmp_path) in _one_line(e) and "no class subfolders" in str(e.value)
    _image(tmp_path / "loose.png")
    with pytest.raises(StimulusError) as e:
        load_stimulus_set(tmp_path)
    assert "1 images lie directly in it" in _one_line(e)


def test_empty_classes_are_named_five_at_most(tmp_path):
    _image(tmp_path / "full" / "a.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(StimulusError) as e:
        load_stimulus_set(tmp_path)
    message = _one_line(e)
    assert "empty" in message and "full" not in message.split(":")[-1]
    for k in range(7):
        (tmp_path / f"e{k}").mkdir()
    with pytest.raises(StimulusError) as e:
        load_stimulus_set(tmp_path)
    assert "8 class folder(s)" in _one_line(e) and "e0, e1, e2, e3, e4 and 3 more" in str(e.value)


def test_corrupt_and_truncated_images_are_named(tmp_path):
    _image(tmp_path / "cat" / "good.png")
    (tmp_path / "cat" / "garbage.png").write_bytes(b"this is not a png")
    good = (tmp_path / "cat" / "good.png").read_bytes()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(StimulusError) as e:
        load_stimulus_set(tmp_path)
    message = _one_line(e)
    assert "2 image(s)" in message and "cat/garbage.png" in message and "dog/cut.png" in message
    assert "good.png" not in message
    assert len(load_stimulus_set(tmp_path, check_images=False)) == 3


# -- protocols --------------------------------------------------------------------------------------------

def _gaps(trials, image_s):
    return np.diff([t.onset_s for t in trials]) - image_s


def test_default_protocol_schedule(shipped):
    p = load_protocol("default")
    assert p.path == calibration_root() / "protocols" / "default.toml"
    assert p.stimulus_folder == SHIPPED_SET and p.image_s == 0.5 and p.randomise
    trials = p.schedule(shipped)
    assert len(trials) == p.blocks * p.repetitions * 48
    assert [t.index for t in trials] == list(range(len(trials)))
    onsets = np.array([t.onset_s for t in trials])
    assert (np.diff(onsets) > 0).all()
    lo, hi = p.isi_s - p.jitter_s - 1e-6, p.isi_s + p.jitter_s + 1e-6
    assert lo <= onsets[0] - p.lead_in_s <= hi
    for block in range(1, p.blocks + 1):
        in_block = [t for t in trials if t.block == block]
        assert len(in_block) == p.repetitions * 48
        assert Counter(t.image for t in in_block) == {s.path: p.repetitions for s in shipped.items}
        gaps = _gaps(in_block, p.image_s)
        assert ((gaps >= lo) & (gaps <= hi)).all()
        assert gaps.std() > 0.05  # jittered, not constant
        assert all(a.image != b.image for a, b in zip(in_block, in_block[1:]))
    for a, b in zip(trials, trials[1:]):
        if a.block != b.block:
            assert b.block == a.block + 1
            assert lo <= b.onset_s - a.offset_s - p.rest_s <= hi
    for t in trials:
        assert t.marker == str(t.class_index) and shipped.classes[t.class_index - 1] == t.class_name
        assert t.duration_s == p.image_s and t.image.parent.name == t.class_name
        assert t.detail_marker == f"stim:{t.class_name}/{t.image.name}"
    assert p.total_seconds(shipped) == pytest.approx(trials[-1].offset_s + p.isi_s)
    assert 7 * 60 < p.total_seconds(shipped) < 12 * 60
    assert p.schedule() == trials  # loads its own set
    assert "384 trials" in p.describe(shipped)


def test_quick_protocol_takes_about_two_minutes(shipped):
    p = load_protocol("quick")
    assert 90 < p.total_seconds(shipped) < 150


def test_same_seed_same_schedule_other_seed_other_order(shipped):
    p = load_protocol("default")
    assert p.schedule(shipped) == load_protocol("default").schedule(shipped)
    other = Protocol(stimuli="shapes-colours", seed=1)
    a, b = p.schedule(shipped), other.schedule(shipped)
    assert [t.image for t in a] != [t.image for t in b]
    assert [t.onset_s for t in a] != [t.onset_s for t in b]
    # the order does not depend on the timing
    slower = Protocol(stimuli="shapes-colours", isi_s=2.0, jitter_s=0.5)
    assert [t.image for t in slower.schedule(shipped)] == [t.image for t in a]


def test_unrandomised_schedule_repeats_the_set_in_order(shipped):
    p = Protocol(stimuli="shapes-colours", randomise=False, jitter_s=0.0, blocks=2, repetitions=2, lead_in_s=1.0,
                 rest_s=5.0)
    trials = p.schedule(shipped)
    assert [t.image for t in trials] == [s.path for s in shipped.items] * 4
    gaps = _gaps(trials, p.image_s)
    assert np.allclose(np.delete(gaps, 95), p.isi_s) and gaps[95] == pytest.approx(p.isi_s + 5.0)
    assert trials[0].onset_s == pytest.approx(1.0 + p.isi_s)


def test_protocol_with_a_folder_relative_to_its_file(tmp_path):
    _image(tmp_path / "set" / "b" / "1.png")
    _image(tmp_path / "set" / "a" / "1.png")
    toml = tmp_path / "mine.toml"
    toml.write_text('stimuli = "set"\nblocks = 1\nrepetitions = 3\nimage_s = 1\n')
    p = load_protocol(toml)
    assert p.name == "mine" and p.image_s == 1.0 and p.stimulus_folder == tmp_path / "set"
    trials = p.schedule()
    assert len(trials) == 6 and {t.marker for t in trials} == {"1", "2"}
    assert all(a.image != b.image for a, b in zip(trials, trials[1:]))


def test_schedule_markers_feed_make_pairs(shipped, tmp_path):
    from bci_dream.core.types import Marker
    from bci_dream.io.recording import Recording
    from bci_dream.training.pairs import make_pairs

    trials = load_protocol("quick").schedule(shipped)
    times = np.arange(0, trials[-1].offset_s + 1, 1 / 128)
    recording = Recording(data=np.zeros((len(times), 1)), sfreq=128.0, ch_names=("Cz",),
                          markers=[Marker(t.onset_s, t.marker) for t in trials] +
                          [Marker(t.onset_s, t.detail_marker) for t in trials], times=times,
                          path=tmp_path / "session.xdf", source_format="xdf")
    pairs = make_pairs(recording, shipped.marker_classes())
    assert len(pairs) == len(trials)
    # every trial is paired with the very image it showed, named by its stim:<class>/<file> marker
    assert [pair.image for pair in pairs] == [t.image for t in trials]
    assert all(pair.label == t.class_name for pair, t in zip(pairs, trials))

    from bci_dream.training.pairs import PairsError

    bare = Recording(data=np.zeros((len(times), 1)), sfreq=128.0, ch_names=("Cz",),
                     markers=[Marker(t.onset_s, t.marker) for t in trials], times=times,
                     path=tmp_path / "session.xdf", source_format="xdf")
    with pytest.raises(PairsError, match="does not name the image shown.*--round-robin"):
        make_pairs(bare, shipped.marker_classes())
    guessed = make_pairs(bare, shipped.marker_classes(), round_robin=True)
    assert all(pair.image.parent.name == t.class_name for pair, t in zip(guessed, trials))
    assert [pair.image for pair in guessed] != [t.image for t in trials]


@pytest.mark.parametrize("body, words", [
    ('stimuli = "shapes-colours"\nrandomize = true\n', ["'randomize'", "did you mean 'randomise'"]),
    ('stimuli = "shapes-colours"\nvolume = 3\n', ["'volume'", "known keys"]),
    ('stimuli = "shapes-colours"\nisi_s = -0.5\n', ["'isi_s'", ">= 0", "-0.5"]),
    ('stimuli = "shapes-colours"\nrest_s = -1\n', ["'rest_s'"]),
    ('stimuli = "shapes-colours"\nimage_s = 0\n', ["'image_s'", "> 0"]),
    ('stimuli = "shapes-colours"\nisi_s = 0.2\njitter_s = 0.3\n', ["'jitter_s'", "'isi_s'"]),
    ('stimuli = "shapes-colours"\nfixation_s = 0.6\n', ["'fixation_s'"]),
    ('stimuli = "shapes-colours"\nblocks = 0\n', ["'blocks'", ">= 1"]),
    ('stimuli = "shapes-colours"\nrepetitions = 1.5\n', ["'repetitions'", "integer"]),
    ('stimuli = "shapes-colours"\nimage_s = "0.5"\n', ["'image_s'", "number of seconds"]),
    ('stimuli = "shapes-colours"\nrandomise = "yes"\n', ["'randomise'", "true or false"]),
    ('stimuli = "shapes-colours"\nbackground = "grey"\n', ["'background'"]),
    ('stimuli = "shapes-colours"\nisi_s = nan\n', ["'isi_s'"]),
    ('blocks = 2\n', ["missing key 'stimuli'"]),
    ('stimuli = "no-such-set"\n', ["stimuli = 'no-such-set'", "shapes-colours"]),
    ('stimuli = "shapes-colours"\n[timing]\nisi_s = 1\n', ["'timing'"]),
    ('stimuli = "shapes-colours\n', ["not valid TOML"]),
])
def test_bad_protocols_fail_in_one_line_naming_key_and_file(tmp_path, body, words):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ProtocolError) as e:
        load_protocol(path)
    message = _one_line(e)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_unknown_protocol_names_and_missing_files(tmp_path):
    with pytest.raises(ProtocolError) as e:
        load_protocol("nonesuch")
    assert "nonesuch" in _one_line(e) and "default" in str(e.value)
    with pytest.raises(ProtocolError) as e:
        load_protocol(tmp_path / "gone.toml")
    assert "gone.toml" in _one_line(e)


def test_protocol_built_in_code_is_checked_too():
    with pytest.raises(ProtocolError) as e:
        Protocol(stimuli="shapes-colours", name="mine", jitter_s=-1)
    assert "'jitter_s'" in _one_line(e) and "mine" in str(e.value)
    assert Protocol(stimuli="shapes-colours").background_rgb == (128, 128, 128)
