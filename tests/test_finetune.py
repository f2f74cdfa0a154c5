"""EEG-image pairs and fine-tuning, end to end on the real Muse N170 session.

No real model weights are used: the diffusion pipeline (SD-Turbo-shaped) and the CLIP vision model
are tiny random-weight models that these tests build with ``bci_dream.generation.tiny`` and save in
the real on-disk formats, so the production ``from_pretrained`` code paths load them.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bci_dream.cli import main
from bci_dream.generation.tiny import build_tiny_clip_vision, build_tiny_sd_turbo
from bci_dream.io.image_file import read_image
from bci_dream.loading.diffusion_parts import load_diffusion_parts
from bci_dream.loading.unet_adapter import load_unet_adapter
from bci_dream.loading.vision_models import load_clip_vision
from bci_dream.models.checkpoint import load_checkpoint, save_checkpoint
from bci_dream.models.eeg_model import EegModel, EegModelConfig
from bci_dream.models.encoder_config import preset
from bci_dream.training import finetune as ft
from bci_dream.training.pairs import read_pairs

MUSE = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
STIM = "muse-lsl/stim_face_house"
RESOLUTION = "64"  # 8 x 8 latents for the tiny SD-Turbo-shaped UNet


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight models (not real weights) in the diffusers / transformers folder formats."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {"sd": build_tiny_sd_turbo(root / "sd-turbo-tiny", seed=0),
            "clip": build_tiny_clip_vision(root / "clip-tiny", projection_dim=32, seed=0)}


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    code = main(["make-pairs", str(shared_data / MUSE), "--class", f"2={shared_data / STIM / 'faces'}",
                 "--class", f"1={shared_data / STIM / 'houses'}", "--label", "2=face", "--label", "1=house",
                 "--round-robin", "-o", str(out), "--seed", "0"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory) -> Path:
    """A pretraining-style checkpoint: a 'tiny' encoder without heads."""
    torch.manual_seed(1)
    model = EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=None, clip_projection_dim=None))
    return save_checkpoint(tmp_path_factory.mktemp("init") / "pretrained", model, meta={"stage": "pretrain"})


def finetune_args(manifest: Path, tiny: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["finetune", "--pairs", str(manifest), "-o", str(out), "--model", str(tiny["sd"]),
            "--clip-model", str(tiny["clip"]), "--batch-size", "4", "--resolution", RESOLUTION,
            "--eval-every", "3", "--checkpoint-every", "3", "--no-progress", *extra]


@pytest.fixture(scope="module")
def trained(manifest, tiny, init_checkpoint, tmp_path_factory) -> Path:
    """Six steps from the pretraining checkpoint, heads + LoRA only."""
    out = tmp_path_factory.mktemp("run") / "finetuned"
    assert main(finetune_args(manifest, tiny, out, "--init", str(init_checkpoint), "--max-steps", "6",
                              "--keep-last")) == 0
    return out


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bci-dream: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- tiny models ----------------------------------------------------------------------------------

def test_tiny_sd_turbo_round_trips_through_from_pretrained(tiny, tmp_path):
    from diffusers import (
        AutoencoderTiny,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
    )

    pipe = StableDiffusionPipeline.from_pretrained(tiny["sd"], text_encoder=None, tokenizer=None,
                                                   feature_extractor=None, image_encoder=None, safety_checker=None,
                                                   requires_safety_checker=False)
    cfg = pipe.unet.config
    assert cfg.cross_attention_dim == 1024 and cfg.use_linear_projection
    assert list(cfg.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(cfg.up_block_types) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert isinstance(pipe.vae, AutoencoderTiny) and pipe.vae_scale_factor == 8
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    assert pipe.scheduler.config.prediction_type == "epsilon"

    embeds = torch.randn(1, 77, 1024, generator=torch.Generator().manual_seed(0))
    images = [pipe(prompt_embeds=embeds, num_inference_steps=1, guidance_scale=0.0, output_type="np",
                   generator=torch.Generator().manual_seed(3)).images for _ in range(2)]
    assert images[0].shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(images[0], images[1])

    again = build_tiny_sd_turbo(tmp_path / "again", seed=0)  # deterministic with the seed
    for sub in ("unet", "vae"):
        a = load_file(str(tiny["sd"] / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(again / sub / "diffusion_pytorch_model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_clip_round_trips_through_from_pretrained(tiny, shared_data, tmp_path):
    from transformers import CLIPVisionModelWithProjection

    model, processor = load_clip_vision(tiny["clip"])  # the production loader
    assert isinstance(model, CLIPVisionModelWithProjection)
    image = read_image(min((shared_data / STIM / "faces").glob("*.jpg")))
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    with torch.no_grad():
        embeds = model(pixel_values=pixels).image_embeds
    assert embeds.shape == (1, 32) and torch.isfinite(embeds).all()

    again = build_tiny_clip_vision(tmp_path / "again", projection_dim=32, seed=0)
    a, b = load_file(str(tiny["clip"] / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- pairs ----------------------------------------------------------------------------------------

def test_make_pairs_on_the_muse_n170_session(manifest, shared_data, tmp_path):
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["recording", "onset", "marker", "image", "class"]
    assert len(rows) == 197
    assert Counter(r["marker"] for r in rows) == {"1": 108, "2": 89}
    assert all(r["class"] == {"1": "house", "2": "face"}[r["marker"]] for r in rows)

    pairs = read_pairs(manifest)
    assert len(pairs) == 197
    faces = {p.resolve() for p in (shared_data / STIM / "faces").glob("*.jpg")}
    houses = {p.resolve() for p in (shared_data / STIM / "houses").glob("*.jpg")}
    for p in pairs:
        assert p.recording.resolve() == (shared_data / MUSE).resolve()
        assert p.image.resolve() in (faces if p.label == "face" else houses)
    onsets = [p.onset for p in pairs]
    assert onsets == sorted(onsets) and onsets[0] == pytest.approx(149958.388)
    # round-robin over the class's images: every image used, none more than once more than another
    uses = Counter(p.image.resolve() for p in pairs if p.label == "face")
    assert set(uses) == faces and max(uses.values()) - min(uses.values()) <= 1

    # deterministic with the seed; another seed shows other images
    same, other = tmp_path / "same.csv", tmp_path / "other.csv"
    base = ["make-pairs", str(shared_data / MUSE), "--class", f"2={shared_data / STIM / 'faces'}",
            "--class", f"1={shared_data / STIM / 'houses'}", "--label", "2=face", "--label", "1=house", "--round-robin"]
    assert main([*base, "-o", str(same)]) == 0
    assert main([*base, "-o", str(other), "--seed", "1"]) == 0
    assert [p.image.resolve() for p in read_pairs(same)] == [p.image.resolve() for p in pairs]
    assert [p.image.resolve() for p in read_pairs(other)] != [p.image.resolve() for p in pairs]


def test_pairs_to_arrays_cuts_one_window_per_pair(manifest, tmp_path):
    from bci_dream.training.pairs import pairs_to_arrays
    from bci_dream.training.windows import WindowSpec

    eeg, mask, images, labels = pairs_to_arrays(read_pairs(manifest), WindowSpec())
    assert eeg.dtype == np.float32 and eeg.shape == (196, 128, 512)  # the last onset is < 2 s from the end
    assert mask.shape == (196, 128) and (mask.sum(1) == 4).all()  # TP9, AF7, AF8, TP10
    assert len(images) == len(labels) == 196 and Counter(labels) == {"house": 108, "face": 88}
    assert np.isfinite(eeg).all() and eeg[:, mask[0]].std() > 0 and not eeg[:, ~mask[0]].any()

    # a row without onset stands for every occurrence of its marker
    pair = read_pairs(manifest)[0]
    every_face = tmp_path / "every_face.csv"
    every_face.write_text(f"recording,onset,marker,image,class\n{pair.recording},,2,{pair.image},face\n")
    faces, _, face_images, _ = pairs_to_arrays(read_pairs(every_face), WindowSpec())
    assert len(faces) == len(face_images) == 88
    np.testing.assert_array_equal(faces[0], eeg[0])  # the first pair is the first face


def test_make_pairs_errors_are_one_line(shared_data, tmp_path, capsys):
    rec = str(shared_data / MUSE)
    assert main(["make-pairs", rec, "--class", f"3={shared_data / STIM / 'faces'}", "-o", str(tmp_path / "p.csv")]) == 1
    assert "marker '3' does not occur" in one_error_line(capsys)
    assert main(["make-pairs", rec, "--class", f"2={tmp_path / 'nope'}", "-o", str(tmp_path / "p.csv")]) == 1
    assert "does not exist" in one_error_line(capsys)
    assert main(["make-pairs", rec, "--class", "2", "-o", str(tmp_path / "p.csv")]) == 1
    assert "MARKER=VALUE" in one_error_line(capsys)
    damaged = tmp_path / "faces"
    shutil.copytree(shared_data / STIM / "faces", damaged)
    (damaged / "empty.jpg").write_bytes(b"")
    (damaged / "noise.png").write_bytes(bytes(range(256)))
    assert main(["make-pairs", rec, "--class", f"2={damaged}", "--round-robin", "-o", str(tmp_path / "p.csv")]) == 1
    assert "2 image(s) are damaged or not images (empty.jpg, noise.png); replace or remove them" in \
        one_error_line(capsys)
    assert not (tmp_path / "p.csv").exists()


# -- fine-tuning ----------------------------------------------------------------------------------

def test_finetune_end_to_end_writes_a_checkpoint_that_reloads(trained, init_checkpoint, tiny, capsys):
    model, raw = load_checkpoint(trained)
    meta = raw["meta"]
    assert meta["stage"] == "finetune" and meta["steps"] == 6
    assert meta["base_model"] == str(tiny["sd"]) and meta["clip_model"] == str(tiny["clip"])
    assert meta["n_train"] + meta["n_val"] == 197 and meta["n_val"] == 39
    # heads created for the UNet's and CLIP's widths, read from their configs
    assert model.config.cross_attention_dim == 1024 and model.config.clip_projection_dim == 32
    # the window specification travels with it: 1-s stimulus-locked epochs (the 2-s encoder resized), their
    # offset, and the Muse's four channels it was trained on
    assert model.config.encoder.n_samples == 256 and model.config.encoder.window_seconds == 1.0
    assert model.config.preprocessing.epoch_offset_s == 0.0
    assert set(model.config.preprocessing.channels) == {"AF7", "AF8", "TP9", "TP10"}
    x = torch.randn(2, 128, 256)
    assert model.prompt_embeds(x).shape == (2, 77, 1024) and model.clip_embeds(x).shape == (2, 32)

    rows = metrics(trained)
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for r in steps:
        assert all(math.isfinite(r[k]) for k in ("loss", "diffusion_loss", "clip_loss", "lr"))
        assert r["loss"] == pytest.approx(r["diffusion_loss"] + r["clip_loss"], rel=1e-5)
    vals = [r for r in rows if "val_clip_cosine" in r]
    assert [r["step"] for r in vals] == [0, 3, 6]
    for r in vals:
        assert -1.0 <= r["val_clip_cosine"] <= 1.0 and 0.0 <= r["val_class_accuracy"] <= 1.0
        assert r["val_class_chance"] >= 0.5  # face vs house
    assert meta["val_clip_cosine"] == vals[-1]["val_clip_cosine"]

    # the encoder stayed frozen (equal to the pretrained one); the heads are there and trained
    init, _ = load_checkpoint(init_checkpoint)
    for k, v in init.encoder.state_dict().items():
        assert torch.equal(v, model.encoder.state_dict()[k]), k

    # the UNet adapter: LoRA tensors only, and it loads into a UNet and into a diffusers pipeline
    lora = load_file(str(trained / "unet_lora" / "adapter_model.safetensors"))
    assert lora and all("lora_" in k and ".attn2." in k for k in lora)
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in lora.items())
    parts = load_diffusion_parts(tiny["sd"])
    assert load_unet_adapter(parts.unet, trained) == "lora"

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny["sd"], text_encoder=None, tokenizer=None,
                                                   feature_extractor=None, image_encoder=None, safety_checker=None,
                                                   requires_safety_checker=False)
    sample, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    embeds = model.prompt_embeds(x[:1]).detach()
    with torch.no_grad():
        base = pipe.unet(sample, t, encoder_hidden_states=embeds).sample
        pipe.load_lora_weights(trained / "unet_lora")
        adapted = pipe.unet(sample, t, encoder_hidden_states=embeds).sample
        ours = parts.unet(sample, t, encoder_hidden_states=embeds).sample
    assert not torch.allclose(base, adapted)
    torch.testing.assert_close(adapted, ours)


def test_training_the_heads_and_adapters_leaves_encoder_and_unet_base_weights(manifest, tiny, tmp_path):
    settings = ft.FinetuneSettings(model=str(tiny["sd"]), clip_model=str(tiny["clip"]), preset="tiny", max_steps=2,
                                   batch_size=4, resolution=int(RESOLUTION), eval_every=2, train_encoder=False,
                                   select_best=False)
    run = ft.Finetuner(manifest, tmp_path / "heads", settings)
    unet_before = {k: v.clone() for k, v in run.parts.unet.state_dict().items() if "lora_" not in k}
    eeg_before = {k: v.clone() for k, v in run.eeg_model.state_dict().items()}
    assert all(not p.requires_grad for n, p in run.parts.unet.named_parameters() if "lora_" not in n)
    run.train(progress=False)
    unet_after = run.parts.unet.state_dict()
    assert all(torch.equal(v, unet_after[k]) for k, v in unet_before.items())
    assert any(v.abs().max() > 0 for k, v in unet_after.items() if "lora_B" in k)  # B starts at zero
    eeg_after = run.eeg_model.state_dict()
    changed = {k for k, v in eeg_before.items() if not torch.equal(v, eeg_after[k])}
    assert changed and all(k.startswith(("conditioning.", "clip.", "channel_adapter.")) for k in changed)
    assert any(k.startswith("conditioning.") for k in changed) and any(k.startswith("clip.") for k in changed)


def test_full_cross_attention_and_encoder_training(manifest, tiny, tmp_path):
    out = tmp_path / "full"
    settings = ft.FinetuneSettings(model=str(tiny["sd"]), clip_model=str(tiny["clip"]), preset="tiny", max_steps=2,
                                   batch_size=4, resolution=int(RESOLUTION), full_cross_attention=True,
                                   train_encoder=True, val_fraction=0.0)
    run = ft.Finetuner(manifest, out, settings)
    before = {k: v.clone() for k, v in run.parts.unet.state_dict().items()}
    enc_before = {k: v.clone() for k, v in run.eeg_model.encoder.state_dict().items()}
    result = run.train(progress=False)
    assert result.val_clip_cosine is None and result.n_val == 0
    after = run.parts.unet.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".attn2." in k for k in changed)
    assert any(not torch.equal(v, run.eeg_model.encoder.state_dict()[k]) for k, v in enc_before.items())
    saved = load_file(str(out / "unet_cross_attention.safetensors"))
    assert saved and all(".attn2." in k for k in saved) and not (out / "unet_lora").exists()
    fresh = load_diffusion_parts(tiny["sd"])
    assert load_unet_adapter(fresh.unet, out) == "full-cross-attention"
    assert all(torch.equal(fresh.unet.state_dict()[k], after[k].cpu()) for k in saved)


def test_resume_after_a_non_finite_loss_continues_exactly(manifest, tiny, trained, init_checkpoint, tmp_path,
                                                          monkeypatch, capsys):
    out = tmp_path / "interrupted"
    real_clip_loss, calls = ft.clip_loss, {"n": 0}

    def nan_at_step_5(*args):
        calls["n"] += 1
        loss = real_clip_loss(*args)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(ft, "clip_loss", nan_at_step_5)
    args = finetune_args(manifest, tiny, out, "--init", str(init_checkpoint), "--max-steps", "6", "--keep-last")
    assert main(args) == 1
    line = one_error_line(capsys)
    assert "the loss became nan at step 5" in line and "(step 3) was kept" in line
    assert load_checkpoint(out)[1]["meta"]["steps"] == 3
    monkeypatch.setattr(ft, "clip_loss", real_clip_loss)

    assert main(args) == 1  # an existing checkpoint is not silently overwritten
    assert "--resume" in one_error_line(capsys)
    resume = finetune_args(manifest, tiny, out, "--max-steps", "6", "--resume", "--keep-last")
    for other in (["--epoch", "0.5"], ["--offset", "0.1"]):  # epochs cut otherwise than the run being resumed
        assert main(resume + other) == 1
        line = one_error_line(capsys)
        assert ("trained on 1 s epochs" in line and "--epoch 1" in line) if other[0] == "--epoch" else \
            ("from 0 s after each onset" in line and "--offset 0" in line), line
    assert main(resume) == 0
    assert [r["step"] for r in metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]  # step 4 of the failed run dropped
    assert load_checkpoint(out)[1]["meta"]["steps"] == 6
    # the same batches, noise, optimizer and schedule as the uninterrupted run
    for name in ("model.safetensors", "unet_lora/adapter_model.safetensors"):
        a, b = load_file(str(trained / name)), load_file(str(out / name))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_bad_manifest_gives_one_line(shared_data, tiny, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(finetune_args(tmp_path / "missing.csv", tiny, Path(out), "--max-steps", "1")) == 1
    assert "pairs manifest" in one_error_line(capsys)

    no_image = tmp_path / "no_image.csv"
    no_image.write_text("recording,onset,marker,class\nx.csv,1.0,2,face\n")
    assert main(finetune_args(no_image, tiny, Path(out), "--max-steps", "1")) == 1
    assert "lacks the column image" in one_error_line(capsys)

    broken = tmp_path / "broken.csv"
    broken.write_text(f"recording,onset,marker,image,class\n{shared_data / MUSE},149958.388,2,gone.jpg,face\n")
    assert main(finetune_args(broken, tiny, Path(out), "--max-steps", "1")) == 1
    error = one_error_line(capsys)
    assert "broken.csv line 2" in error and "gone.jpg does not exist" in error


def test_missing_or_incomplete_model_folder_gives_one_line(manifest, tiny, tmp_path, capsys):
    out = tmp_path / "out"
    args = finetune_args(manifest, tiny, out, "--max-steps", "1")
    missing = [*args, "--model", str(tmp_path / "no-such-model")]
    assert main(missing) == 1
    assert "model folder" in (line := one_error_line(capsys)) and "does not exist" in line

    incomplete = tmp_path / "incomplete"
    shutil.copytree(tiny["sd"], incomplete)
    (incomplete / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert main([*args, "--model", str(incomplete)]) == 1
    assert "lacks unet/diffusion_pytorch_model.safetensors" in one_error_line(capsys)

    assert main([*args, "--clip-model", str(tmp_path / "no-clip")]) == 1
    assert "CLIP model folder" in one_error_line(capsys)
    assert not (out / "config.json").exists()


def test_the_channel_adapter_starts_as_the_identity_and_learns(trained, init_checkpoint):
    """A per-subject channel adapter: identity at the start, absent channels stay zero, trained by finetune."""
    from bci_dream.models.eeg_model import ChannelAdapter

    adapter = ChannelAdapter(4)
    x = torch.randn(2, 4, 16)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    assert torch.allclose(adapter(x, mask), x * mask[:, :, None])
    with torch.no_grad():
        adapter.delta.fill_(0.5)
    out = adapter(x, mask)
    assert torch.all(out[0, 2] == 0) and not torch.allclose(out, x)

    model, _ = load_checkpoint(trained)  # fine-tuned from a checkpoint without one: added, trained, saved
    assert model.config.channel_adapter and model.channel_adapter is not None
    assert model.channel_adapter.delta.abs().sum() > 0
    init, _ = load_checkpoint(init_checkpoint)
    assert init.channel_adapter is None  # (old checkpoints load as before)


def test_no_channel_adapter_on_request(manifest, tiny, tmp_path):
    out = tmp_path / "plain"
    assert main(finetune_args(manifest, tiny, out, "--preset", "tiny", "--max-steps", "1",
                              "--no-channel-adapter")) == 0
    assert load_checkpoint(out)[0].channel_adapter is None


# -- objectives and alignment ---------------------------------------------------------------------

def test_the_inference_timesteps_come_from_the_scheduler_config(tiny, tmp_path):
    from bci_dream.training.objective import resolve_objective

    parts = load_diffusion_parts(tiny["sd"])
    settings = ft.FinetuneSettings(model=str(tiny["sd"]))
    assert parts.scheduler_config["timestep_spacing"] == "trailing"  # SD-Turbo's
    assert resolve_objective(settings, parts) == ("inference", [999])
    assert resolve_objective(ft.FinetuneSettings(model=str(tiny["sd"]), objective="denoise"), parts) == ("denoise", [])
    assert parts.inference_timesteps(4, "LCMScheduler") == [999, 759, 499, 259]
    # a pipeline with another schedule gets other timesteps: read, not hard-coded
    other = tmp_path / "sd"
    shutil.copytree(tiny["sd"], other)
    config_path = other / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["num_train_timesteps"] = 500
    config_path.write_text(json.dumps(config))
    assert resolve_objective(ft.FinetuneSettings(model=str(other)), load_diffusion_parts(other)) == ("inference", [499])


def test_the_clean_latent_loss_is_zero_for_a_unet_that_knows_the_noise(tiny):
    """The x0 arithmetic for each prediction type: a stand-in UNet that returns the true noise / velocity / latent
    (what a perfect UNet would) gives a clean latent equal to the image's."""
    from types import SimpleNamespace

    from bci_dream.training.objective import clean_latent_loss

    scheduler = load_diffusion_parts(tiny["sd"]).noise_scheduler
    latents = torch.randn(3, 4, 8, 8)
    for kind in ("epsilon", "v_prediction", "sample"):
        scheduler.register_to_config(prediction_type=kind)

        def oracle(noisy, t, encoder_hidden_states):
            a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
            noise = (noisy - a.sqrt() * latents) / (1 - a).sqrt()
            velocity = a.sqrt() * noise - (1 - a).sqrt() * latents
            pred = noise if kind == "epsilon" else latents if kind == "sample" else velocity
            return SimpleNamespace(sample=pred)

        loss = clean_latent_loss(oracle, scheduler, latents, torch.zeros(3, 77, 8), [999, 500],
                                 torch.Generator().manual_seed(0))
        assert float(loss) < 1e-8, kind
    scheduler.register_to_config(prediction_type="epsilon")


