"""The window specification a checkpoint carries: epoch length and offset, channels, and the shipped protocols."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from bci_dream.calibrate.protocol import Protocol, list_protocols, load_protocol
from bci_dream.core import defaults
from bci_dream.models.eeg_model import EegModel, EegModelConfig, Preprocessing
from bci_dream.models.encoder_config import preset
from bci_dream.models.window_spec import channel_mismatch, epoch_offset, samples_for, with_window
from bci_dream.signal.montage import Montage


def tiny_model(**encoder) -> EegModel:
    torch.manual_seed(0)
    return EegModel(EegModelConfig(encoder=preset("tiny", **encoder), cross_attention_dim=24, clip_projection_dim=8))


def test_epoch_lengths_become_whole_patches_at_the_encoder_rate():
    config = tiny_model().config  # 256 Hz, patches of 16 samples
    assert samples_for(1.0, config) == 256
    assert samples_for(0.5, config) == 128
    assert samples_for(0.44, config) == 112  # 112.6 samples: 7 patches
    assert samples_for(0.01, config) == 16  # at least one patch
    with pytest.raises(ValueError, match="positive"):
        samples_for(0.0, config)


def test_a_model_resized_to_one_second_keeps_its_encoder_and_starts_its_token_heads_afresh():
    model = tiny_model()
    resized = with_window(model, 256)
    assert resized.config.encoder.n_samples == 256 and resized.config.encoder.window_seconds == 1.0
    assert resized.conditioning.num_tokens == 16 and resized.clip.num_tokens == 16
    old = model.encoder.state_dict()
    for key, value in resized.encoder.state_dict().items():
        assert torch.equal(value, old[key]), key  # every encoder weight kept (sine-cosine positions are rebuilt)
    x = torch.randn(3, 128, 256)
    assert resized.prompt_embeds(x).shape == (3, 77, 24) and resized.clip_embeds(x).shape == (3, 8)
    assert with_window(resized, 256) is resized
    with pytest.raises(ValueError, match=r"512 samples \(2 s at 256 Hz\), got shape \(3, 128, 256\)"):
        model.prompt_embeds(x)  # the 2-s model refuses 1-s windows, in one line


def test_stored_positions_are_interpolated_to_the_new_length():
    model = tiny_model(positions="stored")
    with torch.no_grad():
        model.encoder.pos_embed.copy_(torch.linspace(0, 1, 33)[None, :, None].expand(1, 33, 32))
    resized = with_window(model, 128)  # 32 tokens → 8
    pos = resized.encoder.pos_embed
    assert pos.shape == (1, 9, 32)
    assert torch.equal(pos[0, 0], model.encoder.pos_embed[0, 0])  # the class token's position stays
    torch.testing.assert_close(pos[0, 1:, 0], torch.linspace(1 / 32, 1, 8))  # the ends kept, linear between


def test_a_stream_without_the_calibrated_channels_is_named_and_extra_ones_are_listed():
    montage = Montage.canonical()
    mapping = montage.map(["F3", "F4", "C3", "C4"])
    problem, extra = channel_mismatch(("AF7", "AF8", "TP9", "TP10"), mapping, montage.names)
    assert problem is not None and problem.count("\n") == 0
    assert "calibrated on the channels AF7, AF8, TP9, TP10" in problem and "has no AF7, AF8, TP9, TP10" in problem
    assert "--channels-file" in problem

    mapping = montage.map(["TP9", "AF7", "AF8", "TP10", "Fz"])
    problem, extra = channel_mismatch(("AF7", "AF8", "TP9", "TP10"), mapping, montage.names)
    assert problem is None and extra == ["Fz"]
    keep = np.isin(montage.names, ["AF7", "AF8", "TP9", "TP10"])
    restricted = mapping.restricted_to(keep)
    assert restricted.n_mapped == 4 and restricted.mask.sum() == 4 and not restricted.mask[montage.index("Fz")]
    out = restricted.apply(np.arange(10, dtype=np.float32).reshape(5, 2))
    assert out[montage.index("TP9")].tolist() == [0, 1] and out[montage.index("Fz")].tolist() == [0, 0]
    assert channel_mismatch(None, mapping, montage.names) == (None, [])  # a pretrained model takes any channels


def test_evaluation_cuts_epochs_where_training_did_and_says_when_asked_otherwise(caplog):
    config = EegModelConfig(encoder=preset("tiny"), preprocessing=Preprocessing(epoch_offset_s=0.1))
    assert epoch_offset(config, None) == 0.1
    with caplog.at_level(logging.WARNING):
        assert epoch_offset(config, 0.3) == 0.3
    assert "trained on epochs from 0.1 s" in caplog.text and "from 0.3 s" in caplog.text


def test_the_preprocessing_round_trips_and_old_checkpoints_read_as_untargeted():
    config = EegModelConfig(encoder=preset("tiny"), preprocessing=Preprocessing(epoch_offset_s=0.05,
                                                                                channels=("O1", "O2")))
    again = EegModelConfig.from_dict(config.to_dict())
    assert again == config
    old = config.to_dict()
    del old["preprocessing"]["epoch_offset_s"], old["preprocessing"]["channels"]
    old["preprocessing"]["from_a_later_version"] = 1
    read = EegModelConfig.from_dict(old).preprocessing
    assert read.epoch_offset_s == 0.0 and read.channels is None


@pytest.mark.parametrize("name", ["default", "quick"])
def test_the_shipped_protocols_onsets_are_at_least_one_epoch_apart(name):
    assert name in list_protocols()
    protocol = load_protocol(name)
    assert protocol.shortest_onset_interval_s >= defaults.EPOCH_S
    assert protocol.epoch_overlap(defaults.EPOCH_S) is None
    onsets = np.array([t.onset_s for t in protocol.schedule()])
    assert np.diff(onsets).min() >= defaults.EPOCH_S - 1e-6


def test_a_protocol_whose_epochs_overlap_is_warned_about_with_the_overlap():
    protocol = Protocol(stimuli="shapes-colours", name="fast", image_s=0.5, isi_s=0.4, jitter_s=0.1)
    line = protocol.epoch_overlap(1.0)
    assert line is not None and line.count("\n") == 0
    assert "0.8 s apart" in line and "up to 0.20 s" in line and "--epoch" in line


@pytest.mark.parametrize("field,value,said", [("normalization", "z-score-per-channel", "normalised by 'z-score"),
                                              ("montage", "biosemi-64", "montage 'biosemi-64'")])
def test_a_checkpoint_whose_windows_this_version_cannot_make_is_refused_in_one_line(tmp_path, capsys, field, value,
                                                                                  said):
    import json

    from bci_dream.cli import main

    from bci_dream.core.errors import CheckpointError
    from bci_dream.models.checkpoint import load_checkpoint, save_checkpoint

    folder = save_checkpoint(tmp_path / "ckpt", tiny_model())
    config = json.loads((folder / "config.json").read_text())
    config["preprocessing"][field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)
    assert said in str(caught.value) and str(caught.value).count("\n") == 0
    assert main(["evaluate", "--pairs", str(tmp_path / "pairs.csv"), "--checkpoint", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "Traceback" not in err

    config["preprocessing"][field] = Preprocessing().__getattribute__(field)
    config["encoder"]["n_samples"] = "many"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not describe an EEG model"):
        load_checkpoint(folder)
