"""The settings of pretraining and fine-tuning runs, without torch: the command line takes its defaults from here."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.generation.models import MODELS, image_encoder_of, resolve_model
from bci_dream.models.encoder_config import PRESETS


@dataclass(frozen=True)
class PretrainSettings:
    """Hyper-parameters of a pretraining run (stored in the checkpoint's meta)."""
    preset: str = "small"
    max_steps: int = 10_000
    batch_size: int = 32
    lr: float = 2.5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    mask_ratio: float = 0.75
    hop_s: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ
    notch: float | None = defaults.NOTCH_HZ
    precision: str = defaults.PRECISION  # bf16 autocast where the device has bf16 arithmetic (models.precision)


#: Fine-tuning objectives: ``auto`` (``inference`` for few-step models, else ``denoise``), ``inference`` (the
#: generator's own timesteps, loss on the predicted clean latent), ``denoise`` (DreamDiffusion's: uniform timesteps,
#: loss on the noise / velocity).
OBJECTIVES = ("auto", "inference", "denoise")
#: CLIP alignment losses: ``cosine`` (1 − cosine to the image shown), ``infonce`` (contrastive, the other training
#: images as negatives, learned temperature), ``both`` (their sum).
ALIGNMENTS = ("cosine", "infonce", "both")
#: The routes a model is fine-tuned for (retrieval uses the ip-adapter route's CLIP head).
TRAINING_ROUTES = defaults.ROUTES[:2]


class FinetuneError(BciDreamError):
    """Fine-tuning cannot start: bad settings, or an output folder that holds something else."""


@dataclass(frozen=True)
class FinetuneSettings:
    """Hyper-parameters of a fine-tuning run (stored in the checkpoint's meta).

    Attributes:
        model: diffusers pipeline folder, hub id, or a name from ``bci-dream models list`` (UNet, VAE, scheduler are
            read from it; a name is made local, and on the ip-adapter route gives its IP-Adapter and image encoder).
        clip_model: transformers CLIP folder, hub id, or hub id with a subfolder (vision tower with projection +
            image processor); None: the model's image encoder on the ip-adapter route, else
            :data:`~bci_dream.core.defaults.CLIP_MODEL` (:func:`with_model_defaults`).
        preset: encoder preset when no ``init`` checkpoint is given.
        lora_rank, lora_alpha: LoRA on the cross-attention projections (alpha defaults to the rank).
        full_cross_attention: train the ``attn2`` weights themselves instead of a LoRA adapter.
        train_encoder: also train the EEG encoder (False: only the heads, the channel adapter and the UNet adapter;
            None: train it when it was not pretrained, i.e. without ``init``: a random encoder's features are not
            worth keeping; on the known-answer benchmark a frozen random encoder reached 60 % where a trained one
            reached 100 %).
        channel_adapter: add (if the model has none) and train a per-subject channel adapter in front of the
            encoder (:class:`~bci_dream.models.eeg_model.ChannelAdapter`).
        clip_weight, diffusion_weight: weights of the two losses (0 skips that loss's computation; without the
            diffusion loss the UNet and the VAE are not used at all: heads and channel adapter only).
        objective: the diffusion loss, one of :data:`OBJECTIVES`.
        inference_steps: the generator's denoising steps the ``inference`` objective trains at (None: the model's
            default, from the registry or its scheduler config).
        alignment: the CLIP loss, one of :data:`ALIGNMENTS`.
        ridge_init: start the CLIP head from the closed-form ridge regression of the CLIP embeddings on the
            encoder's mean token (a fast baseline with few trials; then trained from there).
        freeze_unet: no UNet adapter: the diffusion loss trains the EEG side only.
        resolution: image side in pixels for the VAE (images are resized and centre-cropped).
        val_fraction: share of the pairs held out to report the validation CLIP cosine.
        epoch_s: training epochs' length in seconds: the encoder is resized to take windows this long (rounded to
            whole patches; its token-shaped heads start afresh), and the live windows are then this long too. None:
            the ``init`` (or preset) encoder's own window.
        offset_s: the epochs start this long after each onset (saved in the checkpoint; evaluation uses it).
        device: the compute device (``--gpu``): ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        checkpoint_every, eval_every: steps between checkpoints and between validations.
        select_best: keep the weights of the validation (step 0, the ridge start, included) with the best held-out
            identification, not those of the last step (only with validation windows).
        adapter_by_validation: generation uses the UNet's LoRA adapter only when it lowers the held-out diffusion
            loss against the same UNet without it (only with validation windows; else it is used).
        route: the conditioning route the model is trained for: ``dreamdiffusion`` (the conditioning head, the
            diffusion loss) or ``ip-adapter`` (the CLIP head alone, for a frozen model's IP-Adapter: no diffusion
            loss, no UNet adapter).
        ip_adapter: for the ``ip-adapter`` route, the IP-Adapter the model will condition (its image-embedding width
            is checked against the CLIP model's; its path is saved for the live commands).
    """
    model: str = defaults.DIFFUSION_MODEL
    clip_model: str | None = None
    preset: str = "small"
    lora_rank: int = 8
    lora_alpha: float | None = None
    full_cross_attention: bool = False
    train_encoder: bool | None = None
    channel_adapter: bool = True
    clip_weight: float = 1.0
    diffusion_weight: float = 1.0
    objective: str = "auto"
    inference_steps: int | None = None
    alignment: str = "both"
    ridge_init: bool = True
    freeze_unet: bool = False
    max_steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    resolution: int = 512
    val_fraction: float = defaults.VALIDATION_FRACTION
    epoch_s: float | None = defaults.EPOCH_S
    offset_s: float = defaults.EPOCH_OFFSET_S
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    eval_every: int = 100
    select_best: bool = True
    adapter_by_validation: bool = True
    route: str = "dreamdiffusion"
    ip_adapter: str | None = None

    def check(self) -> None:
        """Raise :class:`FinetuneError` naming the first setting out of range."""
        if self.max_steps < 1:
            raise FinetuneError(f"--max-steps must be at least 1, not {self.max_steps}")
        if self.batch_size < 1:
            raise FinetuneError(f"--batch-size must be at least 1, not {self.batch_size}")
        if not self.lr > 0:
            raise FinetuneError(f"--lr must be positive, not {self.lr}")
        if not self.full_cross_attention and self.lora_rank < 1:
            raise FinetuneError(f"--lora-rank must be at least 1, not {self.lora_rank}")
        if self.clip_weight < 0 or self.diffusion_weight < 0 or self.clip_weight + self.diffusion_weight == 0:
            raise FinetuneError("--clip-weight and --diffusion-weight must be >= 0 and not both 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise FinetuneError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if self.resolution < 8 or self.resolution % 8:
            raise FinetuneError(f"--resolution must be a multiple of 8, not {self.resolution}")
        if self.objective not in OBJECTIVES:
            raise FinetuneError(f"unknown --objective '{self.objective}'; choose {', '.join(OBJECTIVES)}")
        if self.alignment not in ALIGNMENTS:
            raise FinetuneError(f"unknown --alignment '{self.alignment}'; choose {', '.join(ALIGNMENTS)}")
        if self.inference_steps is not None and self.inference_steps < 1:
            raise FinetuneError(f"--inference-steps must be at least 1, not {self.inference_steps}")
        if self.epoch_s is not None and not (math.isfinite(self.epoch_s) and self.epoch_s > 0):
            raise FinetuneError(f"--epoch must be a positive number of seconds, not {self.epoch_s}")
        if not math.isfinite(self.offset_s):
            raise FinetuneError(f"--offset must be a number of seconds, not {self.offset_s}")
        if self.route not in TRAINING_ROUTES:
            raise FinetuneError(f"unknown --route '{self.route}'; choose {', '.join(TRAINING_ROUTES)}")
        if self.route == "ip-adapter" and self.clip_weight <= 0:
            raise FinetuneError("--route ip-adapter trains the CLIP head: --clip-weight must be above 0")
        if self.preset not in PRESETS:
            raise FinetuneError(f"unknown --preset '{self.preset}'; presets: {', '.join(PRESETS)}")


def with_model_defaults(settings: FinetuneSettings, *, progress: bool = True) -> FinetuneSettings:
    """``settings`` with a registry ``model`` name made local (its pipeline folder; downloaded if need be) and, on
    the ip-adapter route, the model's IP-Adapter and image encoder where ``ip_adapter`` / ``clip_model`` are not
    given (``sdxl-turbo-ip``: h94's ip-adapter_sdxl_vit-h and its ViT-H/14); ``clip_model`` else the default.

    Raises:
        ModelNotAvailableError: the registry model is not cached and cannot be downloaded now (one line).
    """
    model, ip_adapter, clip_model = settings.model, settings.ip_adapter, settings.clip_model
    if model in MODELS:
        resolved = resolve_model(model, progress=progress)
        model = str(resolved.folder)
        if settings.route == "ip-adapter":
            if ip_adapter is None and resolved.ip_adapter is not None:
                ip_adapter = str(resolved.ip_adapter)
            clip_model = clip_model or image_encoder_of(resolved)
    return replace(settings, model=model, ip_adapter=ip_adapter, clip_model=clip_model or defaults.CLIP_MODEL)
