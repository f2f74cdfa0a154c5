"""Evaluation metrics (n-way top-1 of generated images, n-way EEG→image identification) and the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bci_dream.cli import main
from bci_dream.training.evaluate import (
    EvaluationError,
    binomial_p_value,
    generated_path,
    n_way_identification,
    n_way_top1,
)

RECORDING = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
N_PAIRS = 30


# -- metric functions on inputs with known answers ------------------------------------------------

def test_top1_perfect_and_worst():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 100, 200)
    onehot = np.eye(100)[labels]
    assert n_way_top1(onehot, labels, 50, 10, rng) == 1.0
    assert n_way_top1(1 - onehot, labels, 50, 10, rng) == 0.0
    ties = np.full((200, 100), 0.01)  # a tie is not a win
    assert n_way_top1(ties, labels, 50, 10, rng) == 0.0


def test_top1_random_is_chance():
    rng = np.random.default_rng(1)
    probs = rng.random((2000, 100))
    acc = n_way_top1(probs, rng.integers(0, 100, 2000), 50, 20, rng)
    assert acc == pytest.approx(1 / 50, abs=0.006)


def test_top1_partial_answer():
    """The true class beats one of two others: in 2-way trials it wins half of the draws."""
    probs = np.tile([0.5, 0.6, 0.1], (50, 1))
    acc = n_way_top1(probs, np.zeros(50, int), 2, 200, np.random.default_rng(2))
    assert acc == pytest.approx(0.5, abs=0.03)
    assert n_way_top1(probs, np.zeros(50, int), 3, 5, np.random.default_rng(2)) == 0.0


def test_top1_reduces_n_when_too_few_classes(caplog):
    rng = np.random.default_rng(3)
    probs = rng.random((3000, 10))
    with caplog.at_level("WARNING"):
        acc = n_way_top1(probs, rng.integers(0, 10, 3000), 50, 10, rng)
    assert "reduced from 50 to 10" in caplog.text
    assert acc == pytest.approx(0.1, abs=0.015)
    with pytest.raises(EvaluationError):
        n_way_top1(np.ones((3, 1)), np.zeros(3, int), 50, 10, rng)


def test_identification_perfect_and_scale_invariant():
    rng = np.random.default_rng(4)
    images = rng.normal(size=(60, 16))
    ids = [f"img{i}" for i in range(60)]
    result = n_way_identification(3.0 * images, images, ids, 50, 20, rng)
    assert result.accuracy == 1.0 and result.n_way == 50 and result.chance == pytest.approx(0.02)
    assert result.n_items == 60 and result.n_candidates == 60 and result.p_value < 1e-50


def test_identification_random_is_chance():
    rng = np.random.default_rng(5)
    images = rng.normal(size=(400, 16))
    result = n_way_identification(rng.normal(size=(400, 16)), images, list(range(400)), 10, 50, rng)
    assert result.accuracy == pytest.approx(0.1, abs=0.02)
    assert result.p_value > 1e-3


def test_identification_repeated_images_reduce_n(caplog):
    """40 pairs over 8 distinct images: distractors are distinct images other than the true one."""
    rng = np.random.default_rng(6)
    distinct = rng.normal(size=(8, 16))
    ids = [i % 8 for i in range(40)]
    with caplog.at_level("WARNING"):
        result = n_way_identification(distinct[ids], distinct[ids], ids, 50, 10, rng)
    assert "reduced from 50 to 8" in caplog.text
    assert result.n_way == 8 and result.accuracy == 1.0 and result.n_candidates == 8
    with pytest.raises(EvaluationError):
        n_way_identification(distinct[[0, 0]], distinct[[0, 0]], ["a", "a"], 50, 10, rng)


def test_averaging_repetitions_identifies_what_single_trials_cannot():
    from bci_dream.training.evaluate import averaged_over_repetitions

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 16))
    ids = np.repeat(np.arange(4), 10)
    eeg = images[ids] * 0.3 + rng.normal(size=(40, 16))  # weak single trials
    single = n_way_identification(eeg, images[ids], list(ids), 4, 50, np.random.default_rng(1))
    mean, img, kept = averaged_over_repetitions(eeg, images[ids], list(ids))
    assert mean.shape == (4, 16) and kept == [0, 1, 2, 3]
    averaged = n_way_identification(mean, img, kept, 4, 50, np.random.default_rng(1))
    assert averaged.accuracy == 1.0 > single.accuracy
    assert averaged_over_repetitions(eeg[:4], images, [0, 1, 2, 3]) is None  # nothing repeats


def test_binomial_p_value():
    assert binomial_p_value(0.02, 100, 0.02) > 0.3
    assert binomial_p_value(0.5, 100, 0.02) < 1e-20
    assert binomial_p_value(0.0, 0, 0.5) == 1.0


# -- the command, end to end with tiny models -----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny ImageNet-style classifier (10 classes), a tiny CLIP vision model (width 32) and tiny
    EEG checkpoints with CLIP heads of width 32 and 16, all saved to folders like hub models."""
    import importlib.util

    import torch
    import transformers
    from transformers import ViTConfig, ViTForImageClassification

    from bci_dream.generation.tiny import build_tiny_clip_vision
    from bci_dream.models.checkpoint import save_checkpoint
    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    classifier = ViTForImageClassification(ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8, num_labels=10))
    classifier.save_pretrained(root / "classifier")
    processor_class = transformers.ViTImageProcessor
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "ViTImageProcessorPil"):
        processor_class = transformers.ViTImageProcessorPil
    processor_class(size={"height": 32, "width": 32}).save_pretrained(root / "classifier")
    clip = build_tiny_clip_vision(root / "clip", projection_dim=32)
    checkpoints = {}
    for width in (32, 16):
        model = EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=None, clip_projection_dim=width))
        checkpoints[width] = save_checkpoint(root / f"eeg{width}", model)
    return {"classifier": root / "classifier", "clip": clip, "eeg": checkpoints}


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    """N_PAIRS face/house pairs of a real Muse N170 recording (marker 1 = house, 2 = face)."""
    from bci_dream.io.readers import read_recording
    from bci_dream.training.pairs import make_pairs, write_pairs

    stim = shared_data / "muse-lsl/stim_face_house"
    recording = read_recording(shared_data / RECORDING)
    pairs = make_pairs(recording, {"1": stim / "houses", "2": stim / "faces"}, {"1": "house", "2": "face"}, round_robin=True)
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    write_pairs(path, pairs[:N_PAIRS])
    return path


