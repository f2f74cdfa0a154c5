"""Image banks: built from the shipped stimuli with a tiny random-weight CLIP in the real format, saved and read back,
the top-k prior and retrieval, and one-line errors for bad banks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bci_dream.generation.image_bank import (
    ImageBank,
    ImageBankError,
    apply_prior,
    bank_from,
    build_bank,
    load_bank,
)
from bci_dream.generation.tiny import build_tiny_clip_vision

STIMULI = Path(__file__).resolve().parents[1] / "calibration" / "stimuli" / "shapes-colours"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return build_tiny_clip_vision(tmp_path_factory.mktemp("clip") / "clip-tiny", projection_dim=16, seed=0)


@pytest.fixture(scope="module")
def bank(clip) -> ImageBank:
    return build_bank(STIMULI, clip)


def test_a_bank_of_the_shipped_stimuli_round_trips_through_its_file(bank, clip, tmp_path):
    assert len(bank) == 48 and bank.width == 16  # 16 classes x 3 images, recursively
    assert all(Path(p).is_file() and Path(p).is_relative_to(STIMULI) for p in bank.images)
    path = bank.save(tmp_path / "bank.safetensors")
    again = load_bank(path, clip_model=str(clip))
    assert again.images == bank.images and again.clip_model == str(clip)
    torch.testing.assert_close(again.embeddings, bank.embeddings)
    assert bank_from(path, clip).images == bank.images  # a file is read, a folder is embedded
    assert bank_from(STIMULI / "red-circle", clip).images == tuple(sorted(
        str(p) for p in (STIMULI / "red-circle").iterdir() if p.suffix == ".png"))


def test_retrieval_finds_the_image_whose_embedding_is_given(bank):
    for row in (0, 17, 47):
        result = apply_prior(bank.embeddings[row], bank, k=1)
        assert result.nearest == row and result.weights == [1.0]
        torch.testing.assert_close(result.embedding, bank.embeddings[row])


def test_the_prior_mixes_the_nearest_images_by_softmax_weights(bank):
    torch.manual_seed(0)
    predicted = bank.embeddings[5] + 0.3 * torch.randn(bank.width) * bank.embeddings[5].norm() / bank.width ** 0.5
    result = apply_prior(predicted, bank, k=3, temperature=0.1)
    cos = F.normalize(bank.embeddings, dim=-1) @ F.normalize(predicted, dim=0)
    assert result.indices == cos.topk(3).indices.tolist()
    weights = torch.softmax(cos[result.indices] / 0.1, dim=0)
    torch.testing.assert_close(torch.tensor(result.weights), weights)
    torch.testing.assert_close(result.embedding, weights @ bank.embeddings[result.indices])
    assert sum(result.weights) == pytest.approx(1.0) and result.weights == sorted(result.weights, reverse=True)
    hot = apply_prior(predicted, bank, k=3, temperature=100.0)  # a high temperature: nearly the plain mean
    assert max(hot.weights) - min(hot.weights) < 0.01


def test_bad_banks_are_one_line_that_names_the_file(bank, clip, tmp_path):
    def line(call) -> str:
        with pytest.raises(ImageBankError) as caught:
            call()
        text = str(caught.value)
        assert text.count("\n") == 0
        return text

    assert "does not exist" in line(lambda: load_bank(tmp_path / "none.safetensors"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    unreadable = line(lambda: load_bank(junk))
    assert "cannot read image bank" in unreadable and "junk.safetensors" in unreadable
    empty = ImageBank(torch.zeros(0, 16), (), str(clip)).save(tmp_path / "empty.safetensors")
    assert "is empty" in line(lambda: load_bank(empty))
    path = bank.save(tmp_path / "bank.safetensors")
    other = line(lambda: load_bank(path, clip_model="openai/clip-vit-large-patch14"))
    assert "built with the CLIP model" in other and "openai/clip-vit-large-patch14" in other
    assert "holds no images" in line(lambda: build_bank(tmp_path, clip))
    assert "does not exist" in line(lambda: build_bank(tmp_path / "nowhere", clip))
    assert "does not fit an image bank of width 16" in line(lambda: apply_prior(torch.zeros(8), bank))
    assert "k >= 1" in line(lambda: apply_prior(bank.embeddings[0], bank, k=0))
