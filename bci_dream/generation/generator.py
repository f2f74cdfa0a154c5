"""The generator: a distilled Stable Diffusion pipeline kept resident, conditioned by EEG embeddings.

:func:`load_generator` makes a model local (:func:`bci_dream.generation.models.resolve_model`),
loads it with diffusers' own ``from_pretrained`` — without a text encoder, tokenizer or safety
checker; the EEG conditioning head supplies ``prompt_embeds`` directly — and prepares it for
repeated single-image calls:

- fp16 on CUDA (bf16 on request), float32 on the CPU; UNet and decoder in ``channels_last``;
  attention through PyTorch's ``scaled_dot_product_attention`` (diffusers' ``AttnProcessor2_0``);
  optional ``torch.compile``; LoRAs (LCM-LoRA, the fine-tuned EEG adapter) fused into the weights.
- one noise seed per session: the initial latents are drawn once from it, so that successive
  images of a session differ only where the EEG conditioning differs; they, the output buffer and
  the RNG are allocated once (again only if the size changes).
- no GPU: the same code on the CPU at 256 x 256 (said once per process); CUDA out of memory while
  generating: half the size (not below 256), said in one line, and one retry.

:meth:`Generator.generate` runs the pipeline's denoising loop — its scheduler and UNet, called as
``pipe.__call__`` calls them, without the per-call input checks and device lookups that cost
milliseconds of Python per image — then decodes with the vae itself, so that denoising and decoding
are timed separately. Calls are serialised by a lock (an engine being stopped may still finish its
frame while the next one starts).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bci_dream.core.errors import BciDreamError, first_line
from bci_dream.generation.backends import QUANTIZED, choose_backend, quantize_unet
from bci_dream.generation.frame_plan import FrameGraph, PlanError
from bci_dream.generation.models import (
    AUTO,
    ModelNotAvailableError,
    ModelSpec,
    ResolvedModel,
    resolve_model,
    text_encoder_folder,
)
from bci_dream.generation.text_prompt import TextConditioning, encode_prompts
from bci_dream.loading.compute_device import resolve_device
from bci_dream.loading.hub import ModelLoadError, quiet
from bci_dream.loading.ip_adapter import image_embed_width, load_ip_adapter
from bci_dream.loading.pipeline_folder import check_pipeline_folder, weights_variant
from bci_dream.loading.unet_adapter import DIFFUSERS_LORA_WEIGHTS, load_unet_adapter

log = logging.getLogger(__name__)

#: Image side on the CPU when no size is given (the model's own size if smaller).
CPU_SIZE = 256
#: CUDA out of memory halves the image side, but not below this.
MIN_OOM_SIZE = 256
DTYPES = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "float32": torch.float32}
#: Pipeline components generation never loads.
_UNUSED_COMPONENTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "feature_extractor",
                      "image_encoder", "safety_checker")

_cpu_notice_given = False
_NO_GUIDANCE = ("a negative prompt needs classifier-free guidance: a guidance scale above 1 (--guidance), not "
                "{guidance:g}; distilled models such as SD-Turbo run without it")


class GenerationError(BciDreamError):
    """Generation cannot go on: bad settings, or the GPU ran out of memory even at the smallest size."""


class EmbeddingShapeError(GenerationError, ValueError):
    """``prompt_embeds`` do not have the shape the UNet's cross-attention takes."""


@dataclass
class GeneratedImage:
    """One image and what it cost.

    Attributes:
        image: RGB image of ``size`` x ``size`` pixels.
        denoise_ms: the denoising steps (on CUDA: GPU time between two events; else wall time).
        decode_ms: the rest of the call: the vae decode and the conversion to a PIL image.
        size: image side in pixels.
        seed: the session's noise seed.
    """

    image: Any
    denoise_ms: float
    decode_ms: float
    size: int
    seed: int


def _pipeline_class(kind: str):
    import diffusers

    return diffusers.StableDiffusionXLPipeline if kind == "sdxl" else diffusers.StableDiffusionPipeline


def _unused_kwargs(pipeline_class) -> dict[str, Any]:
    params = inspect.signature(pipeline_class.__init__).parameters
    kwargs: dict[str, Any] = {name: None for name in _UNUSED_COMPONENTS if name in params}
    if "requires_safety_checker" in params:
        kwargs["requires_safety_checker"] = False
    if "add_watermarker" in params:
        kwargs["add_watermarker"] = False  # watermarks are applied to decoded images; we decode ourselves
    return kwargs


def pooled_width(unet) -> int | None:
    """Width of the pooled text embedding an SDXL-type UNet adds to its time embedding (None for SD)."""
    cfg = unet.config
    if getattr(cfg, "addition_embed_type", None) != "text_time":
        return None
    return int(cfg.projection_class_embeddings_input_dim) - 6 * int(cfg.addition_time_embed_dim)


