"""Diffusers pipeline folders (as ``save_pretrained`` or ``hf download`` write them): what they must hold,
which weights variant they carry, and which pipeline class they are for. No torch at import time."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bci_dream.loading.hub import ModelLoadError

#: File stem of a diffusers model's weights (``unet/diffusion_pytorch_model[.fp16].safetensors``).
DIFFUSERS_WEIGHTS_STEM = "diffusion_pytorch_model"


def has_weights(folder: Path, sub: str, stem: str = DIFFUSERS_WEIGHTS_STEM) -> bool:
    """Whether ``folder/sub`` holds ``stem`` weights (plain or fp16, safetensors or bin, or a sharded index)."""
    d = folder / sub if sub else folder
    return any((d / f"{stem}{v}{ext}").is_file() for v in ("", ".fp16") for ext in (".safetensors", ".bin")) or \
        any(d.glob(f"{stem}*.index.json"))


def weights_variant(folder: str | os.PathLike, sub: str, stem: str = DIFFUSERS_WEIGHTS_STEM) -> str | None:
    """None when ``folder/sub`` holds the plain weights file, ``"fp16"`` when only the fp16 variant.

    Raises:
        ModelLoadError: neither is there.
    """
    d = Path(folder) / sub
    if any((d / f"{stem}{ext}").is_file() for ext in (".safetensors", ".bin")) or any(d.glob(f"{stem}*.index.json")):
        return None
    if any((d / f"{stem}.fp16{ext}").is_file() for ext in (".safetensors", ".bin")):
        return "fp16"
    raise ModelLoadError(f"model folder {folder} lacks {sub}/{stem}.safetensors (the {sub} weights)")


def missing_pipeline_files(folder: str | os.PathLike, *, need_vae: bool = True,
                           need_model_index: bool = True) -> list[str]:
    """The files a diffusers pipeline folder lacks (empty when complete): configs and UNet/vae weights."""
    folder = Path(folder)
    needed = (["model_index.json"] if need_model_index else []) + ["scheduler/scheduler_config.json",
                                                                  "unet/config.json"]
    if need_vae:
        needed.append("vae/config.json")
    missing = [f for f in needed if not (folder / f).is_file()]
    if not has_weights(folder, "unet"):
        missing.append(f"unet/{DIFFUSERS_WEIGHTS_STEM}.safetensors")
    if need_vae and not has_weights(folder, "vae"):
        missing.append(f"vae/{DIFFUSERS_WEIGHTS_STEM}.safetensors")
    return missing


def check_pipeline_folder(folder: str | os.PathLike, *, need_vae: bool = True, need_model_index: bool = True) -> None:
    """Check a local diffusers pipeline folder.

    Args:
        need_vae: the folder's own vae is loaded (not a separate decoder such as TAESD).
        need_model_index: ``model_index.json`` is read (generation builds the pipeline class it names;
            fine-tuning loads the UNet, vae and scheduler alone).

    Raises:
        ModelLoadError: the folder does not exist or lacks files, all of them named in one line.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist; pass a diffusers pipeline folder (with "
                             "model_index.json, unet/, vae/, scheduler/), a hub id, or a name from "
                             "'bci-dream models list'")
    missing = missing_pipeline_files(folder, need_vae=need_vae, need_model_index=need_model_index)
    if missing:
        raise ModelLoadError(f"model folder {folder} lacks {', '.join(missing)}; it must be a diffusers pipeline "
                             "folder (as written by save_pretrained or 'hf download')")


def pipeline_kind(folder: str | os.PathLike) -> str:
    """``"sdxl"`` or ``"sd"`` from the folder's ``model_index.json``."""
    try:
        name = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name", "")
    except (OSError, ValueError):
        name = ""
    return "sdxl" if "XL" in name else "sd"