def test_evaluate_command(tiny_models, manifest, tmp_path, capsys, caplog):
    from bci_dream.training.pairs import read_pairs

    pairs = read_pairs(manifest)
    n_distinct = len({p.image for p in pairs})
    generated = tmp_path / "generated"
    generated.mkdir()
    for i, p in enumerate(pairs[:-1]):  # the last row has no generated image
        # a "generated" image identical to the one shown: the classifier gives it the same class
        from PIL import Image

        Image.open(p.image).convert("RGB").save(generated_path(generated, i))
    out = tmp_path / "results" / "eval.json"
    with caplog.at_level("WARNING"):
        code = main(["evaluate", "--pairs", str(manifest), "--checkpoint", str(tiny_models["eeg"][32]),
                     "--generated", str(generated), "--classifier", str(tiny_models["classifier"]),
                     "--clip-model", str(tiny_models["clip"]), "--trials", "20", "--json", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("EEG->image identification") and lines[3].startswith("generated-image classification")
    assert lines[1].startswith("  averaged over repetitions")  # (images repeat in this manifest)
    assert lines[2].startswith(f"retrieval among {n_distinct} images: top-1 ")
    assert f"reduced from 50 to {n_distinct}" in caplog.text and "reduced from 50 to 10" in caplog.text
    assert "1 of 30 manifest rows have no generated image" in caplog.text

    result = json.loads(out.read_text())
    ident, cls = result["identification"], result["classification"]
    averaged = result["identification_averaged"]
    assert averaged["n_items"] == len({p.image for p in pairs if sum(q.image == p.image for q in pairs) > 1})
    assert ident["n_way"] == n_distinct and ident["n_items"] == N_PAIRS and ident["trials"] == 20
    assert 0.0 <= ident["accuracy"] <= 1.0 and ident["chance"] == pytest.approx(1 / n_distinct)
    assert 0.0 <= ident["p_value"] <= 1.0
    assert cls == {**cls, "n_way": 10, "n_items": N_PAIRS - 1, "accuracy": 1.0, "n_candidates": 10}
    assert result["settings"]["seed"] == 0 and result["notes"]

    # the same seed gives the same numbers
    again = tmp_path / "again.json"
    assert main(["evaluate", "--pairs", str(manifest), "--checkpoint", str(tiny_models["eeg"][32]),
                 "--clip-model", str(tiny_models["clip"]), "--trials", "20", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["identification"] == ident
    assert json.loads(again.read_text())["classification"] is None
    retrieval = result["retrieval"]
    assert retrieval["n_candidates"] == n_distinct and retrieval["n_items"] == N_PAIRS
    assert retrieval["chance1"] == pytest.approx(1 / n_distinct) and retrieval["chance5"] == pytest.approx(5 / n_distinct)

    # a bank's other images are retrieval candidates too
    from bci_dream.generation.image_bank import build_bank

    stim = Path(pairs[0].image).parents[1]  # faces/ and houses/
    bank = build_bank(stim, tiny_models["clip"]).save(tmp_path / "bank.safetensors")
    with_bank = tmp_path / "bank.json"
    assert main(["evaluate", "--pairs", str(manifest), "--checkpoint", str(tiny_models["eeg"][32]),
                 "--clip-model", str(tiny_models["clip"]), "--trials", "5", "--bank", str(bank),
                 "--json", str(with_bank)]) == 0
    assert json.loads(with_bank.read_text())["retrieval"]["n_candidates"] == len(list(stim.rglob("*.jpg")))


def test_retrieval_ranks_the_true_image_among_all_candidates():
    from bci_dream.training.evaluate import retrieval

    candidates = np.eye(6)
    eeg = candidates[[0, 1, 2, 3]] + 0.01
    eeg[3] = candidates[4] * 2  # trial 3 (image 3) lands on image 4: not top-1, but in the top 5
    r = retrieval(eeg, np.array([0, 1, 2, 3]), candidates)
    assert (r.top1, r.top5, r.n_candidates) == (0.75, 1.0, 6) and r.chance1 == pytest.approx(1 / 6)
    assert r.p1 < 0.05


def test_evaluate_bad_inputs(tiny_models, manifest, tmp_path, capsys):
    def run(*extra):
        code = main(["evaluate", "--pairs", str(manifest), "--clip-model", str(tiny_models["clip"]), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1, err
        return err

    err = run("--checkpoint", str(tmp_path / "no-such-checkpoint"))
    assert "no-such-checkpoint" in err and "checkpoint" in err

    err = run("--checkpoint", str(tiny_models["eeg"][16]))
    assert "width 16" in err and "width 32" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    err = run("--checkpoint", str(tiny_models["eeg"][32]), "--clip-model", "none", "--generated", str(empty),
              "--classifier", str(tiny_models["classifier"]))
    assert "no generated images" in err and "00000.png" in err

    err = run("--checkpoint", str(tiny_models["eeg"][32]), "--clip-model", str(tmp_path / "no-clip-here"))
    assert "cannot load the CLIP vision model" in err

    broken = tmp_path / "pairs.csv"
    shutil.copy(manifest, broken)
    broken.write_text(broken.read_text().replace("recording,", "recordin,", 1))
    code = main(["evaluate", "--pairs", str(broken), "--checkpoint", str(tiny_models["eeg"][32]),
                 "--clip-model", str(tiny_models["clip"])])
    assert code == 1 and "recording" in capsys.readouterr().err