class Generator:
    """A diffusion pipeline resident on one device, turning ``prompt_embeds`` into images.

    Build one with :func:`load_generator`, or wrap a pipeline made in memory (benchmarks) with
    ``Generator(pipe, ...)``.

    Attributes:
        model_id: the model's name (registry name, hub id or folder).
        is_preview: random weights (the ``tiny`` model): label every image "untrained preview model".
        cross_attention_dim: width of ``prompt_embeds`` (from ``unet.config``).
        pooled_dim: width of SDXL's pooled embedding (None for SD models).
        image_embed_dim: width of the CLIP image embedding the loaded IP-Adapter takes (None: no IP-Adapter).
        size, steps, guidance, seed: image side (pixels), denoising steps, guidance scale, noise seed.
        device, dtype: where and in which precision the models run.
        pipe: the diffusers pipeline (no text encoder, tokenizer or safety checker).
        notice: the one-line reason when ``auto`` fell back to the preview model, else None.
        text: the encoded prompt that gives the text side the EEG does not (:meth:`set_text`; SDXL's pooled
            embedding, the IP-Adapter route's prompt embeddings), or None: zeros.
        cfg: classifier-free guidance (guidance above 1 on a UNet without a guidance embedding): each step runs the
            UNet on :attr:`negative` (the negative prompt; None: zeros) and on the conditioning.
        text_source: where :meth:`encode_texts` finds the model's text encoders (None: it has none).
        backend: how frames run (:mod:`bci_dream.generation.backends`): ``eager`` calls the pipeline's modules step
            by step; ``graph`` (and ``int8`` / ``fp8``, quantized) runs the whole frame as one planned computation,
            a CUDA graph on CUDA (:mod:`bci_dream.generation.frame_plan`).
        backend_difference: the largest pixel difference (0-255) of the back end's first frame from the eager one,
            or None (eager, or not checked).
    """

    def __init__(self, pipe, *, model_id: str, size: int, steps: int = 1, guidance: float = 0.0, seed: int = 0,
                 is_preview: bool = False, backend: str = "eager") -> None:
        self.pipe = pipe
        self.backend = backend
        self.backend_requested = backend  # (what was asked for: ``backend`` is what runs, after any fall-back)
        self.backend_difference: int | None = None
        self._graphs: dict[int, Any] = {}  # (frame graphs by batch size, made on first use; dropped on any change)
        self.model_id = model_id
        self.is_preview = is_preview
        unet = pipe.unet
        self.cross_attention_dim = int(unet.config.cross_attention_dim)
        self.pooled_dim = pooled_width(unet)
        self.image_embed_dim = image_embed_width(unet)
        self.kind = "sdxl" if self.pooled_dim is not None else "sd"
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.seed = int(seed)
        self.device = unet.device
        self.dtype = unet.dtype
        self.vae = pipe.vae
        self._vae_dtype = next(self.vae.parameters()).dtype
        self._scale = float(getattr(self.vae.config, "scaling_factor", 1.0) or 1.0)
        self._shift = float(getattr(self.vae.config, "shift_factor", 0.0) or 0.0)
        self._cuda = self.device.type == "cuda"
        pipe.set_progress_bar_config(disable=True)
        # Classifier-free guidance (two UNet passes per step) against the negative prompt, as the pipeline does it;
        # guidance-distilled UNets take the scale as an embedding instead.
        self.cfg = self.guidance > 1 and unet.config.time_cond_proj_dim is None
        if self.steps < 1:
            raise GenerationError(f"steps must be at least 1, not {self.steps}")
        # The scheduler RNG (ancestral and LCM schedulers draw noise between steps), re-seeded every frame.
        self._rng = torch.Generator(self.device.type if self._cuda else "cpu")
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if self._cuda else []
        self._lock = threading.RLock()
        self._pooled_default = self._zero_pooled()  # (the text's pooled embedding once set_text is given one)
        self._pooled_notice = False
        self._no_prompt = torch.zeros(1, 77, self.cross_attention_dim, device=self.device, dtype=self.dtype)
        self.text: TextConditioning | None = None
        self.ip_adapter_scale = 1.0  # (the strength in use; load_generator sets the loaded adapter's)
        self.ip_adapter_base_scale = 1.0  # (the strength it was loaded with, which steering scales)
        self.negative: TextConditioning | None = None
        self._negative_embeds: torch.Tensor | None = None
        self._negative_pooled: torch.Tensor | None = None
        self.text_source: tuple[Path, str] | None = None  # (pipeline folder with text encoders, kind), if known
        self.resolved: ResolvedModel | None = None  # (set by load_generator: where text encoders are fetched from)
        self.notice: str | None = None  # why ``auto`` runs the preview model, if it does
        self.compiled = False  # torch.compile'd (compiled code and CUDA graphs warm up per thread)
        self._allocate(size)

    # -- buffers --------------------------------------------------------------------------------------

    def _allocate(self, size: int) -> None:
        """Draw the session's initial latents for ``size`` (from the seed, on the CPU: the same noise on any
        device) and allocate the output buffer."""
        factor = int(self.pipe.vae_scale_factor)
        if size < 64 or size % factor:
            raise GenerationError(f"image size {size} is not a multiple of {factor} of at least 64")
        self.size = int(size)
        self._latents = self._noise(self.seed).to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        self.noise_mix = 0.0
        self._host = torch.empty((size, size, 3), dtype=torch.uint8, pin_memory=self._cuda)
        self._loop_constants()
        self._graphs = {}

    def set_text(self, text: TextConditioning | None) -> None:
        """Take the text side from ``text`` from now on (None: zeros).

        Raises:
            EmbeddingShapeError: its widths do not fit the UNet (both named).
        """
        with self._lock:
            self._check_text_widths(text)
            self.text = text
            # (fresh tensors, never written in place: on a matching device ``.to`` returns the cached encoding itself)
            self._no_prompt = text.prompt_embeds.to(self.device, self.dtype) if text is not None else \
                torch.zeros(1, 77, self.cross_attention_dim, device=self.device, dtype=self.dtype)
            self._pooled_default = text.pooled.to(self.device, self.dtype) \
                if text is not None and text.pooled is not None else self._zero_pooled()

    def _zero_pooled(self) -> torch.Tensor | None:
        if self.pooled_dim is None:
            return None
        return torch.zeros(1, self.pooled_dim, device=self.device, dtype=self.dtype)

    def set_negative(self, text: TextConditioning | None) -> None:
        """Guide away from ``text`` (the negative prompt) from now on; only with :attr:`cfg` (guidance above 1).

        Raises:
            GenerationError: the generator does not guide (guidance at most 1).
            EmbeddingShapeError: its widths do not fit the UNet.
        """
        with self._lock:
            if text is not None and not self.cfg:
                raise GenerationError(_NO_GUIDANCE.format(guidance=self.guidance))
            self._check_text_widths(text)
            self.negative = text
            self._negative_embeds = None if text is None else text.prompt_embeds.to(self.device, self.dtype)
            self._negative_pooled = None if text is None or text.pooled is None else \
                text.pooled.to(self.device, self.dtype)
            self._graphs = {}

    def encode_texts(self, prompts: list[str]) -> list[TextConditioning]:
        """``prompts`` encoded by this model's text encoders (cached: see :mod:`bci_dream.generation.text_prompt`).

        Raises:
            ModelLoadError, ModelNotAvailableError: the model has no text encoders, or they cannot be fetched now
                (one line).
        """
        if self.text_source is None:
            if self.resolved is None:
                raise ModelLoadError(f"{self.model_id} has no text encoders: a prompt cannot be encoded for it")
            self.text_source = (text_encoder_folder(self.resolved), self.kind)
        folder, kind = self.text_source
        return encode_prompts(self.pipe, folder, kind, prompts)  # (beside the resident pipeline: no lock)

    def _check_text_widths(self, text: TextConditioning | None) -> None:
        if text is None:
            return
        width = int(text.prompt_embeds.shape[-1])
        pooled = None if text.pooled is None else int(text.pooled.shape[-1])
        if width != self.cross_attention_dim or pooled != self.pooled_dim:
            raise EmbeddingShapeError(f"the {text.label} is encoded in width {width} (pooled {pooled}), but "
                                      f"{self.model_id} takes {self.cross_attention_dim} (pooled {self.pooled_dim})")

    def set_seed(self, seed: int) -> None:
        """Start drawing images from another noise seed (new initial latents).

        Raises:
            GenerationError: not a whole number from 0 to 2**63 - 1.
        """
        if not isinstance(seed, (int, float)) or seed != int(seed) or not 0 <= int(seed) < 2 ** 63:
            raise GenerationError(f"a seed is a whole number from 0 to 2**63 - 1, not {seed!r}")
        with self._lock:
            old, self.seed = self.seed, int(seed)
            try:
                self._allocate(self.size)
            except Exception:
                self.seed = old
                raise

    def set_noise_mix(self, mix: float) -> None:
        """Initial latents between the seed's noise (``mix`` 0) and the next seed's (1), on the sphere: the
        composition drifts as ``mix`` moves (brain-state steering's ``seed`` target)."""
        mix = min(1.0, max(0.0, float(mix)))
        with self._lock:
            if abs(mix - self.noise_mix) < 1e-4:
                return
            a = self._noise(self.seed)
            b = self._noise(self.seed + 1)
            af, bf = a.flatten(), b.flatten()
            omega = torch.arccos(torch.clamp((af @ bf) / (af.norm() * bf.norm()), -1.0, 1.0))
            mixed = (torch.sin((1 - mix) * omega) * a + torch.sin(mix * omega) * b) / torch.sin(omega)
            self._latents = mixed.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
            self.noise_mix = mix
            self._graphs = {}

    def set_ip_adapter_scale(self, scale: float) -> None:
        """The IP-Adapter's strength from now on (0: the image embedding does nothing)."""
        with self._lock:
            if self.image_embed_dim is None or abs(float(scale) - self.ip_adapter_scale) < 1e-4:
                return
            self.pipe.set_ip_adapter_scale(float(scale))
            self.ip_adapter_scale = float(scale)
            self._graphs = {}  # (a CUDA graph holds the scale it was captured with)

    def _noise(self, seed: int) -> torch.Tensor:
        factor = int(self.pipe.vae_scale_factor)
        channels = int(self.pipe.unet.config.in_channels)
        return torch.randn((1, channels, self.size // factor, self.size // factor),
                           generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)

    # -- generating -----------------------------------------------------------------------------------

    def _inputs(self, prompt_embeds: torch.Tensor,
                pooled: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        shape = tuple(prompt_embeds.shape) if isinstance(prompt_embeds, torch.Tensor) else None
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] != self.cross_attention_dim:
            got = f"width {shape[-1]}" if shape else "no tensor"
            raise EmbeddingShapeError(
                f"prompt_embeds of shape {list(shape) if shape else type(prompt_embeds).__name__} ({got}) do not fit "
                f"{self.model_id}, whose UNet cross-attends to width {self.cross_attention_dim}: expected "
                f"[1, tokens, {self.cross_attention_dim}]")
        embeds = prompt_embeds.to(self.device, self.dtype, non_blocking=True)
        if self.pooled_dim is None:
            return embeds, None
        if pooled is None:
            if self.text is None and not self._pooled_notice:
                log.info("%s: no pooled embedding given; using zeros (width %d)", self.model_id, self.pooled_dim)
                self._pooled_notice = True
            return embeds, self._pooled_default
        if tuple(pooled.shape) != (1, self.pooled_dim):
            raise EmbeddingShapeError(f"pooled_prompt_embeds of shape {list(pooled.shape)} do not fit {self.model_id}: "
                                      f"expected [1, {self.pooled_dim}]")
        return embeds, pooled.to(self.device, self.dtype, non_blocking=True)

    def _loop_constants(self) -> None:
        """What the denoising loop adds to every UNet call, computed once per size."""
        cfg = self.pipe.unet.config
        self._timestep_cond = None
        if cfg.time_cond_proj_dim is not None:  # (guidance-distilled UNets take the scale as an embedding)
            w = torch.tensor(self.guidance - 1).repeat(1)
            self._timestep_cond = self.pipe.get_guidance_scale_embedding(
                w, embedding_dim=cfg.time_cond_proj_dim).to(self.device, self.dtype)
        self._time_ids = None
        if self.pooled_dim is not None:  # SDXL: original size, crop corner, target size
            self._time_ids = torch.tensor([[self.size, self.size, 0, 0, self.size, self.size]],
                                          device=self.device, dtype=self.dtype)
        self._accepts_generator = "generator" in inspect.signature(self.pipe.scheduler.step).parameters

    def _denoise(self, embeds: torch.Tensor, pooled: torch.Tensor | None,
                 image: torch.Tensor | None = None) -> torch.Tensor:
        """The pipeline's denoising loop for one image without its per-call bookkeeping (input checks, prompt
        handling, offloading lookups): the scheduler and UNet of ``pipe``, called as the pipeline calls them.
        ``image``: the IP-Adapter's image embedding [1, 1, P]. :meth:`_denoise_with_pipeline` gives the same
        latents (tested)."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(self.steps, device=self.device)
        latents = self._latents * scheduler.init_noise_sigma
        time_ids = self._time_ids
        if self.cfg:  # (negative first, as the pipeline batches them; the IP-Adapter's negative image is zeros)
            embeds, pooled, image = self._with_negative(embeds, pooled, image)
            time_ids = time_ids.repeat(2, 1) if time_ids is not None else None
        added = {"text_embeds": pooled, "time_ids": time_ids} if pooled is not None else {}
        if image is not None:
            added["image_embeds"] = [image]
        added = added or None
        step_kwargs = {"generator": self._rng} if self._accepts_generator else {}
        self._rng.manual_seed(self.seed)
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2) if self.cfg else latents, t)
            noise = self.pipe.unet(model_input, t, encoder_hidden_states=embeds, timestep_cond=self._timestep_cond,
                                   added_cond_kwargs=added, return_dict=False)[0]
            if self.cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + self.guidance * (cond - uncond)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
        return latents

    def _with_negative(self, embeds: torch.Tensor, pooled: torch.Tensor | None,
                       image: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The batch of two classifier-free guidance runs on: [negative, conditioning]."""
        negative = self._negative_embeds if self._negative_embeds is not None else torch.zeros_like(embeds)
        if negative.shape[1] != embeds.shape[1]:
            negative = torch.zeros_like(embeds)  # (a token count the negative prompt's encoding does not have)
        embeds = torch.cat([negative, embeds])
        if pooled is not None:
            negative_pooled = self._negative_pooled if self._negative_pooled is not None else torch.zeros_like(pooled)
            pooled = torch.cat([negative_pooled, pooled])
        if image is not None:
            image = torch.cat([torch.zeros_like(image), image])
        return embeds, pooled, image

    def _denoise_with_pipeline(self, embeds: torch.Tensor, pooled: torch.Tensor | None,
                               image: torch.Tensor | None = None) -> torch.Tensor:
        """The same through ``pipe.__call__`` (the reference :meth:`_denoise` is checked against)."""
        kwargs: dict[str, Any] = {"prompt_embeds": embeds}
        if pooled is not None:
            kwargs["pooled_prompt_embeds"] = pooled
        if image is not None:
            kwargs["ip_adapter_image_embeds"] = [image]
        if self.cfg:
            negative, negative_pooled, both_images = self._with_negative(embeds, pooled, image)
            kwargs["negative_prompt_embeds"] = negative[:1]
            if pooled is not None:
                kwargs["negative_pooled_prompt_embeds"] = negative_pooled[:1]
            if image is not None:
                kwargs["ip_adapter_image_embeds"] = [both_images]
        self._rng.manual_seed(self.seed)
        return self.pipe(**kwargs, height=self.size, width=self.size, num_inference_steps=self.steps,
                         guidance_scale=self.guidance, latents=self._latents, generator=self._rng,
                         output_type="latent", return_dict=False)[0]

    def _decode(self, latents: torch.Tensor):
        from PIL import Image

        latents = latents.to(self._vae_dtype)
        if self._scale != 1.0 or self._shift:
            latents = latents / self._scale + self._shift
        image = self.vae.decode(latents, return_dict=False)[0]  # [1, 3, H, W] in [-1, 1]
        pixels = (image[0].float() * 127.5 + 128.0).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        self._host.copy_(pixels)
        return Image.fromarray(self._host.numpy())  # (a copy: the buffer is reused next frame)

    @property
    def planned(self) -> bool:
        """Frames run as one planned computation (the ``graph``, ``int8`` and ``fp8`` back ends)."""
        return self.backend == "graph" or self.backend in QUANTIZED

    def _frame_graph(self, batch: int):
        """The frame graph for ``batch`` embeddings (made once per batch size and state); None when the scheduler
        cannot be planned (then this generator runs eagerly from now on, said once)."""
        graph = self._graphs.get(batch)
        if graph is None:
            try:
                graph = self._graphs[batch] = FrameGraph(self, batch)
            except PlanError as e:
                log.warning("%s: %s; frames run eagerly", self.model_id, e)
                self.backend = "eager"
                return None
        return graph

    def _run_planned(self, embeds: torch.Tensor, pooled: torch.Tensor | None,
                     image: torch.Tensor | None,
                     extra: torch.Tensor | None = None) -> tuple[list[GeneratedImage], list[float] | None] | None:
        """Frames of the rows of ``embeds`` in one planned call, and ``extra``'s values read back with them (see
        :meth:`generate_gated`; None without it); None if the frame cannot be planned. The whole frame is one
        computation: ``denoise_ms`` is all of it, ``decode_ms`` the conversion to PIL."""
        from PIL import Image

        graph = self._frame_graph(int(embeds.shape[0]))
        if graph is None:
            return None
        t0 = time.perf_counter()
        pixels, values = graph.run(embeds, pooled, image, extra)
        t1 = time.perf_counter()
        images = [Image.fromarray(row.numpy()) for row in pixels]  # (copies: the buffer is reused next frame)
        decode = (time.perf_counter() - t1) * 1000 / len(images)
        return [GeneratedImage(im, (t1 - t0) * 1000 / len(images), decode, self.size, self.seed)
                for im in images], values

    def _run(self, embeds: torch.Tensor, pooled: torch.Tensor | None,
             image: torch.Tensor | None = None) -> GeneratedImage:
        if self.planned:
            planned = self._run_planned(embeds, pooled, image)
            if planned is not None:
                return planned[0][0]
        # On CUDA the denoising time is read from events, so that the GPU is waited for only once, when the image
        # is copied to host memory; decode_ms is the rest of the call.
        t0 = time.perf_counter()
        if self._cuda:
            self._events[0].record()
        latents = self._denoise(embeds, pooled, image)
        if self._cuda:
            self._events[1].record()
        t1 = time.perf_counter()
        image = self._decode(latents)
        total = (time.perf_counter() - t0) * 1000
        denoise = self._events[0].elapsed_time(self._events[1]) if self._cuda else (t1 - t0) * 1000
        return GeneratedImage(image, denoise, total - denoise, self.size, self.seed)

    @torch.inference_mode()
    def generate(self, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor | None = None) -> GeneratedImage:
        """One image from ``prompt_embeds`` [1, tokens, cross_attention_dim] (77 tokens for SD models).

        SDXL models also take ``pooled_prompt_embeds`` [1, pooled_dim] (when not given: :attr:`text`'s, else zeros).
        The same embeddings and seed give the same image.

        Raises:
            EmbeddingShapeError: the embeddings do not fit the UNet (both widths named).
            GenerationError: CUDA ran out of memory even at 256 x 256.
        """
        with self._lock:  # (one image at a time: a stopping engine may still finish its frame)
            return self._generate(prompt_embeds, pooled_prompt_embeds)

    @torch.inference_mode()
    def generate_from_image_embeds(self, image_embeds: torch.Tensor, prompt_embeds: torch.Tensor | None = None,
                                   pooled_prompt_embeds: torch.Tensor | None = None) -> GeneratedImage:
        """One image from a CLIP image embedding [P] or [1, P] through the loaded IP-Adapter (the route that
        needs no fine-tuned UNet). The text side is ``prompt_embeds`` [1, tokens, cross_attention_dim] and
        ``pooled_prompt_embeds`` when given, else :attr:`text`'s (the encoded prompt, or the empty prompt), else
        zeros. The same embeddings and seed give the same image.

        Raises:
            EmbeddingShapeError: no IP-Adapter is loaded, or the embedding's width is not the adapter's (both
                widths named).
        """
        with self._lock:
            image = self._image_input(image_embeds)
            if prompt_embeds is None:
                prompt_embeds = self._no_prompt
            return self._generate(prompt_embeds, pooled_prompt_embeds, image)

    @torch.inference_mode()
    def generate_gated(self, prompt_embeds: torch.Tensor, gate: torch.Tensor,
                       image_embeds: torch.Tensor | None = None) -> tuple[GeneratedImage | None, list[float]]:
        """One image, made without waiting to know whether it is wanted: ``gate`` (a small tensor on the device,
        still being computed, such as the engine's finite flag and similarity) is read back with the pixels, in
        the frame's one wait for the device. Planned back ends only (:attr:`planned`); otherwise the gate is read
        first and ``(None, values)`` returned, for the caller to generate as usual. ``image_embeds``: the
        IP-Adapter route's CLIP embedding (then ``prompt_embeds`` is the text side, None: :attr:`text`'s).
        """
        with self._lock:
            if self.planned:
                image = self._image_input(image_embeds) if image_embeds is not None else None
                if prompt_embeds is None:
                    prompt_embeds = self._no_prompt
                embeds, pooled = self._inputs(prompt_embeds, None)
                planned = self._run_planned(embeds, pooled, image, extra=gate)
                if planned is not None:
                    return planned[0][0], planned[1]
            return None, gate.float().tolist()

    @torch.inference_mode()
    def generate_batch(self, prompt_embeds: torch.Tensor) -> list[GeneratedImage]:
        """Images of the rows of ``prompt_embeds`` [n, tokens, cross_attention_dim] (interpolation frames): in one
        UNet call per step on the planned back ends, one after another on ``eager``. Row ``i`` gives the image
        :meth:`generate` gives for ``prompt_embeds[i:i+1]``.

        Raises:
            EmbeddingShapeError: the embeddings do not fit the UNet.
        """
        rows = [prompt_embeds[i:i + 1] for i in range(int(prompt_embeds.shape[0]))]
        with self._lock:
            if self.planned and len(rows) > 1:
                for row in rows:
                    self._inputs(row, None)  # (checks every row's shape)
                embeds = prompt_embeds.to(self.device, self.dtype, non_blocking=True)
                pooled = None if self.pooled_dim is None else self._pooled_default
                try:
                    planned = self._run_planned(embeds, pooled, None)
                except torch.OutOfMemoryError:
                    planned = None  # (one at a time instead, with the out-of-memory handling of generate)
                    self._graphs.pop(len(rows), None)
                if planned is not None:
                    return planned[0]
            return [self._generate(row, None) for row in rows]

    def check_backend(self, reference: np.ndarray) -> int | None:
        """The largest pixel difference (0-255) of this back end's frame from ``reference``, the eager frame of
        :meth:`probe_pixels` made before the back end changed the weights; logged and kept in
        :attr:`backend_difference`. None on ``eager``."""
        if self.backend == "eager":
            return None
        got = self.probe_pixels()
        if self.backend == "eager":  # (it fell back while making the frame)
            return None
        self.backend_difference = int(np.abs(got.astype(np.int16) - reference.astype(np.int16)).max())
        log.info("%s back end '%s': largest pixel difference from eager %d of 255", self.model_id, self.backend,
                 self.backend_difference)
        return self.backend_difference

    def probe_pixels(self) -> np.ndarray:
        """The image (uint8 [H, W, 3]) of a fixed random embedding: what back ends are compared on."""
        width = self.image_embed_dim if self.image_embed_dim is not None else self.cross_attention_dim
        probe = torch.randn((1, width) if self.image_embed_dim is not None else (1, 77, width),
                            generator=torch.Generator("cpu").manual_seed(7))
        out = self.generate_from_image_embeds(probe) if self.image_embed_dim is not None else self.generate(probe)
        return np.asarray(out.image)

    def _image_input(self, image_embeds: torch.Tensor) -> torch.Tensor:
        if self.image_embed_dim is None:
            raise EmbeddingShapeError(f"{self.model_id} has no IP-Adapter loaded: a CLIP image embedding cannot "
                                      "condition it; load the generator with an IP-Adapter (--ip-adapter)")
        shape = tuple(image_embeds.shape) if isinstance(image_embeds, torch.Tensor) else None
        if shape is None or shape[-1] != self.image_embed_dim or image_embeds.numel() != self.image_embed_dim:
            raise EmbeddingShapeError(
                f"a CLIP image embedding of shape {list(shape) if shape else type(image_embeds).__name__} does not "
                f"fit the IP-Adapter of {self.model_id}, which takes width {self.image_embed_dim}: the EEG model's "
                "CLIP head must be trained against the image encoder the adapter expects")
        return image_embeds.reshape(1, 1, -1).to(self.device, self.dtype, non_blocking=True)

    def _generate(self, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor | None,
                  image: torch.Tensor | None = None) -> GeneratedImage:
        embeds, pooled = self._inputs(prompt_embeds, pooled_prompt_embeds)
        try:
            return self._run(embeds, pooled, image)
        except torch.OutOfMemoryError:
            pass  # (leave the except block first, so that the failed call's tensors can be freed)
        self._shrink_after_oom()
        try:
            return self._run(embeds, pooled, image)
        except torch.OutOfMemoryError:
            pass
        raise GenerationError(f"{self.device.type.upper()} ran out of memory generating {self.size}x{self.size} "
                              f"images with {self.model_id}; free GPU memory (close other programs) or use the CPU")

    def _shrink_after_oom(self) -> None:
        if self._cuda:
            torch.cuda.empty_cache()
        factor = int(self.pipe.vae_scale_factor)
        smaller = max(MIN_OOM_SIZE, self.size // 2 // factor * factor)
        if smaller >= self.size:
            raise GenerationError(f"{self.device.type.upper()} ran out of memory generating {self.size}x{self.size} "
                                  f"images with {self.model_id}; free GPU memory (close other programs) or use the CPU")
        log.warning("%s ran out of memory at %dx%d: generating at %dx%d from now on", self.device.type.upper(),
                    self.size, self.size, smaller, smaller)
        self._allocate(smaller)

    def warmup(self) -> None:
        """One image from zero embeddings: compiles, autotunes, and finds out-of-memory sizes before the session."""
        if self.image_embed_dim is not None:  # (a UNet with an IP-Adapter needs an image embedding every call)
            self.generate_from_image_embeds(torch.zeros(self.image_embed_dim))
        else:
            self.generate(torch.zeros(1, 77, self.cross_attention_dim))

    def __repr__(self) -> str:
        return (f"Generator({self.model_id!r}, {self.size}x{self.size}, {self.steps} step(s), "
                f"guidance {self.guidance:g}, "
                f"{self.device}, {str(self.dtype).removeprefix('torch.')}, seed {self.seed}"
                f"{', ' + self.text.label if self.text is not None else ''}"
                f"{', negative ' + repr(self.negative.prompt) if self.negative is not None else ''}"
                f"{', back end ' + self.backend if self.backend != 'eager' else ''}"
                f"{', untrained preview' if self.is_preview else ''})")


# -- loading --------------------------------------------------------------------------------------

def _encode_text_side(generator: Generator, resolved: ResolvedModel, prompt: str, *, required: bool,
                      progress: bool, negative: str | None = None) -> None:
    """Give ``generator`` the encoding of ``prompt`` (and of the ``negative`` prompt); a model without text encoders
    keeps zeros (said in one line) unless a prompt was asked for (``required``: the error is raised)."""
    try:
        folder = text_encoder_folder(resolved, progress=progress)
        generator.text_source = (folder, generator.kind)
        texts = encode_prompts(generator.pipe, folder, generator.kind,
                               [prompt] if negative is None else [prompt, negative])
        generator.set_text(texts[0])
        if negative is not None:
            generator.set_negative(texts[1])
    except (ModelNotAvailableError, ModelLoadError):
        if required:
            raise
        log.warning("%s has no text encoders to encode the empty prompt: its %s zeros", resolved.model_id,
                    "pooled embedding is" if generator.image_embed_dim is None else "text side is")


def _dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        dtype = DTYPES[str(name).lower().removeprefix("torch.")]
    except KeyError:
        raise GenerationError(f"unknown dtype '{name}'; use fp16, bf16 or fp32") from None
    if dtype == torch.float16 and device.type == "cpu":
        raise GenerationError("fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    return dtype


def _load_pipeline(resolved: ResolvedModel, dtype: torch.dtype):
    """The diffusers pipeline of ``resolved`` (on the CPU, in ``dtype``), without text encoder and tokenizer."""
    import diffusers
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    spec, folder = resolved.spec, resolved.folder
    check_pipeline_folder(folder, need_vae=resolved.vae_folder is None)
    pipeline_class = _pipeline_class(spec.kind)
    where = resolved.model_id if resolved.model_id == str(folder) else f"{resolved.model_id} ({folder})"
    try:
        # (Each component with the weights variant its folder holds; configs with keys these diffusers
        # classes do not take, and a vae that is not the AutoencoderKL the type hints name, are expected.)
        with quiet("diffusers.configuration_utils", "diffusers.pipelines.pipeline_utils",
                    "diffusers.models.modeling_utils"), _no_diffusers_progress_bar():
            unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype,
                                                        variant=weights_variant(folder, "unet"),
                                                        local_files_only=True)
            if resolved.vae_folder is not None:
                vae_folder = Path(resolved.vae_folder)
                missing = [f for f in ("config.json", "diffusion_pytorch_model.safetensors")
                           if not (vae_folder / f).is_file()]
                if missing:
                    raise ModelLoadError(f"decoder folder {vae_folder} lacks {', '.join(missing)}")
                vae = AutoencoderTiny.from_pretrained(vae_folder, dtype=dtype, local_files_only=True)
            else:
                vae_config = diffusers.AutoencoderKL.load_config(folder, subfolder="vae", local_files_only=True)
                vae_class = getattr(diffusers, vae_config.get("_class_name", "AutoencoderKL"), None)
                if vae_class is None or vae_class.__name__ not in ("AutoencoderKL", "AutoencoderTiny"):
                    raise ModelLoadError(f"{where}: the vae is a {vae_config.get('_class_name')}; generation supports "
                                         "AutoencoderKL and AutoencoderTiny")
                vae = vae_class.from_pretrained(folder, subfolder="vae", dtype=dtype,
                                                variant=weights_variant(folder, "vae"), local_files_only=True)
            pipe = pipeline_class.from_pretrained(folder, unet=unet, vae=vae, dtype=dtype, local_files_only=True,
                                                  **_unused_kwargs(pipeline_class))
    except ModelLoadError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ModelLoadError(f"cannot load the diffusion model {where}: {first_line(e)}") from e
    if spec.scheduler:
        pipe.scheduler = getattr(diffusers, spec.scheduler).from_config(pipe.scheduler.config)
    return pipe


@contextlib.contextmanager
def _no_diffusers_progress_bar():
    """No "Loading pipeline components" bar (only the scheduler is left to load by then)."""
    from diffusers.utils import logging as dlogging

    was_enabled = dlogging.is_progress_bar_enabled()
    dlogging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            dlogging.enable_progress_bar()


def _fuse_lora_folder(pipe, folder: Path, model_id: str) -> None:
    """Fuse the diffusers-format LoRA in ``folder`` (e.g. LCM-LoRA) into the UNet's weights."""
    try:
        with quiet("diffusers.loaders.lora_pipeline", "diffusers.loaders.peft"):
            pipe.load_lora_weights(str(folder), weight_name=DIFFUSERS_LORA_WEIGHTS, adapter_name="distillation")
            pipe.fuse_lora()
            pipe.unload_lora_weights()
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"cannot apply the LoRA in {folder} to {model_id}: {first_line(e)}") from e


def _apply_adapter(unet, adapter: str | os.PathLike) -> str:
    """Apply a fine-tuning checkpoint's UNet part (LoRA or cross-attention weights) and fuse it."""
    kind = load_unet_adapter(unet, adapter)
    if kind == "lora":
        unet.fuse_lora()
        unet.unload_lora()
    return kind


def _use_sdpa(unet) -> None:
    """Attention through ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0

    processors = unet.attn_processors
    keep = (AttnProcessor2_0, IPAdapterAttnProcessor2_0)  # (an IP-Adapter's processors already use SDPA)
    if processors and not all(isinstance(p, keep) for p in processors.values()):
        unet.set_attn_processor({name: p if isinstance(p, keep) else AttnProcessor2_0()
                                 for name, p in processors.items()})


def _pin(obj, **values: Any) -> None:
    """Replace read-only properties of ``obj`` (e.g. ``device``) by fixed ``values``, through a subclass made for it."""
    base = type(obj)
    if getattr(base, "_bci_dream_pinned", None) == values:
        return
    base = getattr(base, "_bci_dream_base", base)
    props = {name: property(lambda self, v=value: v) for name, value in values.items()}
    obj.__class__ = type(base.__name__, (base,), {**props, "__module__": base.__module__, "__doc__": base.__doc__,
                                                  "_bci_dream_base": base, "_bci_dream_pinned": values})


def pin_placement(pipe) -> None:
    """Fix where and in which precision ``pipe`` runs, for a pipeline that stays resident.

    diffusers answers ``pipe._execution_device``, ``unet.device`` and ``unet.dtype`` by first looking for
    offloading hooks in every submodule, on every call: several milliseconds of Python per image,
    more than a whole frame takes on a fast GPU. A resident pipeline is never offloaded or moved, so
    these become constants (call again after moving it).
    """
    unet = pipe.unet
    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    _pin(unet, device=device, dtype=dtype)
    _pin(pipe, _execution_device=device)


def prepare_pipeline(pipe, *, compile: bool | str = False):
    """Make a loaded pipeline (already on its device and in its dtype) fast for repeated single images.

    SDPA attention, a fixed device and dtype (:func:`pin_placement`), ``channels_last``
    UNet and decoder, eval mode, an fp32 vae where an ``AutoencoderKL``
    needs it (``force_upcast``), cuDNN autotuning on CUDA (a process-wide flag), and optionally
    ``torch.compile`` of the UNet and the decoder (True: mode ``"default"``; or a mode name).
    Returns ``pipe``.
    """
    _use_sdpa(pipe.unet)
    pin_placement(pipe)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    pipe.unet.eval()
    pipe.vae.eval()
    if pipe.unet.dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False) and \
            type(pipe.vae).__name__ == "AutoencoderKL":
        pipe.vae.to(torch.float32)  # (SDXL's KL vae overflows in fp16)
    if pipe.unet.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest convolutions once
    if compile:
        compile_pipeline(pipe, "default" if compile is True else str(compile))
    return pipe


def compile_pipeline(pipe, mode: str) -> None:
    """``torch.compile`` the UNet and the decoder of ``pipe`` in ``mode``."""
    pipe.unet.compile(mode=mode)
    (pipe.vae.decoder if hasattr(pipe.vae, "decoder") else pipe.vae).compile(mode=mode)


def apply_backend(generator: Generator, backend: str, compile: bool | str = False) -> None:
    """Switch ``generator`` (loaded eager) to ``backend`` (one :func:`~bci_dream.generation.backends.choose_backend`
    returned) and compare its first frame with the eager one, made before the back end changes the weights or
    kernels (int8 / fp8 quantize the UNet in place; compile and tensorrt compile it)."""
    reference = generator.probe_pixels()
    pipe = generator.pipe
    if backend in QUANTIZED:
        quantize_unet(pipe.unet, backend)
    elif backend == "compile":
        compile_pipeline(pipe, "reduce-overhead" if compile is True or not compile else str(compile))
        generator.compiled = True
    elif backend == "tensorrt":  # (the UNet through torch-tensorrt's torch.compile back end; frames run eagerly)
        pipe.unet.compile(backend="torch_tensorrt", dynamic=False,
                          options={"enabled_precisions": {generator.dtype}, "min_block_size": 1})
        generator.compiled = True
    generator.backend = backend
    generator.check_backend(reference)


def load_generator(model: str | os.PathLike = AUTO, *, device: str = "auto", size: int | None = None,
                   steps: int | None = None, seed: int = 0, compile: bool | str = False, dtype: str | None = None,
                   adapter: str | os.PathLike | None = None, guidance: float | None = None,
                   warmup: bool | None = None, progress: bool = True,
                   ip_adapter: str | os.PathLike | bool | None = None, ip_adapter_scale: float = 1.0,
                   prompt: str | None = None, negative_prompt: str | None = None, backend: str = "eager") -> Generator:
    """Load ``model`` onto ``device`` and keep it there (see the module docstring).

    Args:
        model: ``auto`` (SD-Turbo if cached or downloadable, else the ``tiny`` preview, said in one
            line), a name from :data:`bci_dream.generation.models.MODELS`, a hub id, or a folder.
        device: ``auto`` (CUDA when available; else the CPU, said once), ``cpu``, ``cuda``, ``cuda:1``...
        size: image side in pixels (default: the model's on CUDA, at most 256 on the CPU).
        steps, guidance: denoising steps and guidance scale (default: the model's).
        seed: the session's noise seed.
        compile: ``torch.compile`` the UNet and the decoder; True uses mode ``"default"``, a string names
            the mode (``"reduce-overhead"`` adds CUDA graphs, ``"max-autotune-no-cudagraphs"``...).
        dtype: ``fp16`` / ``bf16`` / ``fp32`` (default fp16 on CUDA, fp32 on the CPU).
        adapter: a fine-tuning checkpoint folder whose UNet part (``unet_lora/`` or
            ``unet_cross_attention.safetensors``) is applied and fused.
        warmup: generate one image at load (default: on CUDA or when compiling).
        progress: progress bars for downloads.
        ip_adapter: an IP-Adapter file (or its folder) to load, for :meth:`Generator.generate_from_image_embeds`;
            None: the model's own, if the registry gives it one (``sdxl-turbo-ip``, ``tiny-sdxl-ip``); False: none.
        ip_adapter_scale: the adapter's strength (1: as trained; 0: the image embedding does nothing).
        prompt: a text prompt beside the IP-Adapter's image embedding (and SDXL's pooled embedding), encoded once by
            the model's text encoders (:mod:`bci_dream.generation.text_prompt`). None: the empty prompt where the
            model needs a text side (an IP-Adapter, SDXL), else none; without text encoders that side is zeros,
            said in one line.
        negative_prompt: what classifier-free guidance steers away from (needs ``guidance`` above 1; with guidance
            above 1 and no negative prompt, the empty prompt's encoding, else zeros).
        backend: how frames run (:mod:`bci_dream.generation.backends`: ``auto``, ``eager``, ``graph``, ``compile``,
            ``int8``, ``fp8``, ``tensorrt``); one that cannot run here falls back, said in one line. The first frame
            of a non-eager back end is compared with the eager one (:meth:`Generator.check_backend`).

    Raises:
        ModelLoadError, ModelNotAvailableError, GenerationError, CheckpointError: one line each.
    """
    global _cpu_notice_given
    torch_device = resolve_device(device)
    torch_dtype = _dtype(dtype, torch_device)
    chosen, fallback = choose_backend(backend, torch_device)
    if fallback:
        log.warning("%s", fallback)
    if chosen == "compile" and not compile:
        compile = "reduce-overhead"
    resolved = resolve_model(model, progress=progress)
    spec: ModelSpec = resolved.spec
    if size is None:
        size = spec.size if torch_device.type == "cuda" else min(spec.size, CPU_SIZE)
        if device == "auto" and torch_device.type == "cpu" and not _cpu_notice_given:
            log.warning("no CUDA GPU: generating on the CPU at %dx%d%s", size, size,
                        f" (the model's {spec.size}x{spec.size} in real time needs a CUDA GPU)" if size < spec.size
                        else "")
            _cpu_notice_given = True

    pipe = _load_pipeline(resolved, torch_dtype)
    try:
        pipe.to(torch_device)
    except torch.OutOfMemoryError as e:
        raise ModelLoadError(f"the GPU ran out of memory loading {resolved.model_id}; free GPU memory (close other "
                             "programs) or use the CPU") from e
    if resolved.lora_folder is not None:
        _fuse_lora_folder(pipe, resolved.lora_folder, resolved.model_id)
    if adapter is not None:
        kind = _apply_adapter(pipe.unet, adapter)
        log.info("applied the fine-tuned UNet %s from %s", kind, adapter)
    if ip_adapter is None:
        ip_adapter = resolved.ip_adapter
    if ip_adapter:
        load_ip_adapter(pipe, ip_adapter, scale=ip_adapter_scale)
    prepare_pipeline(pipe, compile=False if chosen == "compile" else compile)
    generator = Generator(pipe, model_id=resolved.model_id, size=size, steps=spec.steps if steps is None else steps,
                          guidance=spec.guidance if guidance is None else guidance, seed=seed,
                          is_preview=resolved.is_preview)
    generator.notice = resolved.fallback
    generator.backend_requested = str(backend).lower()
    generator.compiled = bool(compile) and chosen != "compile"
    generator.resolved = resolved
    generator.ip_adapter_scale = generator.ip_adapter_base_scale = float(ip_adapter_scale)
    if negative_prompt and not generator.cfg:
        raise GenerationError(_NO_GUIDANCE.format(guidance=generator.guidance))
    if prompt or negative_prompt or generator.cfg or generator.pooled_dim is not None or \
            generator.image_embed_dim is not None:
        _encode_text_side(generator, resolved, prompt or "", required=bool(prompt or negative_prompt),
                          progress=progress, negative=negative_prompt or "" if generator.cfg else None)
    if chosen != "eager":
        apply_backend(generator, chosen, compile)
    if warmup or (warmup is None and (torch_device.type == "cuda" or compile)):
        t0 = time.perf_counter()
        generator.warmup()
        log.info("warm-up image in %.0f ms", (time.perf_counter() - t0) * 1000)
    log.info("%r", generator)
    return generator
