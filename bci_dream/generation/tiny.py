"""Tiny random-weight models in the real on-disk formats, for tests and offline demos.

No real weights are involved: every tensor is drawn from a seeded generator. The folders written
here have the same layout as the hub repositories the production code loads (a diffusers pipeline
folder like ``stabilityai/sd-turbo``, a transformers CLIP vision folder like
``openai/clip-vit-large-patch14``), so the same ``from_pretrained`` calls read both.

- :func:`build_tiny_sd_turbo`: an SD-Turbo-shaped ``StableDiffusionPipeline`` (same block types,
  linear projections, cross-attention width 1024, Euler "trailing" scheduler) with small widths and
  an ``AutoencoderTiny`` (TAESD-shaped) vae; no safety checker; with ``text=True`` a tiny ``CLIPTextModel`` and a
  byte-level ``CLIPTokenizer`` (:func:`tiny_text_parts`), so that prompts can be encoded offline.
- :func:`build_tiny_sdxl_turbo`: the same for SDXL-Turbo (pooled embeddings, ``StableDiffusionXLPipeline``, two text
  encoders).
- :func:`build_tiny_clip_vision`: ``CLIPVisionModelWithProjection`` + ``CLIPImageProcessor``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

#: SD-Turbo's ``scheduler/scheduler_config.json`` (stabilityai/sd-turbo), minus bookkeeping keys.
SD_TURBO_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "trained_betas": None,
}

#: Latent pixels per image pixel of the tiny vae: 2 ** (len(block channels) - 1), as for TAESD.
TINY_VAE_SCALE = 8


def _byte_level_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary with no merges: the two special tokens, then GPT-2's 256 byte characters alone and as
    word ends (``"a</w>"``). Any text tokenizes, one token per byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    rest = iter(range(256, 512))  # (the other bytes, in order, as the characters after U+00FF)
    chars = [chr(b if b in printable else next(rest)) for b in range(256)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    return vocab


def tiny_text_parts(width: int, *, projection_dim: int | None = None, seed: int = 0) -> tuple:
    """A random-weight CLIP text encoder of hidden ``width`` (1 layer, 2 heads, 77 positions; with a projection of
    ``projection_dim`` when given: ``CLIPTextModelWithProjection``, SDXL's second encoder) and its tokenizer."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = _byte_level_vocab()
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=projection_dim or width)
    torch.manual_seed(seed)
    encoder = (CLIPTextModelWithProjection if projection_dim else CLIPTextModel)(config)
    return encoder, CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_sd_turbo(folder: str | os.PathLike, seed: int = 0, *, sample_size: int = 8,
                        text: bool = False) -> Path:
    """Write a tiny SD-Turbo-shaped pipeline with random weights to ``folder``; returns the folder.

    UNet: 3 x CrossAttnDownBlock2D + DownBlock2D / UpBlock2D + 3 x CrossAttnUpBlock2D, block widths
    (32, 64, 64, 64), one layer per block, 2-channel attention heads... scaled down from SD-Turbo's
    (320, 640, 1280, 1280); cross_attention_dim 1024 and linear projections as in SD-Turbo.
    ``sample_size`` is the latent side (images of ``sample_size * 8`` pixels by default). ``text``: with a tiny
    text encoder (width 1024, as SD 2's) and tokenizer.

    Load it back with ``StableDiffusionPipeline.from_pretrained(folder, text_encoder=None,
    tokenizer=None, feature_extractor=None, image_encoder=None, safety_checker=None,
    requires_safety_checker=False)`` (diffusers warns that the vae is not the ``AutoencoderKL`` the
    pipeline's type hints name; that is expected).
    """
    import torch
    from diffusers import (
        AutoencoderTiny,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=1,
        attention_head_dim=(2, 4, 4, 4),
        cross_attention_dim=1024,
        use_linear_projection=True,
        norm_num_groups=16,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderTiny(
        encoder_block_out_channels=(16, 16, 16, 16),
        decoder_block_out_channels=(16, 16, 16, 16),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    scheduler = EulerDiscreteScheduler(**SD_TURBO_SCHEDULER)
    encoder, tokenizer = tiny_text_parts(1024, seed=seed + 2) if text else (None, None)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    _calibrate_preview(pipe, sample_size)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_sdxl_turbo(folder: str | os.PathLike, seed: int = 0, *, sample_size: int = 8,
                          text: bool = False) -> Path:
    """Write a tiny SDXL-Turbo-shaped pipeline with random weights to ``folder``; returns the folder.

    A ``StableDiffusionXLPipeline`` whose UNet adds SDXL's pooled text embedding and size/crop ids to its time
    embedding (``addition_embed_type="text_time"``: pooled width 32 here, 1280 in SDXL), cross-attention width
    64 (2048 in SDXL), an ``AutoencoderTiny`` vae and SD-Turbo's Euler "trailing" scheduler. ``text``: with SDXL's
    two text encoders, tiny (hidden widths 32 + 32 = the cross-attention width; the second's projection, 32, is the
    pooled embedding) and their tokenizers.
    """
    import torch
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=16)
    vae = AutoencoderTiny(encoder_block_out_channels=(16,) * 4, decoder_block_out_channels=(16,) * 4,
                          num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4)
    (encoder, tokenizer), (encoder_2, tokenizer_2) = (
        (tiny_text_parts(32, seed=seed + 2), tiny_text_parts(32, projection_dim=32, seed=seed + 3)) if text
        else ((None, None), (None, None)))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=encoder, text_encoder_2=encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_2, unet=unet,
                                     scheduler=EulerDiscreteScheduler(**SD_TURBO_SCHEDULER))
    pipe.set_progress_bar_config(disable=True)
    saving = logging.getLogger("diffusers.pipelines.pipeline_utils")
    level = saving.level
    saving.setLevel(logging.ERROR)  # ("text_encoder=None ... cannot be saved": by design)
    try:
        pipe.save_pretrained(folder)
    finally:
        saving.setLevel(level)
    return folder


