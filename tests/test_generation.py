"""The generator, the model registry and ``bci-dream models``, with tiny random-weight models only.

Nothing is downloaded: the Hugging Face cache is an empty temporary folder, the hub counts as
unreachable (``HF_HUB_OFFLINE``), and where a test needs a "cached" SD-Turbo, SD 1.5 or LCM-LoRA it
writes tiny random-weight stand-ins into that temporary cache in the hub's own layout, so that the
production code loads them by their repo ids.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bci_dream.cli import main
from bci_dream.core.errors import BciDreamError
from bci_dream.generation import generator as gen
from bci_dream.generation import models
from bci_dream.generation.generator import EmbeddingShapeError, GenerationError, load_generator
from bci_dream.generation.tiny import build_tiny_sd_turbo, build_tiny_sdxl_turbo

SIZE = 64  # 8 x 8 latents: fast


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def offline_sandbox(tmp_path_factory, monkeypatch):
    """Every test: own bci-dream cache (XDG), an empty Hugging Face cache, and no hub."""
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("sandbox")
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(gen, "_cpu_notice_given", False)
    return root


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return build_tiny_sd_turbo(tmp_path_factory.mktemp("tiny") / "sd", seed=0)


@pytest.fixture(scope="module")
def tiny_gen(tmp_path_factory):
    """A generator for the registry's ``tiny`` model, built into a module-wide cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-shared")))
        return load_generator("tiny", size=SIZE, seed=3)


def embeds(seed: int, width: int = 1024) -> torch.Tensor:
    return torch.randn(1, 77, width, generator=torch.Generator().manual_seed(seed))


def pixels(result) -> np.ndarray:
    return np.asarray(result.image)


