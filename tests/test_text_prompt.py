"""The text side of generation: a prompt (or the empty prompt) encoded once by the pipeline's own text encoders and
cached on disk, for the IP-Adapter route's prompt embeddings and SDXL's pooled embedding; and the IP-Adapter models'
image encoders for training. Tiny random-weight CLIP text models and byte-level tokenizers, saved in the diffusers
layout, are loaded through the real calls; nothing is downloaded (the hub counts as unreachable)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bci_dream.core.errors import BciDreamError
from bci_dream.generation import text_prompt
from bci_dream.generation.generator import load_generator
from bci_dream.generation.tiny import build_tiny_ip_adapter, build_tiny_sd_turbo, build_tiny_sdxl_turbo

SIZE = 64
WIDTH = 24  # the tiny adapter's CLIP image-embedding width


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """Every test: its own bci-dream cache (prompt encodings, preview builds), an empty hub cache, no hub."""
    from huggingface_hub import constants

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text")
    sdxl = build_tiny_sdxl_turbo(root / "sdxl", text=True)
    return {"sdxl": sdxl, "sdxl-ip": build_tiny_ip_adapter(sdxl, root / "sdxl-ip", image_embed_dim=WIDTH, seed=1),
            "sd": build_tiny_sd_turbo(root / "sd", text=True), "bare": build_tiny_sdxl_turbo(root / "bare")}


def clip_embedding(seed: int) -> torch.Tensor:
    return torch.randn(WIDTH, generator=torch.Generator().manual_seed(seed)) * 3


def pixels(out) -> np.ndarray:
    return np.asarray(out.image)


def test_a_prompt_is_encoded_as_the_pipeline_itself_encodes_it(folders):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    for kind, cls in (("sdxl", StableDiffusionXLPipeline), ("sd", StableDiffusionPipeline)):
        g = load_generator(str(folders[kind]), size=SIZE, device="cpu", prompt="a red cat")
        full = cls.from_pretrained(folders[kind], safety_checker=None, requires_safety_checker=False)
        with torch.inference_mode():
            reference = full.encode_prompt("a red cat", device="cpu", num_images_per_prompt=1,
                                           do_classifier_free_guidance=False)
        assert g.text.prompt == "a red cat" and torch.allclose(g.text.prompt_embeds, reference[0])
        if kind == "sdxl":
            assert torch.allclose(g.text.pooled, reference[2])
        assert g.pipe.text_encoder is None  # (the resident pipeline keeps no text encoder)


def test_the_prompt_goes_beside_the_image_embedding_and_the_same_prompt_gives_the_same_image(folders, monkeypatch):
    def load(prompt=None):
        return load_generator(str(folders["sdxl"]), size=SIZE, seed=3, device="cpu", ip_adapter=folders["sdxl-ip"],
                              prompt=prompt)

    empty, cat = load(), load("a red cat")
    assert empty.text.label == "empty prompt" and cat.text.label == "prompt 'a red cat'"
    a = empty.generate_from_image_embeds(clip_embedding(0))
    b = cat.generate_from_image_embeds(clip_embedding(0))
    assert not np.array_equal(pixels(a), pixels(b))
    # From the cache the second time: no text encoder is loaded at all.
    monkeypatch.setattr(text_prompt, "load_text_parts", lambda *a, **k: pytest.fail("text encoders loaded again"))
    again = load("a red cat")
    assert torch.equal(again.text.prompt_embeds, cat.text.prompt_embeds)
    assert np.array_equal(pixels(again.generate_from_image_embeds(clip_embedding(0))), pixels(b))


def test_sdxl_takes_its_pooled_embedding_from_the_empty_prompt_not_zeros(folders):
    g = load_generator(str(folders["sdxl"]), size=SIZE, seed=3, device="cpu")
    assert g.text is not None and g.text.prompt == "" and float(g.text.pooled.abs().sum()) > 0
    tokens = torch.randn(1, 77, g.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    default = g.generate(tokens)
    assert np.array_equal(pixels(default), pixels(g.generate(tokens, g.text.pooled)))
    assert not np.array_equal(pixels(default), pixels(g.generate(tokens, torch.zeros(1, g.pooled_dim))))
    text, kept = g.text, g.text.prompt_embeds.clone()
    g.set_text(None)  # (back to zeros; the encoding itself, cached and shared, is left as it was)
    assert torch.equal(text.prompt_embeds, kept) and float(g._no_prompt.abs().sum()) == 0


def test_a_model_without_text_encoders_is_one_line_for_a_prompt_and_zeros_without(folders, caplog, sandbox):
    with pytest.raises(BciDreamError) as info:
        load_generator(str(folders["bare"]), size=SIZE, device="cpu", prompt="a red cat")
    said = str(info.value)
    assert "\n" not in said and "text_encoder/config.json" in said and str(folders["bare"]) in said
    with caplog.at_level(logging.WARNING):
        g = load_generator(str(folders["bare"]), size=SIZE, device="cpu", ip_adapter=folders["sdxl-ip"])
    assert g.text is None and "has no text encoders" in caplog.text
    assert g.generate_from_image_embeds(clip_embedding(0)).image.size == (SIZE, SIZE)
    broken = shutil.copytree(folders["sdxl"], sandbox / "broken")
    (broken / "tokenizer_2" / "tokenizer.json").write_text("{not json")
    (broken / "tokenizer_2" / "tokenizer_config.json").unlink()
    with pytest.raises(BciDreamError) as unreadable:
        load_generator(str(broken), size=SIZE, device="cpu", prompt="a red cat")
    assert "\n" not in str(unreadable.value) and "text encoders" in str(unreadable.value)


def test_a_hub_model_without_its_text_encoders_cached_says_so_offline(folders, sandbox):
    from bci_dream.generation.models import MODELS, ModelNotAvailableError, ResolvedModel, text_encoder_folder

    snapshot = shutil.copytree(folders["sd"], sandbox / "snapshot", ignore=shutil.ignore_patterns("text_encoder*",
                                                                                                  "tokenizer*"))
    with pytest.raises(ModelNotAvailableError) as info:
        text_encoder_folder(ResolvedModel(MODELS["sd-turbo"], snapshot, model_id="sd-turbo"))
    assert "cannot be reached" in str(info.value) and "bci-dream models download sd-turbo" in str(info.value)


def test_the_command_line_prompt_reaches_the_ip_adapter_route(tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli", "run", "--device", "synthetic", "--seconds", "2",
                           "--headless", "--out", str(out), "--model", "tiny-sdxl-ip", "--prompt", "a red cat",
                           "--similarity", "1.1", "--gpu", "cpu"], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "route ip-adapter · prompt 'a red cat'" in proc.stdout and "Traceback" not in proc.stderr
    assert "should be kept in float32" not in proc.stderr + proc.stdout  # (no library notes reach the user)
    assert any(not json.loads(r)["skipped"] for r in (out / "frames.jsonl").read_text().splitlines())


# -- the image encoder an IP-Adapter model's EEG head is trained against -----------------------------------------

def test_an_image_encoder_in_a_hub_subfolder_without_a_preprocessor_config_loads(sandbox):
    from huggingface_hub import constants

    from bci_dream.generation.tiny import build_tiny_clip_vision
    from bci_dream.loading.hub import hub_subfolder
    from bci_dream.loading.vision_models import load_clip_vision

    assert hub_subfolder("h94/IP-Adapter/models/image_encoder") == ("h94/IP-Adapter", "models/image_encoder")
    assert hub_subfolder("openai/clip-vit-large-patch14") is None
    assert hub_subfolder(str(sandbox / "a" / "b")) is None  # a path is a path
    # h94/IP-Adapter as the hub's cache holds it: the encoder in models/image_encoder, no preprocessor_config.json
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(constants.HF_HUB_CACHE) / "models--h94--IP-Adapter"
    encoder = build_tiny_clip_vision(repo / "snapshots" / commit / "models" / "image_encoder", projection_dim=WIDTH)
    (encoder / "preprocessor_config.json").unlink()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    model, processor = load_clip_vision("h94/IP-Adapter/models/image_encoder")
    assert int(model.config.projection_dim) == WIDTH
    assert processor.crop_size == {"height": 224, "width": 224}  # CLIP's standard preprocessing, as diffusers does


def test_finetuning_for_an_ip_adapter_model_takes_its_adapter_and_image_encoder(tmp_path, shared_data):
    from bci_dream.cli import main
    from bci_dream.generation.models import MODELS, image_encoder_of, resolve_model
    from bci_dream.models.checkpoint import read_config

    manifest = tmp_path / "pairs.csv"
    stim = shared_data / "muse-lsl/stim_face_house"
    assert main(["make-pairs", str(shared_data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv"), "--class",
                 f"2={stim / 'faces'}", "--class", f"1={stim / 'houses'}", "--round-robin", "-o", str(manifest)]) == 0
    out = tmp_path / "ip-model"
    assert main(["finetune", "--pairs", str(manifest), "--model", "tiny-sdxl-ip", "--route", "ip-adapter", "--preset",
                 "tiny", "--resolution", "64", "--batch-size", "4", "--max-steps", "2", "--no-progress", "--gpu", "cpu",
                 "-o", str(out)]) == 0
    meta = read_config(out)["meta"]
    resolved = resolve_model("tiny-sdxl-ip")
    assert MODELS["tiny-sdxl-ip"].image_encoder and meta["clip_model"] == image_encoder_of(resolved)
    assert meta["ip_adapter"] == str(resolved.ip_adapter.resolve()) and meta["route"] == "ip-adapter"
    assert read_config(out)["clip_projection_dim"] == 32  # the preview adapter's width, not CLIP-L's 768