def test_infonce_and_the_ridge_head():
    from bci_dream.models.heads import ClipHead
    from bci_dream.training.alignment import LearnedTemperature, fit_ridge, infonce_loss, install_ridge

    rng = np.random.default_rng(0)
    images = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    target = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    scale = LearnedTemperature()().detach()
    assert float(scale) == pytest.approx(1 / 0.07)
    right = infonce_loss(images[target] * 3.0, images, target, scale)
    wrong = infonce_loss(images[(target + 1) % 6], images, target, scale)
    assert float(right) < 0.01 < 10 < float(wrong)
    # a linear truth is recovered, and the head computes ridge(mean token)
    tokens = rng.normal(size=(60, 5, 12)).astype(np.float32)
    truth = rng.normal(size=(12, 16))
    y = tokens.mean(1) @ truth
    w, b, _ = fit_ridge(tokens.mean(1), y)
    assert np.corrcoef((tokens.mean(1) @ w + b).ravel(), y.ravel())[0, 1] > 0.99
    head = ClipHead(5, 12, 16)
    install_ridge(head, w, b)
    with torch.no_grad():
        out = head(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(out, tokens.mean(1) @ w + b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("alignment", ["cosine", "infonce", "both"])
def test_heads_only_training_never_touches_the_unet(manifest, tiny, tmp_path, alignment):
    settings = ft.FinetuneSettings(model=str(tiny["sd"]), clip_model=str(tiny["clip"]), preset="tiny", max_steps=3,
                                   batch_size=8, resolution=int(RESOLUTION), eval_every=3, diffusion_weight=0.0,
                                   alignment=alignment, val_fraction=0.2)
    run = ft.Finetuner(manifest, tmp_path / alignment, settings)
    assert run.unet_mode == "none" and run.objective == "none" and run.targets.latent_mean.numel() == 0
    assert not any("lora_" in n for n, _ in run.parts.unet.named_parameters())
    step0 = run.validate()
    calls = {"n": 0}
    real_forward = run.parts.unet.forward
    run.parts.unet.forward = lambda *a, **k: calls.__setitem__("n", calls["n"] + 1) or real_forward(*a, **k)
    result = run.train(progress=False)
    assert calls["n"] == 0 and math.isfinite(result.clip_loss)
    meta = load_checkpoint(tmp_path / alignment)[1]["meta"]
    assert meta["adapter"] == "none" and meta["alignment"] == alignment and "ridge_penalty" in meta
    assert meta["encoder_trained"] is True  # (no --init: an untrained encoder is trained by default)
    assert not (tmp_path / alignment / "unet_lora").exists()
    assert -1 <= step0["val_clip_cosine"] <= 1


def test_the_inference_objective_trains_at_the_generators_timestep(manifest, tiny, tmp_path):
    settings = ft.FinetuneSettings(model=str(tiny["sd"]), clip_model=str(tiny["clip"]), preset="tiny", max_steps=2,
                                   batch_size=4, resolution=int(RESOLUTION), eval_every=2, freeze_unet=True)
    run = ft.Finetuner(manifest, tmp_path / "frozen", settings)
    seen = []
    real_forward = run.parts.unet.forward

    def spy(sample, t, *a, **k):
        seen.extend(int(x) for x in torch.as_tensor(t).reshape(-1))
        return real_forward(sample, t, *a, **k)

    run.parts.unet.forward = spy
    before = {k: v.clone() for k, v in run.parts.unet.state_dict().items()}
    run.train(progress=False)
    assert seen and set(seen) == {999}
    assert all(torch.equal(v, run.parts.unet.state_dict()[k]) for k, v in before.items())  # frozen
    meta = load_checkpoint(tmp_path / "frozen")[1]["meta"]
    assert (meta["objective"], meta["timesteps"], meta["adapter"]) == ("inference", [999], "none")


def test_the_training_is_described_beside_the_model(trained, tmp_path):
    from bci_dream.generation.session_models import describe_training
    from bci_dream.models.subject_profile import SubjectProfile

    text = describe_training(trained)
    assert text.startswith("EEG model: objective inference (t=999), alignment both, UNet lora, 6 steps on")
    assert "held-out class accuracy" in text and "(chance 0." in text
    assert "epochs 1 s from +0 s on 4 channels" in text  # its window specification
    assert describe_training(None) == "EEG model untrained"
    subject = tmp_path / "s01"
    shutil.copytree(trained, subject / "model")
    SubjectProfile(subject="s01", recordings=[], model="m", clip_model="c", checkpoint="model",
                   validation={"accuracy": 0.95, "chance": 0.25, "n_way": 4, "p_value": 1e-9}).save(subject)
    assert describe_training(subject).endswith("; held-out 4-way 0.95 (chance 0.25, p = 1e-09)")


def test_a_frozen_input_side_computes_the_encoder_once(manifest, tiny, tmp_path):
    settings = ft.FinetuneSettings(model=str(tiny["sd"]), clip_model=str(tiny["clip"]), preset="tiny", max_steps=2,
                                   batch_size=4, resolution=int(RESOLUTION), diffusion_weight=0.0,
                                   train_encoder=False, channel_adapter=False)
    run = ft.Finetuner(manifest, tmp_path / "cached", settings)
    index = torch.tensor([0, 5, 7])
    run.eeg_model.eval()
    with torch.no_grad():
        direct = run.eeg_model.embed(run.data.eeg[index], run.data.mask[index])
    torch.testing.assert_close(run._frozen_tokens(index), direct)
    calls = {"n": 0}
    real = run.eeg_model.embed
    run.eeg_model.embed = lambda *a, **k: calls.__setitem__("n", calls["n"] + 1) or real(*a, **k)
    run.train(progress=False)
    assert calls["n"] == 0  # every step took the cached tokens


def test_overlapping_epochs_are_said_with_the_overlap(tmp_path):
    from bci_dream.training.pairs import Pair, epoch_overlap

    rec, img = tmp_path / "r.xdf", tmp_path / "a.png"
    close = [Pair(rec, 10.0 + 1.25 * k, "1", img, "a") for k in range(8)]
    line = epoch_overlap(close, 2.0)
    assert line and "2 s long" in line and "1.25 s apart" in line and "0.75 s of the next trial" in line
    assert epoch_overlap([Pair(rec, 10.0 + 2.5 * k, "1", img, "a") for k in range(8)], 2.0) is None


def test_the_weights_of_the_best_validation_are_kept_and_the_choice_is_saved(manifest, tiny, tmp_path, monkeypatch):
    """Model selection on the held-out pairs: scripted validation scores (0.6 at the start, 0.9 at step 3, 0.7 at
    the end) keep step 3's weights; the checkpoint names the step and both scores; the training state keeps the
    last step's weights to go on from."""
    settings = ft.FinetuneSettings(model=str(tiny["sd"]), clip_model=str(tiny["clip"]), preset="tiny", max_steps=6,
                                   batch_size=4, resolution=int(RESOLUTION), eval_every=3, diffusion_weight=0.0)
    run = ft.Finetuner(manifest, tmp_path / "selected", settings)
    scripted = iter([0.6, 0.9, 0.7, 0.9])  # (the last: the kept weights validated again)
    real_validate = run.validate
    monkeypatch.setattr(run, "validate", lambda: {**real_validate(), "val_identification": next(scripted)})
    at_step: dict[int, dict[str, torch.Tensor]] = {}
    run.train(progress=False, on_step=lambda r: at_step.update({r["step"]: {
        k: v.detach().clone() for k, v in run.eeg_model.state_dict().items()}}))
    model, raw = load_checkpoint(tmp_path / "selected")
    selection = raw["meta"]["selection"]
    assert selection == {"metric": "val_identification", "selected_step": 3, "score": 0.9, "last_step_score": 0.7}
    assert raw["meta"]["steps"] == 6
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, at_step[3][key], msg=key)
    state = ft.load_training_state(tmp_path / "selected")
    assert state["best"]["step"] == 3
    last = {k[len("eeg."):]: v for k, v in state["last_weights"].items() if k.startswith("eeg.")}
    assert last and any(not torch.equal(v, at_step[3][k]) for k, v in last.items())  # steps 4-6 changed them


def test_pairwise_identification_counts_wins_over_every_other_image():
    from bci_dream.training.alignment import pairwise_identification

    images = torch.eye(3)
    shown = torch.tensor([0, 1])
    assert pairwise_identification(torch.eye(3)[:2], images, shown) == 1.0
    assert pairwise_identification(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), images, shown) == 0.25