def fake_hub_repo(repo_id: str, source: Path, drop: tuple[str, ...] = ()) -> Path:
    """Copy ``source`` into the (temporary) Hugging Face cache as the snapshot of ``repo_id``."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns(*drop) if drop else None)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def cache_pipeline_with_taesd(repo_id: str, tiny_folder: Path) -> None:
    """``repo_id`` (unet + scheduler, no vae, like the allow_patterns download) and ``madebyollin/taesd``."""
    from huggingface_hub import constants

    fake_hub_repo(repo_id, tiny_folder, drop=("vae",))

    if not (Path(constants.HF_HUB_CACHE) / "models--madebyollin--taesd").exists():
        fake_hub_repo("madebyollin/taesd", tiny_folder / "vae")


def random_lora(unet, seed: int = 0) -> None:
    """A LoRA on the cross-attention with non-zero weights (a fresh one is the identity)."""
    from bci_dream.loading.unet_adapter import add_lora

    params = add_lora(unet, rank=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


# -- the tiny model -------------------------------------------------------------------------------

def test_tiny_builds_into_the_user_cache_and_loads_through_the_registry(offline_sandbox, caplog):
    caplog.set_level(logging.WARNING)
    g = load_generator("tiny", size=SIZE)
    folder = offline_sandbox / "xdg" / "bci-dream" / "tiny-sd-turbo"
    assert models.tiny_folder() == folder
    assert (folder / "model_index.json").is_file() and (folder / models.TINY_MARKER).is_file()
    assert models.is_cached(models.MODELS["tiny"])
    assert (g.model_id, g.is_preview, g.cross_attention_dim, g.pooled_dim) == ("tiny", True, 1024, None)
    assert (g.size, g.steps, g.guidance, g.device.type, g.dtype) == (SIZE, 1, 0.0, "cpu", torch.float32)
    assert type(g.pipe).__name__ == "StableDiffusionPipeline" and g.pipe.text_encoder is None
    assert type(g.pipe.vae).__name__ == "AutoencoderTiny"
    assert {type(p).__name__ for p in g.pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}
    # the default size on the CPU is the tiny model's own (256), and "no GPU" is said once per process
    default = load_generator("tiny", device="auto")
    load_generator("tiny", device="auto")
    assert default.size == models.MODELS["tiny"].size == 256
    notices = [r for r in caplog.records if "CPU" in r.getMessage()]
    assert len(notices) == (0 if torch.cuda.is_available() else 1)


def test_a_tiny_folder_loads_by_path_as_a_preview(tiny_folder, tmp_path):
    g = load_generator(str(tiny_folder), size=SIZE)
    assert g.model_id == str(tiny_folder) and not g.is_preview  # a folder of unknown origin
    copy = shutil.copytree(models.ensure_tiny(), tmp_path / "copy")
    assert load_generator(str(copy), size=SIZE).is_preview  # the tiny build stays labelled in a copy


def test_generate_returns_an_image_of_the_size_with_timings(tiny_gen):
    out = tiny_gen.generate(embeds(0))
    assert out.image.mode == "RGB" and out.image.size == (SIZE, SIZE)
    assert out.size == SIZE and out.seed == 3
    assert out.denoise_ms > 0 and out.decode_ms > 0


def test_same_seed_and_input_give_the_same_image(tiny_gen):
    a, b = tiny_gen.generate(embeds(0)), tiny_gen.generate(embeds(0))
    assert np.array_equal(pixels(a), pixels(b))
    other = load_generator("tiny", size=SIZE, seed=3)  # a new session with the same seed
    assert np.array_equal(pixels(other.generate(embeds(0))), pixels(a))
    assert not np.array_equal(pixels(tiny_gen.generate(embeds(1) * 4)), pixels(a))
    other.set_seed(4)
    assert not np.array_equal(pixels(other.generate(embeds(0))), pixels(a))


def assert_loop_matches_the_pipeline(g, prompt_embeds, pooled=None):
    """The generator's own denoising loop gives exactly the latents of the diffusers pipeline's __call__."""
    with torch.inference_mode():
        embeds, pooled = g._inputs(prompt_embeds, pooled)
        assert torch.equal(g._denoise(embeds, pooled), g._denoise_with_pipeline(embeds, pooled))


def test_the_denoising_loop_is_the_pipelines(tiny_gen):
    assert_loop_matches_the_pipeline(tiny_gen, embeds(0))
    assert_loop_matches_the_pipeline(tiny_gen, embeds(5) * 3)


def test_embeddings_of_the_wrong_width_name_both_widths(tiny_gen):
    with pytest.raises(EmbeddingShapeError) as info:
        tiny_gen.generate(embeds(0, width=768))
    message = str(info.value)
    assert "768" in message and "1024" in message and "\n" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, BciDreamError)
    with pytest.raises(EmbeddingShapeError):
        tiny_gen.generate(torch.zeros(2, 77, 1024))


def test_cuda_out_of_memory_halves_the_size_once(tiny_folder, monkeypatch, caplog):
    g = load_generator(str(tiny_folder), size=512)
    real_run, calls = g._run, []

    def run_out_of_memory_at_512(*args):
        calls.append(g.size)
        if g.size == 512:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(*args)

    monkeypatch.setattr(g, "_run", run_out_of_memory_at_512)
    caplog.set_level(logging.WARNING)
    out = g.generate(embeds(0))
    assert calls == [512, 256] and out.image.size == (256, 256) and g.size == 256
    assert tuple(g._latents.shape) == (1, 4, 32, 32)
    assert [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()] == \
        ["CPU ran out of memory at 512x512: generating at 256x256 from now on"]

    def always_out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(g, "_run", always_out_of_memory)
    with pytest.raises(GenerationError, match="ran out of memory generating 256x256"):
        g.generate(embeds(0))


def test_a_negative_prompt_without_guidance_is_refused(tiny_folder):
    with pytest.raises(GenerationError, match="a negative prompt needs classifier-free guidance"):
        load_generator(str(tiny_folder), size=SIZE, negative_prompt="blurry")


# -- auto, the hub cache, the registry --------------------------------------------------------------

def test_auto_without_cache_or_network_runs_tiny_and_says_so_in_one_line(caplog):
    caplog.set_level(logging.WARNING)
    g = load_generator("auto", size=SIZE)
    assert g.is_preview and g.model_id == "tiny" and "untrained preview model 'tiny'" in g.notice
    lines = [r.getMessage() for r in caplog.records if "SD-Turbo" in r.getMessage()]
    assert lines == [("SD-Turbo is not cached and cannot be downloaded (the Hugging Face hub cannot be reached "
                      "from here); running the untrained preview model 'tiny'")]


def test_auto_uses_a_cached_sd_turbo_with_taesd(tiny_folder, caplog):
    cache_pipeline_with_taesd("stabilityai/sd-turbo", tiny_folder)
    assert models.is_cached(models.MODELS["sd-turbo"])
    caplog.set_level(logging.WARNING)
    g = load_generator("auto", size=SIZE)
    assert g.model_id == "sd-turbo" and not g.is_preview
    assert not [r for r in caplog.records if "SD-Turbo" in r.getMessage()]
    assert type(g.pipe.vae).__name__ == "AutoencoderTiny"
    assert load_generator("stabilityai/sd-turbo", size=SIZE).model_id == "stabilityai/sd-turbo"
    assert g.generate(embeds(0)).image.size == (SIZE, SIZE)


def test_lcm_sd15_fuses_its_lora_and_uses_the_lcm_scheduler(tiny_folder, tmp_path):
    from diffusers import UNet2DConditionModel

    from bci_dream.loading.unet_adapter import LORA_FOLDER, save_unet_adapter

    unet = UNet2DConditionModel.from_pretrained(tiny_folder, subfolder="unet")
    base_q = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_q.weight.detach().clone()
    random_lora(unet)
    save_unet_adapter(unet, tmp_path, full_cross_attention=False)
    spec = models.MODELS["lcm-sd15"]
    cache_pipeline_with_taesd(spec.repo_id, tiny_folder)
    fake_hub_repo(spec.lora_repo_id, tmp_path / LORA_FOLDER)
    assert models.is_cached(spec)
    g = load_generator("lcm-sd15", size=SIZE)
    assert type(g.pipe.scheduler).__name__ == "LCMScheduler" and (g.steps, g.guidance) == (4, 1.0)
    fused_q = g.pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_q.weight
    assert not torch.allclose(fused_q, base_q)
    assert not any("lora" in name for name, _ in g.pipe.unet.named_parameters())  # fused, layers removed
    a, b = g.generate(embeds(0)), g.generate(embeds(0))
    assert np.array_equal(pixels(a), pixels(b))  # LCM draws noise between steps: re-seeded every frame
    assert_loop_matches_the_pipeline(g, embeds(0))


def test_a_fine_tuned_adapter_is_applied_and_fused(tiny_folder, tmp_path):
    from diffusers import UNet2DConditionModel

    from bci_dream.loading.unet_adapter import load_unet_adapter, save_unet_adapter

    unet = UNet2DConditionModel.from_pretrained(tiny_folder, subfolder="unet")
    random_lora(unet, seed=1)
    save_unet_adapter(unet, tmp_path, full_cross_attention=False)
    plain = load_generator(str(tiny_folder), size=SIZE)
    tuned = load_generator(str(tiny_folder), size=SIZE, adapter=tmp_path)
    assert not any("lora" in name for name, _ in tuned.pipe.unet.named_parameters())
    # the fused UNet computes what the UNet with the adapter computes
    reference = UNet2DConditionModel.from_pretrained(tiny_folder, subfolder="unet")
    load_unet_adapter(reference, tmp_path)
    x, t, e = torch.randn(1, 4, 8, 8), torch.tensor(999), embeds(2)
    with torch.no_grad():
        want = reference(x, t, encoder_hidden_states=e).sample
        got = tuned.pipe.unet(x.contiguous(memory_format=torch.channels_last), t, encoder_hidden_states=e).sample
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(plain.pipe.unet(x, t, encoder_hidden_states=e).sample.detach(), want)


def test_sdxl_type_pipelines_take_pooled_embeddings(tmp_path):
    build_tiny_sdxl_turbo(tmp_path / "sdxl")
    g = load_generator(str(tmp_path / "sdxl"), size=SIZE)
    assert (g.kind, g.cross_attention_dim, g.pooled_dim) == ("sdxl", 64, 32)
    zeros_default = g.generate(embeds(0, 64))
    given = g.generate(embeds(0, 64), torch.zeros(1, 32))
    assert np.array_equal(pixels(zeros_default), pixels(given)) and given.image.size == (SIZE, SIZE)
    assert not np.array_equal(pixels(g.generate(embeds(0, 64), torch.ones(1, 32) * 3)), pixels(given))
    assert_loop_matches_the_pipeline(g, embeds(0, 64), torch.ones(1, 32) * 3)
    with pytest.raises(EmbeddingShapeError, match=r"expected \[1, 32\]"):
        g.generate(embeds(0, 64), torch.zeros(1, 1280))


# -- every registry entry -------------------------------------------------------------------------

def cache_registry_model(spec: models.ModelSpec, folder: Path) -> None:
    """What downloading ``spec`` puts into the Hugging Face cache, made from a tiny pipeline of its kind."""
    from diffusers import UNet2DConditionModel

    from bci_dream.loading.unet_adapter import LORA_FOLDER, save_unet_adapter

    text = models.needs_text_encoders(spec)  # (downloaded with the model: it encodes the empty prompt every session)
    tiny = (build_tiny_sdxl_turbo if spec.kind == "sdxl" else build_tiny_sd_turbo)(folder / "pipeline", text=text)
    fake_hub_repo(spec.repo_id, tiny, drop=("vae",) if spec.vae_repo_id else ())
    if spec.vae_repo_id:
        fake_hub_repo(spec.vae_repo_id, tiny / "vae")
    if spec.lora_repo_id:
        unet = UNet2DConditionModel.from_pretrained(tiny, subfolder="unet")
        random_lora(unet)
        save_unet_adapter(unet, folder / "lora", full_cross_attention=False)
        fake_hub_repo(spec.lora_repo_id, folder / "lora" / LORA_FOLDER)
    if spec.ip_adapter_repo_id:  # h94/IP-Adapter's layout: the adapter file in its subfolder
        from bci_dream.generation.tiny import build_tiny_ip_adapter

        made = build_tiny_ip_adapter(tiny, folder / "ip" / Path(spec.ip_adapter_file).parent, image_embed_dim=16)
        made.rename(made.with_name(Path(spec.ip_adapter_file).name))
        fake_hub_repo(spec.ip_adapter_repo_id, folder / "ip")


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_registry_model_is_refused_in_one_line_until_cached_then_generates_with_its_settings(name, tmp_path):
    """Each entry of the model registry: offline and not cached, one line saying how to get it; in the cache
    (as 'bci-dream models download' leaves it, built from a tiny pipeline of its kind), it loads with its own
    steps, guidance, scheduler and decoder and makes an image."""
    spec = models.MODELS[name]
    assert spec.name == name and spec.kind in ("sd", "sdxl") and spec.size % 8 == 0 and spec.steps >= 1
    assert spec.guidance <= 1.0 and spec.description
    if spec.repo_id is None:
        assert spec.is_preview  # only the locally built preview model has no hub repo
    else:
        patterns = " ".join(models._pipeline_patterns(spec))
        assert not spec.is_preview and ("text_encoder" in patterns) == models.needs_text_encoders(spec)
        with pytest.raises(BciDreamError) as refused:
            load_generator(name)
        assert f"bci-dream models download {name}" in str(refused.value) and "\n" not in str(refused.value)
        cache_registry_model(spec, tmp_path)
        assert models.is_cached(spec)
    g = load_generator(name, size=SIZE)
    assert (g.model_id, g.kind, g.steps, g.guidance, g.is_preview) == (name, spec.kind, spec.steps, spec.guidance,
                                                                       spec.is_preview)
    if spec.scheduler:
        assert type(g.pipe.scheduler).__name__ == spec.scheduler
    if spec.vae_repo_id:
        assert type(g.pipe.vae).__name__ == "AutoencoderTiny"
    if g.kind == "sdxl":  # the pooled embedding (and the IP-Adapter route's text side) of the empty prompt
        assert g.text is not None and g.text.prompt == "" and g.text.pooled.abs().sum() > 0
    if spec.route == "ip-adapter":  # its IP-Adapter loaded with it: images come from CLIP image embeddings
        assert g.image_embed_dim is not None
        assert g.generate_from_image_embeds(torch.ones(g.image_embed_dim)).image.size == (SIZE, SIZE)
    else:
        assert g.generate(embeds(0, g.cross_attention_dim)).image.size == (SIZE, SIZE)


# -- bad folders and names ------------------------------------------------------------------------

def test_a_folder_with_missing_files_is_named_in_one_line(tiny_folder, tmp_path):
    broken = shutil.copytree(tiny_folder, tmp_path / "broken")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (broken / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(BciDreamError) as info:
        load_generator(str(broken), size=SIZE)
    message = str(info.value)
    assert "unet/diffusion_pytorch_model.safetensors" in message and "scheduler/scheduler_config.json" in message
    assert str(broken) in message and "\n" not in message
    with pytest.raises(BciDreamError, match="does not exist"):
        load_generator(str(tmp_path / "nowhere"))


def test_unknown_names_and_uncached_models_fail_in_one_line():
    with pytest.raises(BciDreamError, match="unknown model 'sd_turbo'; use one of auto, sd-turbo"):
        load_generator("sd_turbo")
    with pytest.raises(BciDreamError) as info:
        load_generator("sdxl-turbo")
    assert "cannot be reached" in str(info.value) and "bci-dream models download sdxl-turbo" in str(info.value)
    assert "\n" not in str(info.value)


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(GenerationError, match="fp16 needs a CUDA GPU"):
        load_generator("tiny", device="cpu", dtype="fp16")


# -- the command ----------------------------------------------------------------------------------

def test_models_list_shows_the_registry_and_the_cache(tiny_folder, capsys):
    cache_pipeline_with_taesd("stabilityai/sd-turbo", tiny_folder)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line and not line.startswith("*")}
    assert set(rows) == {"sd-turbo", "sdxl-turbo", "lcm-sd15", "tiny", "sdxl-turbo-ip", "lcm-sd15-ip", "tiny-sdxl-ip"}
    assert "h94/IP-Adapter" in rows["sdxl-turbo-ip"]
    assert "stabilityai/sd-turbo + madebyollin/taesd" in rows["sd-turbo"] and " yes " in rows["sd-turbo"]
    assert " no " in rows["sdxl-turbo"] and "latent-consistency/lcm-lora-sdv1-5" in rows["lcm-sd15"]
    assert "untrained preview" in rows["tiny"]


def test_models_download_fails_in_one_line_without_downloading(capsys):
    assert main(["models", "download", "no-such-model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bci-dream: error: unknown model 'no-such-model'") and "\n" not in err
    assert main(["models", "download", "sd-turbo"]) == 1  # offline here: says so, downloads nothing
    err = capsys.readouterr().err.strip()
    assert "cannot be reached" in err and "\n" not in err


def test_models_download_tiny_builds_it(offline_sandbox, capsys):
    assert main(["models", "download", "tiny"]) == 0
    assert "tiny: ready in" in capsys.readouterr().out
    assert models.is_cached(models.MODELS["tiny"])
