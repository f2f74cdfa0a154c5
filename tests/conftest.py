"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Qt tests run without a display

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real recordings (``$BCI_DREAM_DATA``, default ``<repo root>/../shared/data``); skips if absent."""
    path = Path(os.environ.get("BCI_DREAM_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        message = f"shared test data not found at {path} (set BCI_DREAM_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must test against the real recordings, never skip them
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def calibration_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight models for calibration tests, saved in the real formats: ``sd`` (an SD-Turbo-shaped
    diffusers pipeline), ``clip`` (a CLIP vision model) and ``init`` (a pretraining-style tiny EEG checkpoint)."""
    import torch

    from bci_dream.generation.tiny import build_tiny_clip_vision, build_tiny_sd_turbo
    from bci_dream.models.checkpoint import save_checkpoint
    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset

    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(1)
    init = EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=None, clip_projection_dim=None))
    return {"sd": build_tiny_sd_turbo(root / "sd", seed=0), "clip": build_tiny_clip_vision(root / "clip", seed=0),
            "init": save_checkpoint(root / "pretrained", init, meta={"stage": "pretrain"})}


@pytest.fixture()
def tiny_xdf_live(tmp_path):
    """An opened LiveStream over a 10-sample, 2-channel (Fz, Cz) .xdf written here: the engine needs a stream to
    window, the tests hand it windows themselves."""
    import numpy as np

    from bci_dream.acquisition.live import LiveStream
    from bci_dream.acquisition.xdf_replay import XdfReplaySource
    from bci_dream.io.xdf_writer import XdfWriter

    path = tmp_path / "tiny.xdf"
    with XdfWriter(path) as w:
        sid = w.add_stream("EEG", "EEG", 2, 250.0, channel_labels=["Fz", "Cz"])
        w.write_samples(sid, np.zeros((10, 2), np.float32), np.arange(10) / 250.0)
    stream = LiveStream(XdfReplaySource(path, speed=0))
    stream.open()
    return stream


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory):
    """Tiny random-weight pipelines saved in diffusers' formats, built once: ``sd`` (SD-Turbo-shaped, with a text
    encoder), ``sdxl`` (SDXL-Turbo-shaped, with its two) and ``sdxl-ip`` (an IP-Adapter for it, image embeddings
    24 wide)."""
    from bci_dream.generation.tiny import build_tiny_ip_adapter, build_tiny_sd_turbo, build_tiny_sdxl_turbo

    root = tmp_path_factory.mktemp("tiny-pipelines")
    sdxl = build_tiny_sdxl_turbo(root / "sdxl", text=True)
    return {"sd": build_tiny_sd_turbo(root / "sd", text=True), "sdxl": sdxl,
            "sdxl-ip": build_tiny_ip_adapter(sdxl, root / "sdxl-ip", image_embed_dim=24, seed=1)}
