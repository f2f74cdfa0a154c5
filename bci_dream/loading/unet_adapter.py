"""The fine-tuned UNet part of a checkpoint folder: its files, and adding, saving and loading it.

A fine-tuning checkpoint folder holds the UNet's trained part in one of two forms:

- ``unet_lora/``: a LoRA adapter on the cross-attention projections (:data:`LORA_TARGETS`), twice:
  ``adapter_model.safetensors`` + ``adapter_config.json`` in peft's layout (:data:`PEFT_ADAPTER_WEIGHTS`,
  :data:`PEFT_ADAPTER_CONFIG`; what :func:`load_unet_adapter` reads), and
  ``pytorch_lora_weights.safetensors`` in diffusers' layout (:data:`DIFFUSERS_LORA_WEIGHTS`;
  ``pipe.load_lora_weights(folder / "unet_lora")`` loads it, as it loads LCM-LoRA from the hub);
- ``unet_cross_attention.safetensors``: the full ``attn2`` weights, for ``unet.load_state_dict(..., strict=False)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bci_dream.core.errors import CheckpointError
from bci_dream.core.files import write_atomically
from bci_dream.loading.hub import quiet

if TYPE_CHECKING:  # pragma: no cover
    import torch

LORA_FOLDER = "unet_lora"
#: peft's adapter files inside :data:`LORA_FOLDER`.
PEFT_ADAPTER_WEIGHTS, PEFT_ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
#: diffusers' LoRA file name (inside :data:`LORA_FOLDER`, and in LoRA repos on the hub such as LCM-LoRA).
DIFFUSERS_LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
CROSS_ATTENTION_FILE = "unet_cross_attention.safetensors"
#: The UNet modules a LoRA adapter wraps: the cross-attention projections (where the EEG enters).
LORA_TARGETS = ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")


def has_unet_adapter(folder: str | os.PathLike) -> bool:
    """Whether the checkpoint ``folder`` holds a fine-tuned UNet part (either form)."""
    folder = Path(folder)
    return (folder / LORA_FOLDER).is_dir() or (folder / CROSS_ATTENTION_FILE).is_file()


def add_lora(unet, rank: int, alpha: float | None = None) -> list[torch.nn.Parameter]:
    """Wrap the cross-attention projections of ``unet`` in a LoRA adapter; returns its parameters.

    The adapter starts as the identity (its B matrices are zero), so step 0 is the base model.
    """
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights=True,
                        target_modules=list(LORA_TARGETS))
    unet.add_adapter(config)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def cross_attention_parameters(unet) -> dict[str, torch.nn.Parameter]:
    """The UNet's cross-attention (``attn2``) parameters by name."""
    return {n: p for n, p in unet.named_parameters() if ".attn2." in n}


def save_unet_adapter(unet, folder: str | os.PathLike, *, full_cross_attention: bool) -> None:
    """Write the trained UNet part into the checkpoint ``folder`` (see the module docstring)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if full_cross_attention:
        tensors = {n: p.detach().contiguous().cpu() for n, p in cross_attention_parameters(unet).items()}
        write_atomically(folder / CROSS_ATTENTION_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
        return
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import get_peft_model_state_dict

    lora_dir = folder / LORA_FOLDER
    lora_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(unet).items()}
    config = unet.peft_config["default"].to_dict()
    config_json = json.dumps(config, indent=2, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o))
    write_atomically(lora_dir / PEFT_ADAPTER_WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    write_atomically(lora_dir / PEFT_ADAPTER_CONFIG, lambda p: p.write_text(config_json))
    with quiet("diffusers"):
        StableDiffusionPipeline.save_lora_weights(
            lora_dir, unet_lora_layers=convert_state_dict_to_diffusers(state), weight_name=DIFFUSERS_LORA_WEIGHTS,
            unet_lora_adapter_metadata=json.loads(config_json))


def load_unet_adapter(unet, folder: str | os.PathLike) -> str:
    """Apply the UNet part saved in checkpoint ``folder`` to ``unet``; returns ``"lora"`` or ``"full-cross-attention"``.

    Raises:
        CheckpointError: the folder holds neither, or its tensors do not fit this UNet.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / LORA_FOLDER / PEFT_ADAPTER_WEIGHTS).is_file():
        from peft import LoraConfig, set_peft_model_state_dict

        try:
            raw = json.loads((folder / LORA_FOLDER / PEFT_ADAPTER_CONFIG).read_text())
            known = {f.name for f in dataclasses.fields(LoraConfig)}
            config = LoraConfig(**{k: v for k, v in raw.items() if k in known})
            state = load_file(str(folder / LORA_FOLDER / PEFT_ADAPTER_WEIGHTS))
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"cannot read the UNet adapter in {folder / LORA_FOLDER}: {e}") from e
        unet.add_adapter(config)
        result = set_peft_model_state_dict(unet, state)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing:
            bad = (result.unexpected_keys or missing)[:3]
            raise CheckpointError(f"the UNet adapter in {folder / LORA_FOLDER} does not fit this UNet ({bad}); "
                                  "was it trained on another base model?")
        return "lora"
    if (folder / CROSS_ATTENTION_FILE).is_file():
        state = load_file(str(folder / CROSS_ATTENTION_FILE))
        own = unet.state_dict()
        bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        if bad:
            raise CheckpointError(f"{folder / CROSS_ATTENTION_FILE} does not fit this UNet ({bad[:3]}); "
                                  "was it trained on another base model?")
        unet.load_state_dict(state, strict=False)
        return "full-cross-attention"
    raise CheckpointError(f"{folder} holds no UNet adapter ({LORA_FOLDER}/ or {CROSS_ATTENTION_FILE})")
