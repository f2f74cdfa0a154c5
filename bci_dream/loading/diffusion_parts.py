"""The frozen pieces of a Stable Diffusion pipeline that fine-tuning needs: UNet, vae, noise schedule."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bci_dream.loading.hub import ModelLoadError, is_local, load_from_folder_or_hub, quiet
from bci_dream.loading.pipeline_folder import check_pipeline_folder, weights_variant


@dataclass
class DiffusionParts:
    """The frozen base-model pieces fine-tuning needs (no text encoder, no tokenizer).

    Attributes:
        unet: ``UNet2DConditionModel``; ``unet.config.cross_attention_dim`` sets the conditioning width.
        vae: ``AutoencoderKL`` or ``AutoencoderTiny``.
        noise_scheduler: a ``DDPMScheduler`` built from the pipeline's scheduler config (its noise schedule).
        vae_kind: ``"kl"`` or ``"tiny"``.
        scheduler_config: the pipeline's own scheduler config (class, ``timestep_spacing`` ...): what the
            generator samples with.
    """

    unet: Any
    vae: Any
    noise_scheduler: Any
    vae_kind: str
    scheduler_config: dict = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type

    def inference_timesteps(self, steps: int, scheduler_class: str | None = None) -> list[int]:
        """The UNet timesteps the generator uses for ``steps`` denoising steps, read from the pipeline's scheduler
        config (SD-Turbo's trailing spacing, 1 step: [999]; an LCM scheduler, 4 steps: [999, 759, 499, 259]).

        ``scheduler_class``: a diffusers scheduler class the generator uses instead of the pipeline's (LCM-LoRA).
        """
        import diffusers

        config = dict(self.scheduler_config or self.noise_scheduler.config)
        name = scheduler_class or str(config.get("_class_name", "DDPMScheduler"))
        cls = getattr(diffusers, name, None) or diffusers.DDPMScheduler
        with quiet("diffusers.configuration_utils"):
            scheduler = cls.from_config(config)
        with warnings.catch_warnings():  # (diffusers' Euler schedulers hand numpy a tensor the old way)
            warnings.simplefilter("ignore", DeprecationWarning)
            scheduler.set_timesteps(int(steps))
        return [int(round(float(t))) for t in scheduler.timesteps]


def load_diffusion_parts(model: str | os.PathLike) -> DiffusionParts:
    """Load UNet, VAE (the class named by the vae config) and a DDPM noise scheduler from ``model``.

    ``model`` is a diffusers pipeline folder or a hub id (only the unet, vae and scheduler
    subfolders are read: no text encoder is downloaded).

    Raises:
        ModelLoadError: the folder is missing/incomplete, the hub cannot be reached, or the vae class
            is not ``AutoencoderKL``/``AutoencoderTiny``.
    """
    import diffusers
    from diffusers import DDPMScheduler, UNet2DConditionModel

    source = str(model)
    variants: dict[str, str | None] = {"unet": None, "vae": None}
    if is_local(source):
        source = str(Path(source).expanduser())
        check_pipeline_folder(source, need_model_index=False)
        variants = {sub: weights_variant(source, sub) for sub in variants}

    def load(local_files_only: bool) -> DiffusionParts:
        vae_config = diffusers.AutoencoderKL.load_config(source, subfolder="vae", local_files_only=local_files_only)
        vae_class = vae_config.get("_class_name", "AutoencoderKL")
        if vae_class not in ("AutoencoderKL", "AutoencoderTiny"):
            raise ModelLoadError(f"{source}: the vae is a {vae_class}; fine-tuning supports AutoencoderKL and "
                                 "AutoencoderTiny")
        # (AutoencoderTiny configs carry a block_out_channels key its constructor does not take;
        # SD-Turbo's Euler scheduler config has keys DDPMScheduler does not take: both expected.)
        with quiet("diffusers.configuration_utils"):
            vae = getattr(diffusers, vae_class).from_pretrained(source, subfolder="vae", variant=variants["vae"],
                                                                local_files_only=local_files_only)
            noise_scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler",
                                                            local_files_only=local_files_only)
            scheduler_config = dict(DDPMScheduler.load_config(source, subfolder="scheduler",
                                                              local_files_only=local_files_only))
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", variant=variants["unet"],
                                                    local_files_only=local_files_only)
        return DiffusionParts(unet, vae, noise_scheduler, "tiny" if vae_class == "AutoencoderTiny" else "kl",
                              scheduler_config)

    parts = load_from_folder_or_hub(source, "diffusion model", load)
    if parts.prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ModelLoadError(f"{source}: unknown prediction_type {parts.prediction_type!r}")
    parts.vae.requires_grad_(False).eval()
    parts.unet.requires_grad_(False)
    return parts