#: The file name diffusers' IP-Adapter loader reads (``pipe.load_ip_adapter(folder, subfolder="", weight_name=...)``).
IP_ADAPTER_WEIGHTS = "ip-adapter.safetensors"


def build_tiny_ip_adapter(pipeline_folder: str | os.PathLike, folder: str | os.PathLike, *, image_embed_dim: int = 32,
                          seed: int = 0) -> Path:
    """Write a random-weight IP-Adapter for the UNet of the pipeline in ``pipeline_folder`` to
    ``folder/ip-adapter.safetensors``, in the layout of h94/IP-Adapter's files: ``image_proj.proj`` (CLIP image
    embedding of ``image_embed_dim`` → 4 tokens of the UNet's cross-attention width) and ``image_proj.norm``, and
    per cross-attention layer, in the order of ``unet.attn_processors``, ``ip_adapter.{1,3,5...}.to_k_ip`` /
    ``to_v_ip`` (cross-attention width → the layer's width). Returns the file.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    cross = int(unet.config.cross_attention_dim)
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) / shape[-1] ** 0.5

    tensors = {"image_proj.proj.weight": rand(4 * cross, image_embed_dim),
               "image_proj.proj.bias": torch.zeros(4 * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1
    for name, module in unet.named_modules():
        if name.endswith("attn2") and hasattr(module, "to_k"):
            width = int(module.to_q.out_features)
            tensors[f"ip_adapter.{key}.to_k_ip.weight"] = rand(width, cross)
            tensors[f"ip_adapter.{key}.to_v_ip.weight"] = rand(width, cross)
            key += 2
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / IP_ADAPTER_WEIGHTS))
    return folder / IP_ADAPTER_WEIGHTS


def _calibrate_preview(pipe, sample_size: int) -> None:
    """Make the random model's images visible and responsive: the latents one step produces are far larger
    than the decoder's input clamp (tanh(x / 3) * 3), and its random last convolution gives a near-constant
    grey. So the vae's ``scaling_factor`` is set to the latents' spread, and the last convolution rescaled
    to images of mean 0 and std about 0.5 per channel in [-1, 1]."""
    import torch

    embeds = torch.randn(4, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents = pipe(prompt_embeds=embeds, num_inference_steps=1, guidance_scale=0.0, height=8 * sample_size,
                       width=8 * sample_size, output_type="latent", return_dict=False,
                       generator=torch.Generator().manual_seed(0))[0]
        scale = float(latents.std())
        pipe.vae.register_to_config(scaling_factor=scale)
        decoder = pipe.vae.decoder
        last = decoder.layers[-1]
        raw = decoder.layers(torch.tanh(latents / scale / 3) * 3)  # (DecoderTiny.forward before its x * 2 - 1)
        mean, std = raw.mean(dim=(0, 2, 3)), raw.std(dim=(0, 2, 3)).clamp_min(1e-6)
        gain = 0.25 / std  # raw in [0, 1]: mean 0.5, std 0.25
        last.weight.mul_(gain[:, None, None, None])
        last.bias.sub_(mean).mul_(gain).add_(0.5)


def build_tiny_clip_vision(folder: str | os.PathLike, projection_dim: int = 32, seed: int = 0) -> Path:
    """Write a tiny ``CLIPVisionModelWithProjection`` and its ``CLIPImageProcessor`` to ``folder``.

    Hidden width 32, 2 layers, 2 heads, 32-pixel images in 8-pixel patches, image embeddings of
    ``projection_dim``. Loads back with ``CLIPVisionModelWithProjection.from_pretrained(folder)`` and
    ``CLIPImageProcessor.from_pretrained(folder)``.
    """
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(config)
    model.save_pretrained(folder)
    processor = clip_image_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return folder


def clip_image_processor_class():
    """transformers' CLIP image processor class that works without torchvision (no warning)."""
    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        return transformers.CLIPImageProcessorPil
    return transformers.CLIPImageProcessor
