"""A text prompt as the generator's text side: encoded once by the pipeline's own text encoders, kept on disk.

The EEG conditions the image (its prompt embeddings on the dreamdiffusion route, its CLIP image embedding through
the IP-Adapter on the ip-adapter route); what the text encoders give is the rest of what the UNet takes:

- on the ip-adapter route, the prompt embeddings [1, 77, D] beside the image tokens (an optional prompt, else the
  empty prompt, as ``pipe(prompt="", ip_adapter_image_embeds=...)`` encodes it);
- on SDXL models, the pooled text embedding [1, P] added to the time embedding.

Encoding loads the text encoders (SDXL's are 0.8 B parameters), runs ``pipe.encode_prompt`` once and drops them; the
result is cached in ``$XDG_CACHE_HOME/bci-dream/prompts`` so that later sessions with the same model and prompt
load no text encoder at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from bci_dream.generation.models import cache_root
from bci_dream.loading.hub import ModelLoadError, quiet
from bci_dream.loading.text_encoders import TEXT_PARTS, load_text_parts, missing_text_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextConditioning:
    """A prompt's encoding: ``prompt_embeds`` [1, 77, D] and, for SDXL, ``pooled`` [1, P] (float32, CPU)."""

    prompt: str
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def label(self) -> str:
        """How frames name their text side: ``prompt 'a cat'`` or ``empty prompt``."""
        return f"prompt {self.prompt!r}" if self.prompt else "empty prompt"


def _cache_file(folder: Path, kind: str, prompt: str) -> Path:
    """Keyed by the text encoders' weights (path, size, modification time) and the prompt."""
    stamp = [str(folder.resolve()), kind, prompt]
    for encoder, _ in TEXT_PARTS[kind]:
        for f in sorted((folder / encoder).glob("model*")):
            st = f.stat()
            stamp.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:32]
    return cache_root() / "prompts" / f"{key}.safetensors"


def _read_cached(path: Path, prompt: str) -> TextConditioning | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        return TextConditioning(prompt, tensors["prompt_embeds"], tensors.get("pooled"))
    except (OSError, KeyError, SafetensorError) as e:
        log.debug("prompt cache %s unreadable (%s); encoding again", path, e)
        return None


def _write_cached(path: Path, text: TextConditioning) -> None:
    from safetensors.torch import save_file

    tensors = {"prompt_embeds": text.prompt_embeds.contiguous()}
    if text.pooled is not None:
        tensors["pooled"] = text.pooled.contiguous()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"prompt": text.prompt})
        os.replace(tmp, path)
    except OSError as e:  # (a read-only cache only costs the next session an encoding)
        log.debug("cannot cache the prompt encoding in %s: %s", path, e)


def encode_prompt(pipe, folder: str | os.PathLike, kind: str, prompt: str = "") -> TextConditioning:
    """``prompt`` encoded by the text encoders in the pipeline folder ``folder`` (:func:`encode_prompts`)."""
    return encode_prompts(pipe, folder, kind, [prompt])[0]


def encode_prompts(pipe, folder: str | os.PathLike, kind: str, prompts: list[str]) -> list[TextConditioning]:
    """Each of ``prompts`` encoded by the text encoders in the pipeline folder ``folder`` (``kind`` ``sd`` or
    ``sdxl``) with ``pipe.encode_prompt``, on ``pipe``'s device; from the cache when this model encoded it before
    (the text encoders are loaded once, and only when a prompt is not cached). A prompt longer than the tokenizer
    takes (77 tokens) is truncated, said in a warning.

    The encoding runs in a second pipeline object made around ``pipe``'s modules and the text encoders, so that the
    resident pipeline is never changed and may go on generating meanwhile.

    Raises:
        ModelLoadError: the folder lacks its text encoders (named in one line) or they cannot be loaded.
    """
    folder = Path(folder)
    missing = missing_text_files(folder, kind)
    if missing:
        raise ModelLoadError(f"cannot encode the prompt: model folder {folder} lacks {', '.join(missing)}")
    out: dict[str, TextConditioning] = {}
    for prompt in prompts:
        cache = _cache_file(folder, kind, prompt)
        if cache.is_file() and (cached := _read_cached(cache, prompt)) is not None:
            out[prompt] = cached
    todo = [p for p in dict.fromkeys(prompts) if p not in out]
    if todo:
        for text in _encode(pipe, folder, kind, todo):
            _write_cached(_cache_file(folder, kind, text.prompt), text)
            out[text.prompt] = text
    return [out[p] for p in prompts]


def _encode(pipe, folder: Path, kind: str, prompts: list[str]) -> list[TextConditioning]:
    unet = pipe.unet
    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    parts = load_text_parts(folder, kind, device=device, dtype=dtype)
    texts = []
    try:
        base = getattr(type(pipe), "_bci_dream_base", type(pipe))  # (the pipeline class, not its pinned subclass)
        with quiet("diffusers.pipelines"):  # ("the safety checker is disabled": generation has none)
            encoder = base(**{**pipe.components, **parts})
        tokenizer = parts["tokenizer"]
        for prompt in prompts:
            n_tokens = len(tokenizer(prompt).input_ids)
            if n_tokens > tokenizer.model_max_length:
                log.warning("the prompt %r is %d tokens long; the text encoder takes %d: the rest is cut off",
                            _short(prompt), n_tokens, tokenizer.model_max_length)
            with torch.inference_mode(), quiet("diffusers.pipelines"):  # (our warning says it, once)
                if kind == "sdxl":
                    embeds, _, pooled, _ = encoder.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                                                 do_classifier_free_guidance=False)
                else:
                    embeds, _ = encoder.encode_prompt(prompt, device, 1, False)
                    pooled = None
            texts.append(TextConditioning(prompt, embeds.float().cpu(),
                                          None if pooled is None else pooled.float().cpu()))
            log.info("encoded the %s with the text encoders of %s", texts[-1].label, folder)
    except (RuntimeError, ValueError, IndexError, OverflowError, TypeError) as e:
        raise ModelLoadError(f"cannot encode the prompt with the text encoders of {folder}: {e}") from e
    finally:
        del parts
    return texts


def _short(prompt: str, limit: int = 40) -> str:
    return prompt if len(prompt) <= limit else prompt[:limit] + "…"
