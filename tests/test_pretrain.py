"""Pretraining on real recordings with the tiny preset: checkpoints, resume, bad input, baselines."""

import json

import numpy as np
import pytest
import torch

from bci_dream.cli import main
from bci_dream.core.errors import CheckpointError
from bci_dream.models.checkpoint import load_checkpoint, load_training_state
from bci_dream.models.encoder import EegEncoder
from bci_dream.models.encoder_config import PRESETS, preset
from bci_dream.training.pretrain import NonFiniteLossError, PretrainSettings, lr_factor, pretrain
from bci_dream.training.reconstruction import interpolate_hidden, reconstruction_scores


@pytest.fixture()
def recordings(shared_data):
    return [shared_data / "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt",
            shared_data / "bci-essentials/ssvep_example.xdf",
            shared_data / "brainflow/test_data.csv"]


def test_pretrain_command_writes_a_resumable_checkpoint(tmp_path, recordings, shared_data, capsys):
    junk = tmp_path / "junk.xdf"
    junk.write_text("not a recording")
    out = tmp_path / "ckpt"
    args = ["pretrain", *map(str, recordings), str(junk), "-o", str(out), "--preset", "tiny", "--max-steps", "12",
            "--batch-size", "8", "--checkpoint-every", "6",
            "--holdout", str(shared_data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "pretrained 'tiny' for 12 steps" in printed
    assert "skipped 1 recordings" in printed and "junk.xdf" in printed
    assert "held-out masked-patch MSE" in printed and "zeros" in printed and "interpolation" in printed
    model, raw = load_checkpoint(out)
    assert raw["meta"]["stage"] == "pretrain" and raw["meta"]["steps"] == 12
    assert model.conditioning is None and model.clip is None
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [10, 12]
    assert all(np.isfinite(x["loss"]) for x in lines if "loss" in x)
    assert load_training_state(out)["step"] == 12

    # An interrupted run resumes from the last checkpoint instead of starting again.
    args[args.index("--max-steps") + 1] = "18"
    assert main(args) == 0
    assert "for 18 steps" in capsys.readouterr().out
    assert load_training_state(out)["step"] == 18


def test_resume_refuses_a_checkpoint_of_another_preset(tmp_path, recordings):
    out = tmp_path / "ckpt"
    pretrain(recordings[:1], out, PretrainSettings(preset="tiny", max_steps=2, batch_size=4), progress=False)
    with pytest.raises(CheckpointError, match="mismatched keys"):
        pretrain(recordings[:1], out, PretrainSettings(preset="small", max_steps=2, batch_size=4), progress=False)


def test_a_checkpoint_named_by_one_of_its_files_loads_and_damaged_ones_say_so_in_one_line(tmp_path, recordings):
    """``--checkpoint ck/model.safetensors`` means the folder; a missing path, another file, a damaged config and cut-off
    weights each get one line saying what to do."""
    import shutil

    out = tmp_path / "ckpt"
    pretrain(recordings[:1], out, PretrainSettings(preset="tiny", max_steps=2, batch_size=4), progress=False)
    for name in ("model.safetensors", "config.json"):
        assert load_checkpoint(out / name)[1]["meta"]["stage"] == "pretrain"
    (tmp_path / "weights.pt").write_bytes(b"\x80\x02")
    damaged = shutil.copytree(out, tmp_path / "damaged")
    (damaged / "config.json").write_text('{"format": ')
    cut = shutil.copytree(out, tmp_path / "cut")
    weights = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    for path, message in ((tmp_path / "nowhere", "does not exist; give the folder written by"),
                          (tmp_path / "weights.pt", "is a file, not a bci-dream checkpoint: give the folder that holds"),
                          (damaged, "config.json is damaged .*; copy the checkpoint again"),
                          (cut, "the weights are missing, damaged or cut off; copy the checkpoint again")):
        with pytest.raises(CheckpointError, match=message) as caught:
            load_checkpoint(path)
        assert "\n" not in str(caught.value)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, recordings):
    out = tmp_path / "ckpt"
    settings = PretrainSettings(preset="tiny", max_steps=4, batch_size=4, checkpoint_every=2)
    pretrain(recordings[:1], out, settings, progress=False)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        pretrain(recordings[:1], out, PretrainSettings(preset="tiny", max_steps=8, batch_size=4, lr=1e30,
                                                          checkpoint_every=100), restart=True, progress=False)
    assert (out / "model.safetensors").read_bytes() == before


def test_no_readable_recording_is_one_clear_line(tmp_path, capsys):
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    assert main(["pretrain", str(junk), "-o", str(tmp_path / "o"), "--preset", "tiny", "--max-steps", "1"]) == 1
    assert "no windows to train on" in capsys.readouterr().err


def test_learning_rate_schedule():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0)


def test_baselines_on_known_signals():
    x = np.vstack([np.linspace(0, 1, 64), np.ones(64)])
    hidden = np.zeros(64, bool)
    hidden[20:40] = True
    np.testing.assert_allclose(interpolate_hidden(x, hidden), x)  # linear signals are interpolated exactly
    enc = EegEncoder(preset("tiny"))
    windows = np.random.default_rng(0).standard_normal((4, 128, 512)).astype(np.float32)
    masks = np.zeros((4, 128), bool)
    masks[:, :8] = True
    scores = reconstruction_scores(enc, windows, masks)
    assert scores.windows == 4 and scores.zeros == pytest.approx(1.0, rel=0.1)


def test_encoder_rejects_windows_of_the_wrong_shape():
    enc = EegEncoder(preset("tiny"))
    with pytest.raises(ValueError, match="128 channels x 512 samples.*got shape"):
        enc.embed(torch.zeros(1, 64, 512))


#: Encoder parameters of each preset (without the MAE decoder), as documented in the README.
PRESET_ENCODER_PARAMETERS = {"dreamdiffusion": (151.0e6, 153.0e6), "small": (7.0e6, 8.0e6), "tiny": (1e3, 1e5)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_encoder_preset_builds_embeds_learns_and_checks_its_input(name):
    """Each entry of the preset registry (a new preset lands in this test by itself): its window is the
    configured length at its rate, ``embed`` gives [B, L, D] tokens, one MAE step gives a finite loss whose
    gradient reaches the encoder, and a window of the wrong shape is refused
    in one line naming the expected shape."""
    config = preset(name)
    assert config.preset == name and config.n_samples % config.patch_size == 0
    assert config.window_seconds == config.n_samples / config.sfreq
    low, high = PRESET_ENCODER_PARAMETERS.get(name, (1, float("inf")))
    torch.manual_seed(0)
    enc = EegEncoder(config)
    assert low <= sum(p.numel() for p in enc.encoder_parameters()) <= high
    x = torch.randn(2, config.n_channels, config.n_samples)
    mask = torch.zeros(2, config.n_channels)
    mask[:, :8] = 1
    with torch.no_grad():
        tokens = enc.embed(x, mask)
    assert tokens.shape == (2, config.num_patches, config.embed_dim) and torch.isfinite(tokens).all()
    loss, pred, patch_mask = enc(x, mask, mask_ratio=0.75, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and pred.shape[:2] == patch_mask.shape == (2, config.num_patches)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.encoder_parameters())
    with pytest.raises(ValueError, match=f"{config.n_channels} channels x {config.n_samples} samples"):
        enc.embed(torch.zeros(1, config.n_channels - 1, config.n_samples))