def test_the_unet_adapter_is_used_only_when_it_lowers_the_held_out_loss(manifest, tiny, tmp_path):
    """The frozen-UNet-or-LoRA choice is made on held-out pairs: the diffusion loss of the validation windows with
    the adapter and without it (the same noise), saved in the checkpoint; generation skips a rejected adapter."""
    from bci_dream.generation.session_models import describe_training, unet_adapter_of
    from bci_dream.models.checkpoint import update_meta

    out = tmp_path / "choice"
    assert main(finetune_args(manifest, tiny, out, "--preset", "tiny", "--max-steps", "3", "--keep-last",
                              "--lr", "1e-2")) == 0
    meta = load_checkpoint(out)[1]["meta"]
    choice = meta["adapter_choice"]
    with_adapter, without = choice["val_diffusion_loss"], choice["val_diffusion_loss_without_adapter"]
    assert math.isfinite(with_adapter) and math.isfinite(without) and with_adapter != without  # the LoRA moved
    assert meta["adapter_used"] == (with_adapter < without)
    rows = [r for r in metrics(out) if "val_diffusion_loss" in r]
    assert rows[0]["step"] == 0 and rows[0]["val_diffusion_loss"] == rows[0]["val_diffusion_loss_without_adapter"]

    update_meta(out, adapter_used=False)  # as when the adapter did not help
    assert unet_adapter_of(out) is None and (out / "unet_lora").is_dir()
    assert "UNet lora (unused: no lower held-out loss)" in describe_training(out)
    update_meta(out, adapter_used=True)
    assert unet_adapter_of(out) == str(out)
