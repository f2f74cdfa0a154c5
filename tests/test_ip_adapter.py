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
