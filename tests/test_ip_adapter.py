"""The CLIP-image-embedding route: a tiny random-weight IP-Adapter in h94/IP-Adapter's file layout, loaded into tiny
SD-Turbo- and SDXL-Turbo-shaped pipelines through diffusers' ``load_ip_adapter`` by the real generator code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bci_dream.generation.generator import EmbeddingShapeError, load_generator
from bci_dream.generation.tiny import build_tiny_ip_adapter, build_tiny_sd_turbo, build_tiny_sdxl_turbo
from bci_dream.loading.hub import ModelLoadError
from bci_dream.loading.ip_adapter import ip_adapter_file

SIZE = 64
WIDTH = 24  # the tiny adapter's CLIP image-embedding width


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ip")
    sd, sdxl = build_tiny_sd_turbo(root / "sd"), build_tiny_sdxl_turbo(root / "sdxl")
    return {"sd": sd, "sdxl": sdxl,
            "sd-ip": build_tiny_ip_adapter(sd, root / "sd-ip", image_embed_dim=WIDTH, seed=1),
            "sdxl-ip": build_tiny_ip_adapter(sdxl, root / "sdxl-ip", image_embed_dim=WIDTH, seed=2)}


def clip_embedding(seed: int) -> torch.Tensor:
    return torch.randn(WIDTH, generator=torch.Generator().manual_seed(seed)) * 3


def pixels(out) -> np.ndarray:
    return np.asarray(out.image)


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_an_image_embedding_makes_the_image_through_the_adapter(folders, kind):
    g = load_generator(str(folders[kind]), size=SIZE, seed=3, device="cpu", ip_adapter=folders[f"{kind}-ip"])
    assert g.image_embed_dim == WIDTH
    a, b = g.generate_from_image_embeds(clip_embedding(0)), g.generate_from_image_embeds(clip_embedding(0)[None])
    assert a.image.size == (SIZE, SIZE) and np.array_equal(pixels(a), pixels(b))  # the same seed, the same image
    assert not np.array_equal(pixels(g.generate_from_image_embeds(clip_embedding(1))), pixels(a))
    with torch.inference_mode():  # the generator's own loop is the pipeline's, image embedding included
        embeds, pooled = g._inputs(g._no_prompt, None)
        image = g._image_input(clip_embedding(4))
        assert torch.equal(g._denoise(embeds, pooled, image), g._denoise_with_pipeline(embeds, pooled, image))


def test_the_adapter_scale_sets_how_much_the_image_embedding_counts(folders):
    none = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu", ip_adapter=folders["sd-ip"],
                          ip_adapter_scale=0.0)
    assert np.array_equal(pixels(none.generate_from_image_embeds(clip_embedding(0))),
                          pixels(none.generate_from_image_embeds(clip_embedding(1))))


def test_wrong_widths_and_missing_adapters_are_one_line(folders, tmp_path):
    g = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu", ip_adapter=folders["sd-ip"])
    with pytest.raises(EmbeddingShapeError) as info:
        g.generate_from_image_embeds(torch.zeros(768))
    assert "[768]" in str(info.value) and f"takes width {WIDTH}" in str(info.value)
    plain = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu")
    assert plain.image_embed_dim is None
    with pytest.raises(EmbeddingShapeError, match="no IP-Adapter loaded"):
        plain.generate_from_image_embeds(clip_embedding(0))
    with pytest.raises(ModelLoadError, match="does not exist"):
        ip_adapter_file(tmp_path / "none.safetensors")
    assert ip_adapter_file(folders["sd-ip"].parent) == folders["sd-ip"]  # its folder names it too
    with pytest.raises(ModelLoadError) as mismatch:  # an SDXL adapter does not fit an SD UNet
        load_generator(str(folders["sd"]), size=SIZE, device="cpu", ip_adapter=folders["sdxl-ip"])
    assert str(mismatch.value).count("\n") == 0 and "cannot load the IP-Adapter" in str(mismatch.value)


# -- the route through the engine ------------------------------------------------------------------

def _clip_model(width: int = WIDTH):
    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset

    torch.manual_seed(0)
    return EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=None, clip_projection_dim=width))


def _window(seed: int = 0):
    from test_engine import _window as engine_window  # (the engine tests' random 16-channel window)

    return engine_window(seed)


@pytest.fixture()
def live(tiny_xdf_live):
    return tiny_xdf_live


@pytest.fixture(scope="module")
def bank():
    from bci_dream.generation.image_bank import ImageBank

    stimuli = Path(__file__).resolve().parents[1] / "calibration" / "stimuli" / "shapes-colours"
    images = sorted(str(p) for p in stimuli.rglob("*.png"))[:6]
    return ImageBank(torch.randn(len(images), WIDTH, generator=torch.Generator().manual_seed(5)) * 3,
                     tuple(images), "tiny-clip")


def test_the_ip_adapter_route_through_the_engine_records_its_route_and_bank(folders, live, bank, tmp_path):
    from bci_dream.runtime.engine import Engine
    from bci_dream.runtime.frame_writer import FrameWriter
    from bci_dream.runtime.routes import IP_ADAPTER, RouteSettings

    g = load_generator(str(folders["sdxl"]), size=SIZE, seed=3, device="cpu", ip_adapter=folders["sdxl-ip"])
    engine = Engine(live, _clip_model(), g, untrained_conditioning=True, interpolation_steps=1,
                    route=RouteSettings(IP_ADAPTER, bank=bank, k=3, temperature=0.1))
    writer = FrameWriter(tmp_path / "out")
    engine.add_listener(writer)
    first = engine.process(_window(0))
    again = Engine(live, _clip_model(), g, untrained_conditioning=True,
                   route=RouteSettings(IP_ADAPTER, bank=bank, k=3, temperature=0.1)).process(_window(0))
    assert np.array_equal(pixels(first[0]), pixels(again[0]))  # the same window and seed, the same image
    frames = engine.process(_window(1))
    assert [f.record.interpolated for f in frames] == [True, False]  # on the sphere between the two embeddings
    writer.close()
    import json

    records = [json.loads(line) for line in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert records and all(r["route"] == "ip-adapter" and len(r["bank_images"]) == 3 for r in records)
    assert all(name in bank.images for r in records for name in r["bank_images"])


def test_retrieval_shows_the_nearest_bank_image_itself(folders, live, bank):
    from bci_dream.runtime.engine import Engine
    from bci_dream.runtime.routes import RETRIEVAL, RouteError, RouteSettings

    g = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu")
    model = _clip_model()
    engine = Engine(live, model, g, untrained_conditioning=True, route=RouteSettings(RETRIEVAL, bank=bank))
    frame = engine.process(_window(2))[0]
    shown = frame.record.bank_images
    assert len(shown) == 1 and frame.record.route == "retrieval" and frame.record.denoise_ms == 0
    assert frame.record.labels == ["untrained conditioning", "retrieved from the image bank, not generated"]
    assert frame.image.size == (SIZE, SIZE)
    from PIL import ImageOps

    from bci_dream.io.image_file import read_image

    assert np.array_equal(np.asarray(frame.image), np.asarray(ImageOps.fit(read_image(shown[0]), (SIZE, SIZE))))
    with pytest.raises(RouteError, match="needs an image bank"):
        Engine(live, model, g, route=RouteSettings(RETRIEVAL))


def test_routes_that_do_not_fit_are_refused_in_one_line(folders, live, bank):
    from bci_dream.runtime.engine import Engine
    from bci_dream.runtime.routes import IP_ADAPTER, RouteError, RouteSettings, slerp

    with_adapter = load_generator(str(folders["sd"]), size=SIZE, device="cpu", ip_adapter=folders["sd-ip"])
    plain = load_generator(str(folders["sd"]), size=SIZE, device="cpu")
    cases = [(_clip_model(16), with_adapter, "width 16, but the IP-Adapter of"),
             (_clip_model(), plain, "needs a generator with an IP-Adapter")]
    for model, g, said in cases:
        with pytest.raises(RouteError) as info:
            Engine(live, model, g, route=RouteSettings(IP_ADAPTER))
        assert said in str(info.value) and str(info.value).count("\n") == 0
    narrow = type(bank)(bank.embeddings[:, :8], bank.images, bank.clip_model)
    with pytest.raises(RouteError, match="width 8, but the EEG model's CLIP head predicts width 24"):
        Engine(live, _clip_model(), with_adapter, route=RouteSettings(IP_ADAPTER, bank=narrow))
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = slerp(a, b, 0.5)
    assert float(mid.norm()) == pytest.approx(2.0) and float(mid[0]) == pytest.approx(float(mid[1]))


# -- the command line ------------------------------------------------------------------------------

def _cli(*args: str, cache: Path, timeout: int = 180):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "bci_dream.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "XDG_CACHE_HOME": str(cache)})


@pytest.fixture(scope="module")
def clip24(tmp_path_factory) -> Path:
    from bci_dream.generation.tiny import build_tiny_clip_vision

    return build_tiny_clip_vision(tmp_path_factory.mktemp("clip24") / "clip", projection_dim=WIDTH, seed=0)


def test_bank_then_headless_runs_on_the_ip_adapter_and_retrieval_routes(folders, clip24, tmp_path):
    import json

    stimuli = Path(__file__).resolve().parents[1] / "calibration" / "stimuli" / "shapes-colours"
    bank = tmp_path / "bank.safetensors"
    made = _cli("bank", str(stimuli), "-o", str(bank), "--clip-model", str(clip24), "--gpu", "cpu", cache=tmp_path)
    assert made.returncode == 0, made.stderr
    assert f"48 images from {stimuli}, width {WIDTH}" in made.stdout
    for route, extra in (("ip-adapter", ["--ip-adapter", str(folders["sdxl-ip"])]), ("retrieval", [])):
        out = tmp_path / route
        proc = _cli("run", "--device", "synthetic", "--seconds", "3", "--headless", "--out", str(out), "--model",
                    str(folders["sdxl"]), "--route", route, "--bank", str(bank), "--bank-k", "2", "--similarity",
                    "1.1", "--size", str(SIZE), "--gpu", "cpu", *extra, cache=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert f"route {route}, bank of 48 images" in proc.stdout and "Traceback" not in proc.stderr
        records = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
        shown = [r for r in records if not r["skipped"]]
        assert shown and all(r["route"] == route for r in records)
        assert all(len(r["bank_images"]) == (2 if route == "ip-adapter" else 1) for r in shown)
        assert all((out / f"{r['index']:06d}.png").is_file() for r in shown)
    wrong = _cli("run", "--device", "synthetic", "--seconds", "1", "--headless", "--out", str(tmp_path / "x"),
                 "--model", str(folders["sd"]), "--route", "ip-adapter", "--gpu", "cpu", cache=tmp_path)
    assert wrong.returncode == 1 and wrong.stderr.count("error:") == 1 and "needs an IP-Adapter" in wrong.stderr


def test_finetuning_for_the_ip_adapter_route_and_a_checkpoint_given_to_the_other_route(folders, clip24, tmp_path,
                                                                                       shared_data):
    from bci_dream.cli import main
    from bci_dream.core.errors import CheckpointError
    from bci_dream.generation.session_models import RouteChoice, load_generation_models
    from bci_dream.models.checkpoint import read_config

    manifest = tmp_path / "pairs.csv"
    stim = shared_data / "muse-lsl/stim_face_house"
    assert main(["make-pairs", str(shared_data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv"), "--class",
                 f"2={stim / 'faces'}", "--class", f"1={stim / 'houses'}", "--round-robin", "-o", str(manifest)]) == 0
    out = tmp_path / "ip-model"
    common = ["finetune", "--pairs", str(manifest), "--model", str(folders["sd"]), "--preset", "tiny",
              "--resolution", "64", "--batch-size", "4", "--max-steps", "2", "--no-progress", "--gpu", "cpu",
              "--route", "ip-adapter", "--ip-adapter", str(folders["sd-ip"])]
    from bci_dream.generation.tiny import build_tiny_clip_vision
    from bci_dream.training.finetune import check_adapter_width
    from bci_dream.training.settings import FinetuneError

    assert main([*common, "-o", str(tmp_path / "bad"), "--clip-model", str(folders["sd"].parent / "none")]) == 1
    narrow = build_tiny_clip_vision(tmp_path / "clip16", projection_dim=16)
    assert main([*common, "-o", str(tmp_path / "narrow"), "--clip-model", str(narrow)]) == 1
    with pytest.raises(FinetuneError) as refused:  # (what that one line says)
        check_adapter_width(folders["sd-ip"], 16, str(narrow))
    assert f"width {WIDTH}, but" in str(refused.value) and "width 16" in str(refused.value)
    assert main([*common, "-o", str(out), "--clip-model", str(clip24)]) == 0
    meta = read_config(out)["meta"]
    assert meta["route"] == "ip-adapter" and meta["adapter"] == "none" and meta["ip_adapter"].endswith(
        "ip-adapter.safetensors")
    models = load_generation_models(str(folders["sd"]), out, device="cpu", size=SIZE)  # route and adapter from it
    assert models.route == "ip-adapter" and models.generator.image_embed_dim == WIDTH
    assert models.encoder.output == "clip_embeds"
    with pytest.raises(CheckpointError, match="trained for the ip-adapter route, not for dreamdiffusion"):
        load_generation_models(str(folders["sd"]), out, device="cpu", size=SIZE,
                               choice=RouteChoice(route="dreamdiffusion"))


def test_a_subject_calibrated_for_the_ip_adapter_route_generates_through_it(folders, clip24, tmp_path, shared_data):
    from bci_dream.cli import main
    from bci_dream.generation.session_models import load_generation_models

    stim = shared_data / "muse-lsl/stim_face_house"
    folder = tmp_path / "s01"
    assert main(["calibrate", "--headless", "--subject", "s01", "--recording",
                 str(shared_data / "muse-lsl/N170/data_2017-09-13-15.30.01.csv"), "--class", f"2={stim / 'faces'}",
                 "--class", f"1={stim / 'houses'}", "--round-robin", "--model", str(folders["sd"]), "--clip-model",
                 str(clip24), "--route", "ip-adapter", "--ip-adapter", str(folders["sd-ip"]), "--preset", "tiny",
                 "--resolution", "64", "--batch-size", "4", "--max-steps", "2", "--gpu", "cpu", "--subjects-dir",
                 str(tmp_path), "--no-progress", "--figure-rows", "2"]) == 0
    assert (folder / "validation.png").is_file()  # drawn through the IP-Adapter
    models = load_generation_models(str(folders["sd"]), folder, device="cpu", size=SIZE)
    assert models.route == "ip-adapter" and models.encoder.output == "clip_embeds"
    assert "for the ip-adapter route" in models.training and "UNet" not in models.training


def test_the_tiny_sdxl_ip_preview_runs_the_route_anywhere(tmp_path):
    """'bci-dream run --device synthetic --headless --model tiny-sdxl-ip': built locally on first use (random
    weights, labelled), on the IP-Adapter route without any other option."""
    import json

    out = tmp_path / "out"
    proc = _cli("run", "--device", "synthetic", "--seconds", "3", "--headless", "--out", str(out), "--model",
                "tiny-sdxl-ip", "--similarity", "1.1", "--gpu", "cpu", cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "model tiny-sdxl-ip · route ip-adapter" in proc.stdout
    records = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    made = [r for r in records if not r["skipped"]]
    assert made and all(r["route"] == "ip-adapter" and r["model"] == "tiny-sdxl-ip" for r in records)
    assert all(r["labels"] == ["untrained preview model", "untrained conditioning"] for r in made)
    listed = _cli("models", "list", cache=tmp_path / "cache")
    assert listed.returncode == 0 and "tiny-sdxl-ip" in listed.stdout and "sdxl-turbo-ip" in listed.stdout
