"""The diffusion loss of fine-tuning, fitted to the generator it serves.

``denoise`` is DreamDiffusion's: a timestep drawn uniformly from the whole schedule and the UNet's noise (or
velocity) prediction compared with the truth. A distilled generator (SD-Turbo, 1 step at t=999; LCM, 4 steps)
only ever runs at a few timesteps, where uniform draws almost never land. ``inference`` trains exactly there: a
timestep of the generator's own (read from the pipeline's scheduler config, e.g. [999] for SD-Turbo), and the
loss on the clean latent the UNet's prediction implies — the image the generator would show.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bci_dream.generation.models import spec_for_repo
from bci_dream.loading.diffusion_parts import DiffusionParts
from bci_dream.training.settings import FinetuneSettings

log = logging.getLogger(__name__)

#: Models with at most this many steps are "few-step": ``auto`` picks the ``inference`` objective for them.
FEW_STEPS = 4


def generator_steps(settings: FinetuneSettings, parts: DiffusionParts) -> tuple[int | None, str | None]:
    """(denoising steps, scheduler class) the generator uses for ``settings.model``: the settings' own, the
    registry's for a known hub id, 1 for a trailing-spacing Euler/DDIM pipeline (SD-Turbo's), 4 for an LCM one;
    (None, None) when unknown."""
    spec = spec_for_repo(str(settings.model))
    steps = settings.inference_steps or (spec.steps if spec else None)
    scheduler_class = spec.scheduler if spec else None
    if steps is None:
        config = parts.scheduler_config
        if config.get("_class_name") == "LCMScheduler":
            steps = 4
        elif config.get("timestep_spacing") == "trailing":
            steps = 1
    return steps, scheduler_class


def resolve_objective(settings: FinetuneSettings, parts: DiffusionParts) -> tuple[str, list[int]]:
    """The objective to train with and, for ``inference``, the timesteps it trains at."""
    steps, scheduler_class = generator_steps(settings, parts)
    objective = settings.objective
    if objective == "auto":
        objective = "inference" if steps is not None and steps <= FEW_STEPS else "denoise"
    if objective == "denoise":
        return objective, []
    if steps is None:
        log.warning("%s: its generator's steps are unknown; training at 1 step (pass --inference-steps N)",
                    settings.model)
        steps = 1
    return objective, parts.inference_timesteps(steps, scheduler_class)


def denoising_loss(unet, noise_scheduler, latents: torch.Tensor, prompt_embeds: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """Mean squared error of the UNet's prediction on noised ``latents`` [B, 4, h, w] given ``prompt_embeds``
    [B, 77, D] at uniform timesteps; the target is the noise (``epsilon``), the velocity (``v_prediction``) or
    the clean latents (``sample``), as the scheduler's config says."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b,), generator=generator)
    timesteps = timesteps.to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    kind = noise_scheduler.config.prediction_type
    target = noise if kind == "epsilon" else latents if kind == "sample" else \
        noise_scheduler.get_velocity(latents, noise, timesteps)
    pred = unet(noisy, timesteps, encoder_hidden_states=prompt_embeds.to(noisy.dtype)).sample
    return F.mse_loss(pred.float(), target.float())


def clean_latent_loss(unet, noise_scheduler, latents: torch.Tensor, prompt_embeds: torch.Tensor,
                      timesteps: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Mean squared error between ``latents`` [B, 4, h, w] and the clean latent the UNet's prediction implies at
    one of the generator's ``timesteps`` (drawn per trial), noised as the generator's first step sees it."""
    b = latents.shape[0]
    choice = torch.tensor(list(timesteps), dtype=torch.long)[torch.randint(0, len(timesteps), (b,),
                                                                           generator=generator)]
    t = choice.to(latents.device)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    pred = unet(noisy, t, encoder_hidden_states=prompt_embeds.to(noisy.dtype)).sample.float()
    alpha = noise_scheduler.alphas_cumprod.to(latents.device)[t].float().view(b, 1, 1, 1)
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        x0 = (noisy.float() - (1 - alpha).sqrt() * pred) / alpha.sqrt()
    elif kind == "v_prediction":
        x0 = alpha.sqrt() * noisy.float() - (1 - alpha).sqrt() * pred
    else:
        x0 = pred
    return F.mse_loss(x0, latents.float())
