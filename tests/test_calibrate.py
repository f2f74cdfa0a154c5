"""Headless calibration on a real recording: the Muse N170 face/house session of ../shared/data/muse-lsl.

The diffusion and CLIP models are tiny random-weight ones built by the tests (no downloads); the
encoder starts from a tiny pretraining-style checkpoint. The figures are therefore about chance;
what is checked is that every step runs on the real session and writes what a user gets.
"""

import json

import pytest

from bci_dream.cli import main
from bci_dream.core.errors import BciDreamError
from bci_dream.models.subject_profile import SubjectError, check_subject_id, checkpoint_of, load_profile

MUSE = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
STIM = "muse-lsl/stim_face_house"


@pytest.fixture
def models(calibration_models):
    return calibration_models


def calibrate_args(shared_data, models, folder, *extra):
    return ["calibrate", "--headless", "--subject", folder.name, "--recording", str(shared_data / MUSE),
            "--class", f"2={shared_data / STIM / 'faces'}", "--class", f"1={shared_data / STIM / 'houses'}",
            "--model", str(models["sd"]), "--clip-model", str(models["clip"]), "--init", str(models["init"]),
            "--resolution", "64", "--batch-size", "4", "--max-steps", "4", "--checkpoint-every", "2",
            "--eval-every", "2", "--gpu", "cpu", "--subjects-dir", str(folder.parent), "--no-progress", "--round-robin",
            *extra]


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
    from bci_dream.models.checkpoint import read_config

    assert read_config(folder / profile.checkpoint)["meta"]["validation"] == v  # the score travels with the model
    train = (folder / "train.csv").read_text().splitlines()[1:]
    held = (folder / "validation.csv").read_text().splitlines()[1:]
    assert len(train) + len(held) == 197 and 30 <= len(held) <= 50  # 108 house + 89 face trials, 20 % held out
    assert not set(train) & set(held)
    assert (folder / "validation.png").is_file()
    model = checkpoint_of(folder)
    assert model.parent == folder and model.name.startswith("model-") and (model / "config.json").is_file()
    meta = json.loads((model / "config.json").read_text())
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

    def replay(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bci_dream.cli", "replay",
                               str(shared_data / "bci-essentials/ssvep_example.xdf"), "--headless", "--out", str(out),
                               "--model", str(models["sd"]), "--checkpoint", str(folder), "--seconds", "3", "--speed",
                               "2", "--gpu", "cpu", "--size", "64", *extra],
                              capture_output=True, text=True, timeout=120, check=False)

    # the model was calibrated on the Muse's four channels: a DSI-7 session (F3, F4, C3, C4) is refused in one line
    refused = replay()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    error = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "calibrated on the channels AF7, AF8, TP9, TP10" in error[0], refused.stderr
    assert "has no AF7, AF8, TP9, TP10" in error[0]
    # named as the Muse's sites (stream order S2,F4,C4,S3,S1,C3,F3,TRG), it is used; the fifth site is left out
    proc = replay("--channels=-,AF8,TP10,-,-,TP9,AF7,Fz")
    assert proc.returncode == 0, proc.stderr
    assert "left out of the windows" in proc.stderr and "Fz" in proc.stderr
    records = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    assert records and all("untrained conditioning" not in r["labels"] for r in records)


def test_fine_tuning_reports_progress_can_be_cancelled_and_goes_on_from_there(shared_data, models, tmp_path,
                                                                               monkeypatch):
    import threading

    from bci_dream.calibrate.headless import calibrate_headless
    from bci_dream.training.finetune import FinetuneCancelled, FinetuneSettings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = FinetuneSettings(model=str(models["sd"]), clip_model=str(models["clip"]), resolution=64, batch_size=4,
                                max_steps=4, checkpoint_every=10, eval_every=10, device="cpu")
    classes = {"2": shared_data / STIM / "faces", "1": shared_data / STIM / "houses"}
    steps, phases, cancel = [], [], threading.Event()

    def on_step(record):
        steps.append(record)
        if record["step"] == 2:
            cancel.set()

    kwargs = dict(classes=classes, round_robin=True, init=models["init"], figure_rows=0,
                  subjects_dir=tmp_path / "s04", progress=False,
                  on_phase=phases.append)
    with pytest.raises(FinetuneCancelled, match="cancelled at step 2 of 4"):
        calibrate_headless(shared_data / MUSE, "s04", settings, on_step=on_step, cancel=cancel, **kwargs)
    assert [r["step"] for r in steps] == [1, 2] and steps[-1]["max_steps"] == 4 and steps[-1]["seconds_left"] > 0
    assert phases == ["fine-tuning"]
    result = calibrate_headless(shared_data / MUSE, "s04", settings, on_step=on_step, **kwargs)
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # went on from the checkpoint saved at the cancel
    assert phases == ["fine-tuning", "fine-tuning", "validating", "saving"]
    assert result.profile.validation["n_items"] > 0


def test_a_new_session_of_a_calibrated_subject_trains_afresh(shared_data, models, tmp_path, monkeypatch):
    """Only a run on the very same training trials is resumed; other trials (a new session) start over."""
    from bci_dream.calibrate.headless import calibrate_headless
    from bci_dream.training.finetune import FinetuneSettings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = FinetuneSettings(model=str(models["sd"]), clip_model=str(models["clip"]), resolution=64, batch_size=4,
                                max_steps=2, checkpoint_every=10, eval_every=10, device="cpu")
    classes = {"2": shared_data / STIM / "faces", "1": shared_data / STIM / "houses"}
    steps = []
    kwargs = dict(classes=classes, round_robin=True, init=models["init"], figure_rows=0,
                  subjects_dir=tmp_path / "s05", progress=False,
                  on_step=lambda r: steps.append(r["step"]))
    calibrate_headless(shared_data / MUSE, "s05", settings, validation_fraction=0.2, **kwargs)
    calibrate_headless(shared_data / MUSE, "s05", settings, validation_fraction=0.3, **kwargs)  # other trials
    calibrate_headless(shared_data / MUSE, "s05", settings, validation_fraction=0.3, **kwargs)  # the same again
    assert steps == [1, 2, 1, 2]


def test_a_class_with_one_trial_says_how_many_are_needed(tmp_path):
    from bci_dream.calibrate.headless import split_pairs
    from bci_dream.training.pairs import Pair

    pairs = [Pair(tmp_path / "r.xdf", float(k), "1", tmp_path / "a.png", "a") for k in range(6)]
    pairs.append(Pair(tmp_path / "r.xdf", 9.0, "2", tmp_path / "b.png", "b"))
    with pytest.raises(BciDreamError, match="class b has 1 trial; each class needs at least 2.*5 give one"):
        split_pairs(pairs, 0.2)
    train, held = split_pairs(pairs[:6], 0.2)
    assert len(train) == 5 and len(held) == 1
