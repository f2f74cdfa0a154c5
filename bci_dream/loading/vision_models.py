"""The image models training and evaluation read: CLIP's vision tower and an image classifier.

Both come from a local folder or a hub id through :func:`~bci_dream.loading.hub.load_from_folder_or_hub`
(cache first, then the hub; one-line errors), frozen and in eval mode.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bci_dream.io.image_file import read_image
from bci_dream.loading.hub import ModelLoadError, hub_subfolder, is_local, load_from_folder_or_hub

log = logging.getLogger(__name__)

_CLIP_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


def clip_image_processor_class():
    """transformers' CLIP image processor class that works without torchvision (no warning)."""
    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        return transformers.CLIPImageProcessorPil
    return transformers.CLIPImageProcessor


def check_clip_folder(folder: str | os.PathLike) -> None:
    """Check a local transformers CLIP folder (config and weights; without an image processor config, CLIP's standard
    preprocessing is used).

    Raises:
        ModelLoadError: the folder is missing or lacks a file (named).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"cannot load the CLIP vision model: CLIP model folder {folder} does not exist; pass a "
                             "transformers CLIP folder or a hub id such as openai/clip-vit-large-patch14")
    missing = [f for f in ("config.json",) if not (folder / f).is_file()]
    if not any((folder / f).is_file() for f in _CLIP_WEIGHTS):
        missing.append("model.safetensors")
    if missing:
        raise ModelLoadError(f"cannot load the CLIP vision model: CLIP model folder {folder} lacks {', '.join(missing)}")


def _device(device: str | None):
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _without_progress_bars(load):
    """``load`` without transformers' per-load progress bars."""
    from transformers.utils import logging as hf_logging

    def run(local_files_only: bool):
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return load(local_files_only)
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    return run


def _load_frozen(source: str, what: str, model_class, processor_class, device: str | None, *,
                 subfolder: str = "", default_processor: bool = False) -> tuple[Any, Any]:
    """``(model_class, processor_class)`` from the folder or hub id ``source`` (its ``subfolder``), frozen, in eval
    mode, on ``device``. ``default_processor``: without a preprocessor config, the processor's defaults (CLIP's
    standard 224-pixel preprocessing, as diffusers uses for IP-Adapter image encoders, which ship none)."""

    def load(local_files_only: bool) -> tuple[Any, Any]:
        model = model_class.from_pretrained(source, subfolder=subfolder, local_files_only=local_files_only)
        try:
            processor = processor_class.from_pretrained(source, subfolder=subfolder, local_files_only=local_files_only)
        except OSError:
            if not default_processor:
                raise
            log.info("%s%s has no preprocessor config: CLIP's standard preprocessing (224 pixels)", source,
                     f"/{subfolder}" if subfolder else "")
            processor = processor_class()
        return model, processor

    model, processor = load_from_folder_or_hub(source, what, _without_progress_bars(load),
                                               errors=(OSError, ValueError, KeyError, TypeError))
    model.requires_grad_(False).eval()
    return model.to(_device(device)), processor


def load_clip_vision(clip_model: str | os.PathLike, device: str | None = "cpu") -> tuple[Any, Any]:
    """``(CLIPVisionModelWithProjection, CLIP image processor)`` from a folder, a hub id, or a hub id with a subfolder
    (``h94/IP-Adapter/models/image_encoder``), frozen, on ``device`` (None: CUDA when available).

    Raises:
        ModelLoadError: one line naming the model and what is missing.
    """
    from transformers import CLIPVisionModelWithProjection

    source, subfolder = hub_subfolder(clip_model) or (str(clip_model), "")
    if not subfolder and is_local(source):
        source = str(Path(source).expanduser())
        check_clip_folder(source)
    return _load_frozen(source, "CLIP vision model", CLIPVisionModelWithProjection, clip_image_processor_class(),
                        device, subfolder=subfolder, default_processor=True)


def load_image_classifier(classifier: str | os.PathLike, device: str | None = None) -> tuple[Any, Any]:
    """``(AutoModelForImageClassification, AutoImageProcessor)`` from a folder or hub id, frozen, on ``device``
    (None: CUDA when available).

    Raises:
        ModelLoadError: one line naming the model and what is missing.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    source = str(classifier)
    if is_local(source):
        source = str(Path(source).expanduser())
    return _load_frozen(source, "image classifier", AutoModelForImageClassification, AutoImageProcessor, device)


def batched_images(paths: Sequence[Path], processor, fn, batch_size: int, device):
    """``fn(pixel_values)`` over the images at ``paths`` in batches, read and preprocessed by ``processor``: a
    float32 numpy array [N, ...] (float32 [0, 0] for no paths)."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            images = [read_image(p) for p in paths[start:start + batch_size]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            out.append(fn(pixels).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def clip_image_embeds(paths: Sequence[Path], model, processor, *, batch_size: int = 16):
    """CLIP ``image_embeds`` [N, P] (float32 numpy) of the images at ``paths``."""
    device = next(model.parameters()).device
    return batched_images(paths, processor, lambda px: model(pixel_values=px).image_embeds, batch_size, device)
