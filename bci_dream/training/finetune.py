"""Fine-tuning on EEG–image pairs (DreamDiffusion stage 2) against a pretrained Stable Diffusion.

The EEG model's conditioning head turns a window into ``prompt_embeds`` [B, 77, D] (D read from the
UNet's config) that replace the text in the UNet's cross-attention. Two losses:

- diffusion (:mod:`bci_dream.training.objective`): the frozen VAE encodes the image shown and noise is added.
  ``inference`` (the default for few-step generators such as SD-Turbo): at the generator's own timesteps, read
  from the pipeline's scheduler config, compared on the clean latent the UNet's prediction implies. ``denoise``
  (DreamDiffusion's): a uniform timestep, the noise (or velocity) prediction compared.
- CLIP alignment (:mod:`bci_dream.training.alignment`): ``1 - cosine`` between the EEG model's CLIP head and the
  frozen CLIP image embedding (``CLIPVisionModelWithProjection(...).image_embeds``) of the image shown, and/or
  InfoNCE against the other training images with a learned temperature; the CLIP head starts from a closed-form
  ridge fit.

Without the diffusion loss (``diffusion_weight`` 0) neither the UNet nor the VAE is used: the heads and the channel
adapter train alone, fast on a CPU.

Trained: the conditioning and CLIP heads always; a per-subject channel adapter in front of the encoder
(identity at the start) unless ``channel_adapter`` is off; the UNet's cross-attention (``attn2``) through a
LoRA adapter (peft) or, with ``full_cross_attention``, its full weights; the encoder only with
``train_encoder``. The VAE, CLIP and the rest of the UNet stay frozen.

A fine-tuning checkpoint folder holds:

- ``config.json`` + ``model.safetensors``: the EEG model (:func:`bci_dream.models.checkpoint.save_checkpoint`;
  its meta names the base model, the CLIP model and the steps);
- the UNet's trained part: ``unet_lora/`` (a LoRA adapter, in peft's and diffusers' layouts) or
  ``unet_cross_attention.safetensors`` (:mod:`bci_dream.loading.unet_adapter` writes and applies both);
- ``training_state.pt`` (optimizer, schedule, step) for ``resume``, and ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from bci_dream.core.errors import BciDreamError, CheckpointError
from bci_dream.core.files import write_atomically
from bci_dream.io.image_file import read_image
from bci_dream.loading.compute_device import resolve_device
from bci_dream.loading.diffusion_parts import DiffusionParts, load_diffusion_parts
from bci_dream.loading.ip_adapter import ip_adapter_file
from bci_dream.loading.unet_adapter import (
    CROSS_ATTENTION_FILE,
    LORA_FOLDER,
    add_lora,
    cross_attention_parameters,
    has_unet_adapter,
    load_unet_adapter,
    save_unet_adapter,
)
from bci_dream.loading.vision_models import load_clip_vision
from bci_dream.models.channel_naming import saved_naming
from bci_dream.models.checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
    load_checkpoint,
    load_training_state,
    read_config,
    save_checkpoint,
)
from bci_dream.models.eeg_model import EegModel, EegModelConfig
from bci_dream.models.encoder_config import preset as encoder_preset
from bci_dream.models.window_spec import samples_for, with_window
from bci_dream.signal.channels import ChannelNaming
from bci_dream.training.alignment import (
    LearnedTemperature,
    fit_ridge,
    infonce_loss,
    install_ridge,
    pairwise_identification,
)
from bci_dream.training.alignment import cosine_loss as clip_loss
from bci_dream.training.objective import clean_latent_loss, denoising_loss, resolve_objective
from bci_dream.training.pairs import Pair, epoch_overlap, pairs_to_arrays, read_pairs
from bci_dream.training.pretrain import NonFiniteLossError, lr_factor
from bci_dream.training.settings import FinetuneError, FinetuneSettings, with_model_defaults
from bci_dream.training.windows import WindowSpec, window_spec_for

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

STAGE = "finetune"
METRICS_FILE = "metrics.jsonl"
#: The validation score model selection maximises (see :meth:`Finetuner.validate`).
SELECTION_METRIC = "val_identification"


class FinetuneCancelled(BciDreamError):
    """Fine-tuning was cancelled; the run was checkpointed and resumes when started again."""


@dataclass
class FinetuneResult:
    """What a run did: where it saved, how far it got, its last losses and validation score."""

    output: Path
    steps: int
    loss: float
    diffusion_loss: float
    clip_loss: float
    val_clip_cosine: float | None
    n_train: int
    n_val: int
    val_class_accuracy: float | None = None
    val_class_chance: float | None = None


# -- the EEG model ----------------------------------------------------------------------------------

def build_eeg_model(cross_attention_dim: int, clip_projection_dim: int, *, init: str | os.PathLike | None = None,
                    preset: str = "small", channel_adapter: bool = False) -> EegModel:
    """The EEG model to fine-tune: the ``init`` checkpoint's (encoder kept; a head whose width does
    not match ``cross_attention_dim``/``clip_projection_dim`` is created afresh, and a channel adapter added as
    the identity when asked for) or a fresh ``preset``."""
    if init is None:
        return EegModel(EegModelConfig(encoder=encoder_preset(preset), cross_attention_dim=cross_attention_dim,
                                       clip_projection_dim=clip_projection_dim, channel_adapter=channel_adapter))
    loaded, _ = load_checkpoint(init)
    old = loaded.config
    adapter = channel_adapter or old.channel_adapter
    if old.cross_attention_dim == cross_attention_dim and old.clip_projection_dim == clip_projection_dim and \
            old.channel_adapter == adapter:
        return loaded
    config = dataclasses.replace(old, cross_attention_dim=cross_attention_dim, clip_projection_dim=clip_projection_dim,
                                 channel_adapter=adapter)
    model = EegModel(config)
    fresh = [name for name, before, now in (("conditioning", old.cross_attention_dim, cross_attention_dim),
                                           ("clip", old.clip_projection_dim, clip_projection_dim)) if before != now]
    if adapter and not old.channel_adapter:
        fresh.append("channel_adapter")
    keep = {k: v for k, v in loaded.state_dict().items() if not k.startswith(tuple(f + "." for f in fresh))}
    model.load_state_dict(keep, strict=False)
    log.info("%s: new %s head(s) for cross-attention width %d and CLIP width %d", init, " and ".join(fresh),
             cross_attention_dim, clip_projection_dim)
    return model


# -- images ---------------------------------------------------------------------------------------

def image_to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """RGB image → [3, R, R] float in [-1, 1]: shorter side resized to R (bicubic), centre-cropped."""
    from PIL import Image

    w, h = image.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return x / 127.5 - 1.0


@dataclass
class ImageTargets:
    """Per distinct image, what the losses compare against (computed once; VAE and CLIP are frozen).

    Attributes:
        latent_mean: [M, 4, R/8, R/8] latent mean (scaled like the UNet's latents).
        latent_std: [M, 4, R/8, R/8] latent standard deviation (zero for ``AutoencoderTiny``).
        clip: [M, P] CLIP image embeddings.
    """

    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    clip: torch.Tensor

    def latents(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A sample of the latent distribution of images ``index`` [B] → [B, 4, h, w]."""
        mean, std = self.latent_mean[index], self.latent_std[index]
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        return mean + std * eps


@torch.no_grad()
def encode_images(paths: Sequence[Path], parts: DiffusionParts, clip_model, clip_processor, resolution: int,
                  device: torch.device, batch_size: int = 16, *, latents: bool = True) -> ImageTargets:
    """VAE latent distributions (with ``latents``; else empty) and CLIP embeddings of ``paths`` (each image once)."""
    vae = parts.vae.to(device) if latents else None
    clip_model = clip_model.to(device)
    sf = float(getattr(parts.vae.config, "scaling_factor", 1.0) or 1.0)
    shift = float(getattr(parts.vae.config, "shift_factor", 0.0) or 0.0)
    means, stds, clips = [], [], []
    for i in range(0, len(paths), batch_size):
        images = [read_image(p) for p in paths[i:i + batch_size]]
        clip_in = clip_processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        clips.append(clip_model(pixel_values=clip_in).image_embeds.float().cpu())
        if vae is None:
            continue
        pixels = torch.stack([image_to_tensor(im, resolution) for im in images]).to(device)
        if parts.vae_kind == "tiny":
            mean = vae.encode(pixels).latents
            std = torch.zeros_like(mean)
        else:
            dist = vae.encode(pixels).latent_dist
            mean, std = dist.mean, dist.std
        means.append(((mean.float() - shift) * sf).cpu())
        stds.append((std.float() * sf).cpu())
    empty = torch.zeros(0)
    return ImageTargets(torch.cat(means).to(device) if means else empty, torch.cat(stds).to(device) if stds else empty,
                        torch.cat(clips).to(device))


# -- the trainer ----------------------------------------------------------------------------------

@dataclass
class PairData:
    """EEG windows and which image target each one has.

    Attributes:
        eeg: float32 [N, C, T] windows (CPU).
        mask: bool [N, C] channel masks.
        image_index: int64 [N] index into the distinct images.
        images: the M distinct image paths.
        labels: N class labels (or None).
        train, val: int64 indices of the training and validation windows.
    """

    eeg: torch.Tensor
    mask: torch.Tensor
    image_index: torch.Tensor
    images: list[Path]
    labels: list[str | None]
    train: torch.Tensor
    val: torch.Tensor


def prepare_pairs(pairs: Sequence[Pair], spec: WindowSpec, val_fraction: float, seed: int,
                  offset_s: float = 0.0, naming: ChannelNaming | None = None) -> PairData:
    """Windows for ``pairs`` and a seeded train/validation split (at least one training window)."""
    eeg, mask, images, labels = pairs_to_arrays(pairs, spec, offset_s=offset_s, naming=naming)
    distinct = sorted(set(images), key=str)
    where = {p: i for i, p in enumerate(distinct)}
    n = len(images)
    n_val = min(round(n * val_fraction), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return PairData(torch.from_numpy(eeg), torch.from_numpy(mask),
                    torch.tensor([where[p] for p in images], dtype=torch.long), distinct, list(labels),
                    train=order[n_val:].sort().values, val=order[:n_val].sort().values)


class Finetuner:
    """One fine-tuning run: base models, EEG model, data, optimizer; :meth:`train` runs it.

    Build it, then call :meth:`train`. Attributes worth inspecting: ``eeg_model``, ``parts`` (UNet,
    VAE, noise scheduler), ``clip_model``, ``data`` (:class:`PairData`), ``step``.
    """

    def __init__(self, pairs: str | os.PathLike, output: str | os.PathLike, settings: FinetuneSettings, *,
                 init: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
                 naming: ChannelNaming | None = None) -> None:
        settings.check()
        settings = with_model_defaults(settings)
        self.settings, self.output, self.pairs_path = settings, Path(output), Path(pairs)
        self.init = Path(init) if init is not None else None
        has_checkpoint = (self.output / CONFIG_FILE).is_file()
        if resume and not has_checkpoint:
            raise FinetuneError(f"nothing to resume in {self.output} (no {CONFIG_FILE}); drop --resume to start")
        if has_checkpoint and not resume and not overwrite:
            raise FinetuneError(f"{self.output} already holds a checkpoint; pass --resume to continue it or "
                                "--overwrite to start again there")
        if resume:
            self._check_resumable()
        pairs_list = read_pairs(self.pairs_path)  # fail on a bad manifest before loading big models
        torch.manual_seed(settings.seed)  # fresh heads and LoRA matrices: the same for the same seed
        self.device = resolve_device(settings.device)
        self.parts = load_diffusion_parts(settings.model)
        self.clip_model, self.clip_processor = load_clip_vision(settings.clip_model, device="cpu")
        cross_dim = int(self.parts.unet.config.cross_attention_dim)
        clip_dim = int(self.clip_model.config.projection_dim)
        if settings.ip_adapter is not None:
            check_adapter_width(settings.ip_adapter, clip_dim, settings.clip_model)

        if resume:
            self.eeg_model, _ = load_checkpoint(self.output)
            self._check_same_epochs()
        else:
            model = build_eeg_model(cross_dim, clip_dim, init=self.init, preset=settings.preset,
                                    channel_adapter=settings.channel_adapter)
            if settings.epoch_s is not None:
                model = with_window(model, samples_for(settings.epoch_s, model.config))
            self.eeg_model = model
        cfg = self.eeg_model.config
        if cfg.cross_attention_dim != cross_dim or cfg.clip_projection_dim != clip_dim:
            raise CheckpointError(f"{self.output} conditions a UNet of width {cfg.cross_attention_dim} and CLIP width "
                                  f"{cfg.clip_projection_dim}, but {settings.model} / {settings.clip_model} need "
                                  f"{cross_dim} / {clip_dim}; resume with the same base models")

        if naming is None and resume:
            naming = saved_naming(read_config(self.output))
        self.naming = naming
        spec = window_spec_for(cfg)
        self.data = prepare_pairs(pairs_list, spec, settings.val_fraction, settings.seed, settings.offset_s, naming)
        trained = self.data.mask[self.data.train].any(0).numpy()
        self.eeg_model.config = cfg = dataclasses.replace(cfg, preprocessing=dataclasses.replace(
            cfg.preprocessing, epoch_offset_s=settings.offset_s,
            channels=tuple(n for n, present in zip(spec.montage.names, trained) if present)))
        overlap = epoch_overlap(pairs_list, cfg.encoder.window_seconds, settings.offset_s)
        if overlap:
            log.warning("%s", overlap)
        self.uses_unet = settings.diffusion_weight > 0 and settings.route == "dreamdiffusion"
        if settings.route == "ip-adapter" and settings.diffusion_weight > 0:
            log.info("route ip-adapter: the CLIP head is trained alone (no diffusion loss, the UNet stays frozen)")
        self.objective, self.train_timesteps = resolve_objective(settings, self.parts) if self.uses_unet else \
            ("none", [])
        self.targets = encode_images(self.data.images, self.parts, self.clip_model, self.clip_processor,
                                     settings.resolution, self.device, latents=self.uses_unet)
        self.parts.vae.to("cpu")  # not needed any more: latents are cached
        self.clip_model.to("cpu")
        train_images = sorted({int(i) for i in self.data.image_index[self.data.train]})
        #: InfoNCE's candidates: the distinct training images; ``_candidate_of[image]`` their row.
        self._candidates = torch.tensor(train_images, dtype=torch.long)
        self._candidate_of = torch.full((len(self.data.images),), -1, dtype=torch.long)
        self._candidate_of[self._candidates] = torch.arange(len(train_images))
        self.temperature = LearnedTemperature().to(self.device)
        log.info("fine-tuning objective: %s%s; alignment: %s", self.objective,
                 f" at timesteps {self.train_timesteps}" if self.train_timesteps else "", settings.alignment)

        unet = self.parts.unet
        self.unet_mode = "none" if not self.uses_unet or settings.freeze_unet else \
            "full-cross-attention" if settings.full_cross_attention else "lora"
        if resume and has_unet_adapter(self.output):
            kind = load_unet_adapter(unet, self.output)
            if kind != self.unet_mode:
                raise FinetuneError(f"{self.output} was trained with {kind}; resume it with the same options")
        elif resume and self.unet_mode != "none":
            raise FinetuneError(f"{self.output} was trained without a UNet adapter; resume it with the same options")
        if self.unet_mode == "none":
            unet_params = []
        elif settings.full_cross_attention:
            unet_params = list(cross_attention_parameters(unet).values())
            for p in unet_params:
                p.requires_grad_(True)
        elif resume:
            unet_params = [p for n, p in unet.named_parameters() if "lora_" in n]
            for p in unet_params:
                p.requires_grad_(True)
        else:
            unet_params = add_lora(unet, settings.lora_rank, settings.lora_alpha)
        if self.uses_unet:
            unet.to(self.device).train()
        self.eeg_model.to(self.device)

        enc = self.eeg_model.encoder
        enc.requires_grad_(False)
        self.train_encoder = self._trains_encoder(resume)
        if self.train_encoder:
            for p in enc.encoder_parameters():
                p.requires_grad_(True)
        eeg_params = [p for p in self.eeg_model.parameters() if p.requires_grad]
        if settings.alignment != "cosine" and settings.clip_weight > 0:
            eeg_params.append(self.temperature.log_scale)
        self.unet_params = unet_params
        self.trainable = eeg_params + unet_params
        self.optimizer = torch.optim.AdamW(self.trainable, lr=settings.lr, weight_decay=settings.weight_decay)
        warmup = min(settings.warmup_steps, max(1, settings.max_steps // 10))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, settings.max_steps))
        self.step = 0
        self.saved_step: int | None = None
        self.ridge: dict[str, float] = {}
        self._token_cache: torch.Tensor | None = None
        #: the best validation so far: {"step", "score", "weights"} (weights: the trainable tensors then)
        self.best: dict | None = None
        self.selection: dict | None = None  # what select_best chose, for the meta
        self.adapter_used = self.unet_mode != "none"  # (False: held-out pairs said the UNet adapter does not help)
        self.adapter_choice: dict[str, float] | None = None
        self._last_weights: dict[str, torch.Tensor] | None = None  # the last step's, while the best are installed
        if resume:
            self._load_training_state()
        else:
            self._clear_previous_run()
            if settings.ridge_init and settings.clip_weight > 0 and self.eeg_model.clip is not None:
                self._start_clip_head_from_ridge()

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _trains_encoder(self, resume: bool) -> bool:
        """``settings.train_encoder``, or when it is None: whether the encoder is untrained (no ``init`` now, nor in
        the run being resumed)."""
        if self.settings.train_encoder is not None:
            return self.settings.train_encoder
        init = read_config(self.output).get("meta", {}).get("init") if resume else self.init
        return init is None

    def _check_same_epochs(self) -> None:
        """A resumed run cuts its epochs as the run it continues did."""
        cfg, s = self.eeg_model.config, self.settings
        saved_length = cfg.encoder.window_seconds
        if s.epoch_s is not None and samples_for(s.epoch_s, cfg) != cfg.encoder.n_samples:
            raise FinetuneError(f"{self.output} was trained on {saved_length:g} s epochs; resume it with "
                                f"--epoch {saved_length:g}, or start a new output folder for {s.epoch_s:g} s")
        if abs(cfg.preprocessing.epoch_offset_s - s.offset_s) > 1e-9:
            raise FinetuneError(f"{self.output} was trained on epochs from {cfg.preprocessing.epoch_offset_s:g} s "
                                f"after each onset; resume it with --offset {cfg.preprocessing.epoch_offset_s:g}")

    def _check_resumable(self) -> None:
        raw = read_config(self.output)
        meta = raw.get("meta", {})
        if meta.get("stage") != STAGE:
            raise FinetuneError(f"{self.output} holds a checkpoint that is not a fine-tuning run; choose another "
                                "output folder")
        for key, now in (("base_model", self.settings.model), ("clip_model", self.settings.clip_model)):
            if meta.get(key) not in (None, now):
                log.warning("%s was fine-tuned from %s=%s; resuming with %s", self.output, key, meta.get(key), now)

    def _clear_previous_run(self) -> None:
        """Remove what an earlier run left in the output folder (only the files fine-tuning writes)."""
        for name in (METRICS_FILE, CROSS_ATTENTION_FILE, STATE_FILE):
            (self.output / name).unlink(missing_ok=True)
        if (self.output / LORA_FOLDER).is_dir():
            shutil.rmtree(self.output / LORA_FOLDER)

    @torch.no_grad()
    def _start_clip_head_from_ridge(self) -> None:
        """Fit the CLIP head in closed form: ridge regression of the training images' unit CLIP embeddings on the
        frozen encoder's mean token (penalty by cross-validation), installed as the head's starting point."""
        train = self.data.train
        # (at step 0 the channel adapter is the identity: the frozen encoder's tokens are the input's either way)
        tokens = self._frozen_tokens(train) if not self._input_learns else self._embed_windows(train)
        targets = F.normalize(self.targets.clip[self.data.image_index[train].to(self.device)].float(), dim=-1)
        w, b, penalty = fit_ridge(tokens.float().mean(1).cpu().numpy(), targets.cpu().numpy(), seed=self.settings.seed)
        install_ridge(self.eeg_model.clip, w, b)
        self.ridge = {"ridge_penalty": penalty}
        log.info("CLIP head started from a ridge fit on %d trials (penalty %g)", len(train), penalty)

    def _load_training_state(self) -> None:
        state = load_training_state(self.output)
        raw = read_config(self.output)
        if state is None:
            self.step = int(raw.get("meta", {}).get("steps", 0))
            log.warning("%s has weights but no training state; continuing from step %d with a fresh optimizer",
                        self.output, self.step)
        else:
            try:
                self.optimizer.load_state_dict(state["optimizer"])
                self.scheduler.load_state_dict(state["scheduler"])
                if "log_temperature_scale" in state:
                    self.temperature.log_scale.data.fill_(float(state["log_temperature_scale"]))
                self.best = state.get("best")
                if "last_weights" in state:  # the saved weights are the selected ones: go on from the last step's
                    self._install(state["last_weights"])
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"the training state in {self.output} does not fit this run ({e}); "
                                      "resume with the same options or start a new output folder") from e
            self.step = int(state["step"])
        self.saved_step = self.step
        _truncate_metrics(self.output / METRICS_FILE, self.step)
        log.warning("resuming %s from step %d", self.output, self.step)

    # -- model selection ------------------------------------------------------------------------------

    def _trainable_weights(self) -> dict[str, torch.Tensor]:
        """Copies (on the CPU) of everything this run trains, by name (``eeg.``, ``unet.``, ``temperature``)."""
        weights = {f"eeg.{n}": p.detach().cpu().clone()
                   for n, p in self.eeg_model.named_parameters() if p.requires_grad}
        if self.unet_params:
            trained = {id(p) for p in self.unet_params}
            weights.update({f"unet.{n}": p.detach().cpu().clone() for n, p in self.parts.unet.named_parameters()
                            if id(p) in trained})
        weights["temperature"] = self.temperature.log_scale.detach().cpu().clone()
        return weights

    @torch.no_grad()
    def _install(self, weights: dict[str, torch.Tensor]) -> None:
        eeg = dict(self.eeg_model.named_parameters())
        unet = dict(self.parts.unet.named_parameters()) if self.unet_params else {}
        for name, value in weights.items():
            if name == "temperature":
                self.temperature.log_scale.copy_(value)
            elif name.startswith("eeg."):
                eeg[name[4:]].copy_(value)
            else:
                unet[name[5:]].copy_(value)

    def _consider(self, scores: dict[str, float]) -> None:
        """Remember the weights of this validation if it is the best so far (``select_best``)."""
        metric = SELECTION_METRIC if SELECTION_METRIC in scores else "val_clip_cosine"
        if not self.settings.select_best or metric not in scores:
            return
        if self.best is None or scores[metric] > self.best["score"] + 1e-9:
            self.best = {"step": self.step, "metric": metric, "score": float(scores[metric]),
                         "weights": self._trainable_weights()}

    def _select(self, last: dict[str, float]) -> dict[str, float]:
        """At the end: install the best validation's weights when they beat the last step's; returns the scores
        of the weights kept."""
        best = self.best
        if best is None or best["step"] == self.step or best["score"] <= last.get(best["metric"], -math.inf):
            if best is not None:
                self.selection = {"metric": best["metric"], "selected_step": self.step,
                                  "score": last.get(best["metric"])}
            return last
        self._last_weights = self._trainable_weights()
        self._install(best["weights"])
        kept = self.validate()
        self.selection = {"metric": best["metric"], "selected_step": best["step"], "score": best["score"],
                          "last_step_score": last.get(best["metric"])}
        log.info("kept the weights of step %d (%s %.3f) over those of the last step %d (%.3f)", best["step"],
                 best["metric"], best["score"], self.step, last.get(best["metric"], float("nan")))
        return kept

    def meta(self, scores: dict[str, float]) -> dict:
        s = self.settings
        return {"stage": STAGE, "base_model": s.model, "clip_model": s.clip_model, "steps": self.step,
                "adapter": self.unet_mode, "encoder_trained": self.train_encoder, "objective": self.objective,
                "timesteps": self.train_timesteps,
                "alignment": s.alignment if s.clip_weight > 0 else "none",
                "temperature": 1.0 / float(self.temperature().detach()), **self.ridge,
                "resolution": s.resolution, "pairs": str(self.pairs_path),
                "init": str(self.init) if self.init else None, "n_train": len(self.data.train),
                "n_val": len(self.data.val), **scores, "settings": asdict(s),
                "channel_naming": self.naming.to_dict() if self.naming is not None else None,
                "selection": self.selection, "adapter_used": self.adapter_used, "adapter_choice": self.adapter_choice,
                "route": s.route, "ip_adapter": str(Path(s.ip_adapter).resolve()) if s.ip_adapter else None}

    def save(self, scores: dict[str, float] | None = None) -> None:
        """Write the EEG model, the UNet adapter and the training state to the output folder."""
        self.output.mkdir(parents=True, exist_ok=True)
        if self.unet_mode != "none":
            save_unet_adapter(self.parts.unet, self.output,
                              full_cross_attention=self.unet_mode == "full-cross-attention")
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "log_temperature_scale": float(self.temperature.log_scale.detach())}
        if self.best is not None:
            state["best"] = self.best
        if self._last_weights is not None:
            state["last_weights"] = self._last_weights
        save_checkpoint(self.output, self.eeg_model, training_state=state, meta=self.meta(scores or {}))
        self.saved_step = self.step

    # -- the losses -----------------------------------------------------------------------------------

    def batch_indices(self, step: int) -> torch.Tensor:
        """Training windows of ``step``: epochs of a seeded permutation, a function of the step alone
        (so a resumed run sees the same batches as an uninterrupted one)."""
        train = self.data.train
        n, b = len(train), min(self.settings.batch_size, len(train))
        per_epoch = max(1, n // b)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch))
        return train[perm[i * b:(i + 1) * b]]

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def losses(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, diffusion, clip) losses on windows ``index`` [B]; a skipped loss is 0."""
        s = self.settings
        x = self.data.eeg[index].to(self.device, non_blocking=True)
        mask = self.data.mask[index].to(self.device, non_blocking=True)
        images = self.data.image_index[index].to(self.device)
        zero = torch.zeros((), device=self.device)
        with self._autocast():
            tokens = self.eeg_model.embed(x, mask) if self._input_learns else self._frozen_tokens(index)
            diffusion = clip = zero
            if self.uses_unet:
                prompt_embeds = self.eeg_model.conditioning(tokens)
                latents = self.targets.latents(images, generator)
                if self.objective == "inference":
                    diffusion = clean_latent_loss(self.parts.unet, self.parts.noise_scheduler, latents, prompt_embeds,
                                                  self.train_timesteps, generator)
                else:
                    diffusion = denoising_loss(self.parts.unet, self.parts.noise_scheduler, latents, prompt_embeds,
                                               generator)
            if s.clip_weight > 0:
                eeg_clip = self.eeg_model.clip(tokens)
                if s.alignment in ("cosine", "both"):
                    clip = clip + clip_loss(eeg_clip, self.targets.clip[images])
                if s.alignment in ("infonce", "both"):
                    candidates = self.targets.clip[self._candidates.to(self.device)]
                    clip = clip + infonce_loss(eeg_clip, candidates, self._candidate_of[images.cpu()].to(self.device),
                                         self.temperature())
        return s.diffusion_weight * diffusion + s.clip_weight * clip, diffusion, clip

    @property
    def _input_learns(self) -> bool:
        """The encoder or a channel adapter in front of it learns (else the encoder's tokens never change)."""
        return self.train_encoder or self.eeg_model.channel_adapter is not None

    @torch.no_grad()
    def _embed_windows(self, index: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Tokens [len(index), L, D] of windows ``index``, in batches, the encoder in eval mode, no gradients."""
        was_training = self.eeg_model.encoder.training
        self.eeg_model.encoder.eval()
        parts = []
        for i in range(0, len(index), batch_size):
            rows = index[i:i + batch_size]
            with self._autocast():
                parts.append(self.eeg_model.embed(self.data.eeg[rows].to(self.device),
                                                  self.data.mask[rows].to(self.device)))
        self.eeg_model.encoder.train(was_training)
        return torch.cat(parts)

    def _frozen_tokens(self, index: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's tokens of windows ``index``, computed once per window and kept (nothing in front
        of the encoder learns, so they never change): a heads-only run pays for the encoder once, not per step."""
        if self._token_cache is None:
            self._token_cache = self._embed_windows(torch.arange(len(self.data.eeg)))
        return self._token_cache[index.to(self._token_cache.device)]

    @torch.no_grad()
    def validate(self, batch_size: int = 64) -> dict[str, float]:
        """Scores of the EEG CLIP head on the validation windows (empty without validation windows).

        ``val_clip_cosine``: mean cosine to the CLIP embedding of the image shown. With two or more
        class labels also ``val_class_accuracy``: how often the nearest class prototype (the mean
        normalised CLIP embedding of that class's images) is the right class, and
        ``val_class_chance``, the share of the most frequent class (what always guessing it scores). With two or
        more distinct images ``val_identification``: how often the image shown is nearer the window's CLIP
        embedding than another image of the pairs, over all the others (chance 0.5): the selection score.
        """
        val = self.data.val
        if len(val) == 0:
            return {}
        was_training = self.eeg_model.training
        self.eeg_model.eval()
        tokens = self._frozen_tokens(val) if not self._input_learns else self._embed_windows(val, batch_size)
        with self._autocast():
            pred = self.eeg_model.clip(tokens).float()
        self._set_train_mode(was_training)
        shown = self.data.image_index[val].to(self.device)
        target = self.targets.clip[shown]
        scores = {"val_clip_cosine": float(F.cosine_similarity(pred, target.float(), dim=-1).mean())}
        if len(self.data.images) >= 2:
            scores["val_identification"] = pairwise_identification(pred, self.targets.clip.float(), shown)
        labels = self.data.labels
        classes = sorted({lb for lb in labels if lb is not None})
        if len(classes) >= 2 and all(labels[i] is not None for i in val.tolist()):
            embeds = F.normalize(self.targets.clip.float(), dim=-1)
            protos = torch.stack([F.normalize(embeds[sorted({int(self.data.image_index[i]) for i, lb in
                                                             enumerate(labels) if lb == c})].mean(0), dim=0)
                                  for c in classes])
            guess = (F.normalize(pred, dim=-1) @ protos.T).argmax(1).cpu()
            truth = torch.tensor([classes.index(labels[i]) for i in val.tolist()])
            scores["val_class_accuracy"] = float((guess == truth).float().mean())
            scores["val_class_chance"] = float(torch.bincount(truth).max()) / len(truth)
        if self.uses_unet:
            scores["val_diffusion_loss"] = self._held_out_diffusion_loss(tokens, val, batch_size)
            if self.unet_mode == "lora":
                self.parts.unet.disable_adapters()
                try:
                    scores["val_diffusion_loss_without_adapter"] = self._held_out_diffusion_loss(tokens, val,
                                                                                                 batch_size)
                finally:
                    self.parts.unet.enable_adapters()
        return scores

    @torch.no_grad()
    def _held_out_diffusion_loss(self, tokens: torch.Tensor, val: torch.Tensor, batch_size: int) -> float:
        """The diffusion loss of this run's objective on the validation windows (tokens [V, L, D]), with the same
        noise at every validation, so that two validations (or the UNet with and without its adapter) compare."""
        generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + 104_729)
        total = 0.0
        was_training = self.parts.unet.training
        self.parts.unet.eval()
        for i in range(0, len(val), batch_size):
            rows = val[i:i + batch_size]
            with self._autocast():
                embeds = self.eeg_model.conditioning(tokens[i:i + batch_size])
                latents = self.targets.latents(self.data.image_index[rows].to(self.device), generator)
                if self.objective == "inference":
                    loss = clean_latent_loss(self.parts.unet, self.parts.noise_scheduler, latents, embeds,
                                             self.train_timesteps, generator)
                else:
                    loss = denoising_loss(self.parts.unet, self.parts.noise_scheduler, latents, embeds, generator)
            total += float(loss) * len(rows)
        self.parts.unet.train(was_training)
        return total / len(val)

    def _choose_adapter(self, scores: dict[str, float]) -> None:
        """Keep the UNet's LoRA adapter for generation only when it lowers the held-out diffusion loss (with
        ``adapter_by_validation`` and validation windows); the choice and both losses go into the meta."""
        with_adapter = scores.get("val_diffusion_loss")
        without = scores.get("val_diffusion_loss_without_adapter")
        if not self.settings.adapter_by_validation or with_adapter is None or without is None:
            return
        self.adapter_used = with_adapter < without
        self.adapter_choice = {"val_diffusion_loss": with_adapter, "val_diffusion_loss_without_adapter": without}
        if not self.adapter_used:
            log.warning("the UNet adapter does not lower the held-out diffusion loss (%.4f with it, %.4f without): "
                        "generation will use the UNet as it was (the adapter stays in the folder, unused)",
                        with_adapter, without)

    def _set_train_mode(self, training: bool = True) -> None:
        self.eeg_model.train(training)
        if not self.train_encoder:
            self.eeg_model.encoder.eval()  # frozen: no training-mode behaviour

    # -- the loop -------------------------------------------------------------------------------------

    def train(self, progress: bool = True, on_step: Callable[[dict[str, float]], None] | None = None,
              cancel: threading.Event | None = None) -> FinetuneResult:
        """Run until ``max_steps``; checkpoints every ``checkpoint_every`` steps and at the end.

        Args:
            progress: show a progress bar.
            on_step: called after every step with that step's metrics record (``step``, ``max_steps``,
                ``loss``, ``pairs_per_s``, ``seconds_left`` ...), on the training thread.
            cancel: when set, the run saves a checkpoint after the current step and raises
                :class:`FinetuneCancelled` (starting again with ``resume`` continues from there).

        Raises:
            NonFiniteLossError: a loss became NaN/infinite (nothing is saved; the last checkpoint stays).
            FinetuneCancelled: ``cancel`` was set.
        """
        from tqdm.auto import tqdm

        s = self.settings
        self.output.mkdir(parents=True, exist_ok=True)
        self._set_train_mode(True)
        scores: dict[str, float] = {}
        loss_v = diff_v = clip_v = float("nan")
        bar = tqdm(total=s.max_steps, initial=self.step, desc="finetune", unit="step", disable=not progress)
        with open(self.output / METRICS_FILE, "a") as metrics:
            if self.step == 0:
                scores = self.validate()
                if scores:
                    metrics.write(json.dumps({"step": 0, **scores}) + "\n")
                self._consider(scores)
            started, seen, first_step = time.perf_counter(), 0, self.step
            while self.step < s.max_steps:
                index = self.batch_indices(self.step)
                generator = torch.Generator().manual_seed(s.seed * 1_000_003 + 7919 * (self.step + 1))
                loss, diffusion, clip = self.losses(index, generator)
                loss_v, diff_v, clip_v = float(loss.detach()), float(diffusion.detach()), float(clip.detach())
                if not math.isfinite(loss_v):
                    bar.close()
                    kept = (f"the last good checkpoint in {self.output} (step {self.saved_step}) was kept"
                            if self.saved_step is not None else "no checkpoint had been written yet")
                    raise NonFiniteLossError(
                        f"the loss became {loss_v} at step {self.step + 1} (diffusion {diff_v}, clip {clip_v}); "
                        f"training stopped and {kept} (try a lower --lr)")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                seen += len(index)
                elapsed = time.perf_counter() - started
                record = {"step": self.step, "loss": loss_v, "diffusion_loss": diff_v, "clip_loss": clip_v,
                          "lr": self.scheduler.get_last_lr()[0], "pairs_per_s": seen / elapsed if elapsed else 0.0}
                last = self.step == s.max_steps
                if self.step % s.eval_every == 0 or last:
                    scores = self.validate()
                    record.update(scores)
                    self._consider(scores)
                    if last:
                        scores = self._select(scores)
                        self._choose_adapter(scores)
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                if on_step is not None:
                    per_step = elapsed / (self.step - first_step)
                    on_step({**record, "max_steps": s.max_steps, "seconds_left": per_step * (s.max_steps - self.step)})
                if cancel is not None and cancel.is_set() and not last:
                    bar.close()
                    self.save(scores)
                    raise FinetuneCancelled(f"fine-tuning cancelled at step {self.step} of {s.max_steps}; it was "
                                            f"saved in {self.output} and resumes from there when started again")
                bar.update(1)
                postfix = {"loss": f"{loss_v:.4f}"}
                if "val_clip_cosine" in scores:
                    postfix["val_cos"] = f"{scores['val_clip_cosine']:.3f}"
                bar.set_postfix(postfix)
                if self.step % s.checkpoint_every == 0 or last:
                    self.save(scores)
        bar.close()
        if self.saved_step != self.step:  # max_steps already reached when resuming
            self.save(scores)
        return FinetuneResult(self.output, self.step, loss_v, diff_v, clip_v, scores.get("val_clip_cosine"),
                              len(self.data.train), len(self.data.val), scores.get("val_class_accuracy"),
                              scores.get("val_class_chance"))


def check_adapter_width(ip_adapter: str | os.PathLike, clip_dim: int, clip_model: str) -> None:
    """Raise :class:`FinetuneError` when the IP-Adapter's image-embedding width is not the CLIP model's (both
    named): the CLIP head would predict embeddings the adapter cannot take."""
    from safetensors import SafetensorError, safe_open

    path = ip_adapter_file(ip_adapter)
    try:
        with safe_open(str(path), framework="pt") as f:
            width = int(f.get_slice("image_proj.proj.weight").get_shape()[1])
    except (OSError, SafetensorError, KeyError, IndexError) as e:
        raise FinetuneError(f"cannot read the image projection of the IP-Adapter {path}: {e}") from e
    if width != clip_dim:
        raise FinetuneError(f"the IP-Adapter {path.name} takes CLIP image embeddings of width {width}, but "
                            f"{clip_model} embeds images in width {clip_dim}; give the CLIP model of the adapter's "
                            "image encoder (ViT-H/14 for the SDXL and plus adapters)")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            continue
    write_atomically(path, lambda p: p.write_text("".join(x + "\n" for x in keep)))


def finetune(pairs: str | os.PathLike, output: str | os.PathLike, settings: FinetuneSettings, *,
             init: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool = True, on_step: Callable[[dict[str, float]], None] | None = None,
             cancel: threading.Event | None = None, naming: ChannelNaming | None = None) -> FinetuneResult:
    """Fine-tune on the pairs manifest ``pairs`` and save to the folder ``output`` (see the module docstring).

    ``on_step`` and ``cancel``: see :meth:`Finetuner.train`. ``naming``: what the recordings' channels are; it is
    saved in the checkpoint, and the live path and evaluation use it for streams it fits.
    """
    finetuner = Finetuner(pairs, output, settings, init=init, resume=resume, overwrite=overwrite, naming=naming)
    return finetuner.train(progress, on_step=on_step, cancel=cancel)
