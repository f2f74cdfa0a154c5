"""A diffusers pipeline folder's text encoders and tokenizers (``text_encoder/``, ``tokenizer/``, and SDXL's
``text_encoder_2/``, ``tokenizer_2/``): what they must hold, and loading them through transformers.

Generation never keeps them resident: they encode a prompt once (:mod:`bci_dream.generation.text_prompt`) and are
dropped. No torch at import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bci_dream.core.errors import first_line
from bci_dream.loading.hub import ModelLoadError, quiet_transformers
from bci_dream.loading.pipeline_folder import has_weights, weights_variant

#: (text encoder, tokenizer) subfolders per pipeline kind.
TEXT_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "sd": (("text_encoder", "tokenizer"),),
    "sdxl": (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")),
}
#: File stem of a transformers model's weights (``text_encoder/model[.fp16].safetensors``).
TRANSFORMERS_WEIGHTS_STEM = "model"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_ENCODER_CLASSES = {"text_encoder": "CLIPTextModel", "text_encoder_2": "CLIPTextModelWithProjection"}


def text_patterns(kind: str, variant: str | None) -> list[str]:
    """``allow_patterns`` for the text encoders and tokenizers of a hub pipeline of ``kind`` (weights ``variant``)."""
    suffix = f".{variant}" if variant else ""
    patterns: list[str] = []
    for encoder, tokenizer in TEXT_PARTS[kind]:
        patterns += [f"{encoder}/config.json", f"{encoder}/{TRANSFORMERS_WEIGHTS_STEM}{suffix}.safetensors",
                     f"{tokenizer}/*"]
    return patterns


def missing_text_files(folder: str | os.PathLike, kind: str) -> list[str]:
    """What ``folder`` lacks of its text encoders and tokenizers (empty when complete)."""
    folder = Path(folder)
    missing = []
    for encoder, tokenizer in TEXT_PARTS[kind]:
        if not (folder / encoder / "config.json").is_file():
            missing.append(f"{encoder}/config.json")
        if not has_weights(folder, encoder, TRANSFORMERS_WEIGHTS_STEM):
            missing.append(f"{encoder}/{TRANSFORMERS_WEIGHTS_STEM}.safetensors")
        if not any((folder / tokenizer / f).is_file() for f in _TOKENIZER_FILES):
            missing.append(f"{tokenizer}/")
    return missing


def _encoder_class(folder: Path, encoder: str):
    import transformers

    try:
        entry = json.loads((folder / "model_index.json").read_text()).get(encoder) or []
    except (OSError, ValueError):
        entry = []
    name = entry[1] if len(entry) == 2 and entry[0] == "transformers" and entry[1] else _ENCODER_CLASSES[encoder]
    return getattr(transformers, name, None) or getattr(transformers, _ENCODER_CLASSES[encoder])


def load_text_parts(folder: str | os.PathLike, kind: str, *, device: Any = "cpu", dtype: Any = None) -> dict[str, Any]:
    """The text encoders (frozen, eval mode, on ``device`` in ``dtype``) and tokenizers of the pipeline in ``folder``,
    keyed by their pipeline component names (``text_encoder``, ``tokenizer``, ...).

    Raises:
        ModelLoadError: a part is missing (all named in one line) or cannot be loaded.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    missing = missing_text_files(folder, kind)
    if missing:
        raise ModelLoadError(f"model folder {folder} lacks {', '.join(missing)}: its text encoders are needed to "
                             "encode a prompt")
    parts: dict[str, Any] = {}
    try:
        with quiet_transformers():
            for encoder, tokenizer in TEXT_PARTS[kind]:
                variant = weights_variant(folder, encoder, TRANSFORMERS_WEIGHTS_STEM)
                model = _encoder_class(folder, encoder).from_pretrained(folder, subfolder=encoder, variant=variant,
                                                                        dtype=dtype, local_files_only=True)
                parts[encoder] = model.requires_grad_(False).eval().to(device)
                parts[tokenizer] = CLIPTokenizer.from_pretrained(folder, subfolder=tokenizer, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"cannot load the text encoders of {folder}: {first_line(e)}") from e
    return parts
