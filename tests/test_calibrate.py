"""Headless calibration on a real recording: the Muse N170 face/house session of ../shared/data/muse-lsl.

The diffusion and CLIP models are tiny random-weight ones built by the tests (no downloads); the
encoder starts from a tiny pretraining-style checkpoint. The figures are therefore about chance;
what is checked is that every step runs on the real session and writes what a user gets.
"""

import json
from pathlib import Path

import pytest
import torch

from bci_dream.calibrate.subject import SubjectError, check_subject_id, checkpoint_of, load_profile
from bci_dream.cli import main
from bci_dream.generation.tiny import build_tiny_clip_vision, build_tiny_sd_turbo
from bci_dream.models.checkpoint import save_checkpoint
from bci_dream.models.eeg_model import EegModel, EegModelConfig
from bci_dream.models.encoder import preset

MUSE = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
STIM = "muse-lsl/stim_face_house"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(1)
    init = EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=None, clip_projection_dim=None))
    return {"sd": build_tiny_sd_turbo(root / "sd", seed=0), "clip": build_tiny_clip_vision(root / "clip", seed=0),
            "init": save_checkpoint(root / "pretrained", init, meta={"stage": "pretrain"})}


def calibrate_args(shared_data, models, folder, *extra):
    return ["calibrate", "--headless", "--subject", "s01", "--recording", str(shared_data / MUSE),
            "--class", f"2={shared_data / STIM / 'faces'}", "--class", f"1={shared_data / STIM / 'houses'}",
            "--model", str(models["sd"]), "--clip-model", str(models["clip"]), "--init", str(models["init"]),
            "--resolution", "64", "--batch-size", "4", "--max-steps", "4", "--checkpoint-every", "2",
            "--eval-every", "2", "--gpu", "cpu", "--subjects-dir", str(folder.parent), "--no-progress", *extra]


def test_headless_calibration_of_the_muse_n170_session(shared_data, models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "s01"
    assert main(calibrate_args(shared_data, models, folder)) == 0
    out = capsys.readouterr().out
    assert "calibrated subject s01" in out and "held-out identification" in out
    profile = load_profile(folder)
    assert profile.subject == "s01" and profile.model == str(models["sd"])
    v = profile.validation
    assert v["n_items"] > 0 and 0.0 <= v["accuracy"] <= 1.0 and v["chance"] == pytest.approx(1 / v["n_way"])
    train = (folder / "train.csv").read_text().splitlines()[1:]
    held = (folder / "validation.csv").read_text().splitlines()[1:]
    assert len(train) + len(held) == 197 and 30 <= len(held) <= 50  # 108 house + 89 face trials, 20 % held out
    assert not set(train) & set(held)
    assert (folder / "validation.png").is_file()
    assert checkpoint_of(folder) == folder / "model" and (folder / "model" / "config.json").is_file()
    meta = json.loads((folder / "model" / "config.json").read_text())
    assert meta  # a checkpoint the app and 'bci-dream run --checkpoint' load

    # running it again resumes the fine-tuning instead of starting over, and keeps the profile's history
    created = profile.created
    assert main(calibrate_args(shared_data, models, folder, "--max-steps", "6")) == 0
    again = load_profile(folder)
    assert again.created == created and again.updated >= created


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", "x" * 65, "a\\b"])
def test_subject_ids_with_path_characters_are_refused(bad, capsys):
    with pytest.raises(SubjectError):
        check_subject_id(bad)
    assert main(["calibrate", "--headless", "--subject", bad, "--recording", "x.xdf"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "subject id" in err


def test_calibration_errors_are_one_line(shared_data, tmp_path, capsys):
    assert main(["calibrate", "--headless", "--subject", "s02", "--recording", str(tmp_path / "none.xdf"),
                 "--class", "1=x"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["calibrate", "--headless", "--subject", "s02", "--recording", str(shared_data / MUSE)]) == 1
    assert "--pairs" in capsys.readouterr().err


def test_the_subject_profile_drives_headless_generation(shared_data, models, tmp_path, monkeypatch):
    """'bci-dream replay --checkpoint SUBJECT_FOLDER': the subject's EEG model and UNet adapter are used."""
    import subprocess
    import sys

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "s03"
    assert main(calibrate_args(shared_data, models, folder, "--figure-rows", "0")) == 0
    out = tmp_path / "frames"
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli", "replay",
                           str(shared_data / "bci-essentials/ssvep_example.xdf"), "--headless", "--out", str(out),
        "--model", str(models["sd"]), "--checkpoint", str(folder), "--seconds", "3", "--speed", "2", "--gpu", "cpu",
        "--size", "64"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    assert records and all("untrained conditioning" not in r["labels"] for r in records)
