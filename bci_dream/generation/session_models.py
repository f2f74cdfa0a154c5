"""Everything a live session generates with, loaded together: the diffusion model, the EEG model that
conditions it, and that model's prompt encoder on the generator's device.

The desktop app (on a worker thread) and the headless commands both load through
:func:`load_generation_models`; the app passes its current models to reuse a generator whose settings stay
the same.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from bci_dream.core import defaults
from bci_dream.core.errors import CheckpointError
from bci_dream.generation.generator import Generator, load_generator
from bci_dream.generation.image_bank import SUBJECT_BANK, ImageBank, build_bank, load_bank
from bci_dream.generation.models import AUTO, MODELS
from bci_dream.loading.unet_adapter import has_unet_adapter
from bci_dream.models.channel_naming import saved_naming
from bci_dream.models.checkpoint import load_checkpoint, model_config, read_config
from bci_dream.models.eeg_model import EegModel, EegModelConfig
from bci_dream.models.encoder_config import preset
from bci_dream.models.prompt_encoder import PromptEncoder
from bci_dream.models.subject_profile import PROFILE, checkpoint_of, load_profile
from bci_dream.signal.channels import ChannelNaming

log = logging.getLogger(__name__)

#: Meta stages of checkpoints whose conditioning was trained on EEG-image pairs.
TRAINED_STAGES = ("finetune", "calibrate")
ROUTES = defaults.ROUTES
CLIP_ROUTES = ROUTES[1:]


@dataclass(frozen=True)
class RouteChoice:
    """The route the user asks for (the command line's ``--route``, ``--ip-adapter``, ``--bank`` ...).

    Attributes:
        route: one of :data:`ROUTES`, or None: the checkpoint's (its meta ``route``), else ``ip-adapter`` when an
            IP-Adapter is given, else ``dreamdiffusion``.
        ip_adapter: the IP-Adapter file or folder (None: the one the checkpoint names, if any).
        ip_adapter_scale: its strength.
        prompt: the text prompt (on the ip-adapter route beside the image embedding; None: the empty prompt).
        negative_prompt: what classifier-free guidance steers away from (with a guidance scale above 1).
        bank: an image bank: a ``.safetensors`` file or a folder of images (None: a calibrated subject's stimuli
            on the CLIP routes, when the checkpoint is a subject folder that has them; else none).
        clip_model: the CLIP model a folder bank is embedded with (None: the checkpoint's).
    """

    route: str | None = None
    ip_adapter: str | None = None
    ip_adapter_scale: float = 1.0
    prompt: str | None = None
    negative_prompt: str | None = None
    bank: str | None = None
    clip_model: str | None = None


@dataclass
class GenerationModels:
    """What generation needs, loaded together.

    Attributes:
        generator: the resident diffusion pipeline.
        eeg_model: encoder + conditioning head, its width the generator's cross-attention width.
        untrained: the conditioning is random (no checkpoint, or one that was never fine-tuned): labelled.
        encoder: the :class:`PromptEncoder` of ``eeg_model`` on the generator's device.
        adapter: the checkpoint folder whose fine-tuned UNet adapter is fused into the generator, or None.
        checkpoint: the EEG checkpoint (or subject folder) loaded, or None.
        channel_naming: the channel naming the checkpoint was trained with (for streams whose labels do not say),
            or None.
        training: one line on how the EEG model was trained and how it scored on held-out trials
            (:func:`describe_training`), shown beside the model's name.
        route: the conditioning route (:data:`ROUTES`); bank: its image bank, or None.
    """

    generator: Generator
    eeg_model: EegModel
    untrained: bool
    encoder: PromptEncoder
    adapter: str | None
    checkpoint: Path | None = None
    channel_naming: ChannelNaming | None = None
    training: str = "EEG model untrained"
    route: str = "dreamdiffusion"
    bank: ImageBank | None = None


def describe_training(checkpoint: str | os.PathLike | None) -> str:
    """``"EEG model: objective inference (t=999), alignment both, UNet none, 300 steps; held-out 4-way 0.95 (chance
    0.25, p = 1e-09)"`` from a checkpoint's meta and, for a subject folder, its profile's validation."""
    if checkpoint is None:
        return "EEG model untrained"
    raw = read_config(checkpoint_of(checkpoint))
    meta = raw.get("meta", {})
    stage = meta.get("stage")
    if stage not in TRAINED_STAGES:
        return f"EEG model: {'imported from ' + str(meta['source_file']) if meta.get('source_file') else stage}" \
               + ("" if meta.get("source_file") else ", conditioning untrained")
    timesteps = meta.get("timesteps") or []
    objective = meta.get("objective", "denoise")
    if meta.get("route") in CLIP_ROUTES:  # (the CLIP head alone: no diffusion objective, no UNet adapter)
        parts = [f"for the {meta['route']} route", f"alignment {meta.get('alignment', 'cosine')}"]
    else:
        unused = " (unused: no lower held-out loss)" if meta.get("adapter_used") is False else ""
        parts = [f"objective {objective}" + (f" (t={','.join(map(str, timesteps))})" if timesteps else ""),
                 f"alignment {meta.get('alignment', 'cosine')}", f"UNet {meta.get('adapter', 'lora')}{unused}"]
    parts += [f"{meta.get('steps', '?')} steps on {meta.get('n_train', '?')} trials", _epochs(raw)]
    selection = meta.get("selection") or {}
    if selection.get("selected_step") not in (None, meta.get("steps")):
        parts.append(f"kept step {selection['selected_step']} (best held-out {selection['metric']})")
    text = "EEG model: " + ", ".join(parts)
    validation = meta.get("validation") or {}
    if (Path(checkpoint) / PROFILE).is_file():
        validation = load_profile(checkpoint).validation
    if validation.get("accuracy") is not None:
        text += (f"; held-out {validation['n_way']}-way {validation['accuracy']:.2f} (chance "
                 f"{validation['chance']:.2f}, p = {validation['p_value']:.2g})")
    elif meta.get("val_class_accuracy") is not None:
        text += f"; held-out class accuracy {meta['val_class_accuracy']:.2f} (chance {meta['val_class_chance']:.2f})"
    else:
        text += "; no held-out score"
    return text


def _epochs(raw: dict) -> str:
    """``"epochs 1 s from +0 s on 8 channels"``: the window specification a checkpoint was trained on."""
    try:
        config = model_config(raw, "the checkpoint")
    except CheckpointError:
        return "epochs unknown"
    pre = config.preprocessing
    channels = f" on {len(pre.channels)} channels" if pre.channels else ""
    return f"epochs {config.encoder.window_seconds:g} s from {pre.epoch_offset_s:+g} s{channels}"


def unet_adapter_of(checkpoint: str | os.PathLike | None) -> str | None:
    """The checkpoint (or subject folder) whose fine-tuned UNet adapter the generator must apply, or None."""
    if checkpoint is None:
        return None
    folder = checkpoint_of(checkpoint)
    if not has_unet_adapter(folder) or read_config(folder).get("meta", {}).get("adapter_used") is False:
        return None  # (False: the held-out pairs said the adapter does not help; it stays in the folder, unused)
    return str(folder)


def eeg_model_for(cross_attention_dim: int, checkpoint: str | os.PathLike | None = None, *,
                  preset_name: str = "small", seed: int = 0, clip_width: int | None = None) -> tuple[EegModel, bool]:
    """The EEG model to condition a UNet of ``cross_attention_dim`` (or, with ``clip_width``, to predict CLIP
    embeddings of that width: the CLIP routes): from ``checkpoint`` (or a subject folder) when given, else a randomly
    initialised ``preset_name`` model. Returns (model, untrained_conditioning).

    Raises:
        CheckpointError: the checkpoint cannot be read or lacks the head the route needs.
    """
    if checkpoint is None:
        torch.manual_seed(seed)
        log.warning("no EEG checkpoint given: the conditioning is untrained (images do not follow the EEG yet)")
        if clip_width is not None:
            return EegModel(EegModelConfig(preset(preset_name), cross_attention_dim=None,
                                           clip_projection_dim=clip_width)), True
        return EegModel(EegModelConfig(preset(preset_name), cross_attention_dim=cross_attention_dim,
                                       clip_projection_dim=None)), True
    folder = checkpoint_of(checkpoint)
    model, raw = load_checkpoint(folder)
    if clip_width is not None and model.clip is None:
        raise CheckpointError(f"{folder} has no CLIP head, which the CLIP-embedding routes need; fine-tune it with "
                              "'bci-dream finetune --route ip-adapter', or use --route dreamdiffusion")
    if clip_width is None and model.conditioning is None:
        raise CheckpointError(f"{folder} has no conditioning head (a pretraining checkpoint, or one trained for the "
                              "ip-adapter route?); fine-tune it with 'bci-dream finetune', or give --route ip-adapter")
    meta = raw.get("meta", {})
    trained = meta.get("stage") in TRAINED_STAGES or meta.get("source_file")
    return model, not trained


def check_widths(eeg_model: EegModel, generator, checkpoint: str | os.PathLike | None = None) -> None:
    """Raise :class:`CheckpointError` (the checkpoint and both widths named) when ``eeg_model`` conditions another
    cross-attention width than ``generator``'s UNet takes."""
    width = eeg_model.config.cross_attention_dim
    if width != generator.cross_attention_dim:
        what = str(checkpoint) if checkpoint is not None else "the EEG model"
        raise CheckpointError(
            f"{what} conditions a UNet of cross-attention width {width}, but {generator.model_id} has "
            f"{generator.cross_attention_dim}; fine-tune the EEG model for this generator")


def load_generation_models(model: str | os.PathLike = AUTO, checkpoint: str | os.PathLike | None = None, *,
                           device: str = "auto", size: int | None = None, steps: int | None = None, seed: int = 0,
                           compile: bool | str = False, progress: bool = True,
                           reuse: GenerationModels | None = None,
                           choice: RouteChoice = RouteChoice(), guidance: float | None = None,
                           backend: str = "eager", encoder_precision: str = defaults.PRECISION) -> GenerationModels:
    """Load the diffusion ``model`` (with the UNet adapter of ``checkpoint``, if it has one) and the EEG model
    of ``checkpoint`` (random when None: labelled untrained).

    A compiled generator is not warmed up here: it warms up on the thread that generates (torch.compile's
    CUDA graphs belong to the thread that recorded them). ``reuse``: models loaded before, whose generator is
    kept when it carries the same UNet adapter (the EEG model is always loaded afresh). ``choice``: the
    conditioning route (:class:`RouteChoice`; by default the checkpoint's). ``backend``: how frames run
    (:mod:`bci_dream.generation.backends`). ``encoder_precision``: the EEG encoder's arithmetic
    (:mod:`bci_dream.models.precision`).

    Raises:
        ModelLoadError, ModelNotAvailableError, GenerationError, CheckpointError: one line each.
    """
    raw = read_config(checkpoint_of(checkpoint)) if checkpoint is not None else {}
    meta = raw.get("meta", {})
    spec = MODELS.get(str(model))  # (a registry model may bring its own IP-Adapter and route)
    route = choose_route(choice, meta, spec.route if spec is not None else None)
    ip_adapter = (choice.ip_adapter or meta.get("ip_adapter")) if route == "ip-adapter" else False
    if route == "ip-adapter" and ip_adapter is None and (spec is None or spec.ip_adapter_file is None):
        raise CheckpointError("the ip-adapter route needs an IP-Adapter: give --ip-adapter FILE (e.g. "
                              "ip-adapter_sdxl_vit-h.safetensors for SDXL-Turbo), or --model sdxl-turbo-ip")
    adapter = unet_adapter_of(checkpoint) if route == "dreamdiffusion" else None
    if choice.prompt and route == "retrieval":
        log.warning("--prompt is not used on the retrieval route (it shows bank images, it generates none)")
    if reuse is not None and reuse.adapter == adapter and reuse.route == route == "dreamdiffusion" and \
            guidance is None and choice.negative_prompt is None and reuse.generator.backend_requested == backend:
        generator = reuse.generator
    else:
        generator = load_generator(model, device=device, size=size, steps=steps, seed=seed, compile=compile,
                                   warmup=False if compile else None, adapter=adapter, progress=progress,
                                   ip_adapter=ip_adapter, ip_adapter_scale=choice.ip_adapter_scale,
                                   prompt=choice.prompt if route == "ip-adapter" else None,
                                   negative_prompt=choice.negative_prompt, guidance=guidance, backend=backend)
    bank = _bank(choice, meta, checkpoint)
    clip_width = None
    if route in CLIP_ROUTES:
        clip_width = generator.image_embed_dim if route == "ip-adapter" else (bank.width if bank else None)
    eeg_model, untrained = eeg_model_for(generator.cross_attention_dim, checkpoint, seed=seed, clip_width=clip_width)
    if route == "dreamdiffusion":
        check_widths(eeg_model, generator, checkpoint)
    encoder = PromptEncoder(eeg_model, generator.device, precision=encoder_precision,
                            output="clip_embeds" if route in CLIP_ROUTES else "prompt_embeds")
    naming = saved_naming(raw) if checkpoint is not None else None
    return GenerationModels(generator, eeg_model, untrained, encoder, adapter,
                            Path(checkpoint) if checkpoint is not None else None, naming, describe_training(checkpoint),
                            route, bank)


def choose_route(choice: RouteChoice, meta: dict, model_route: str | None = None) -> str:
    """The route of a session: the one asked for, else the checkpoint's, else ``ip-adapter`` when an IP-Adapter is
    given, else the model's own (``model_route``, from the registry), else ``dreamdiffusion``; a checkpoint trained
    for one route given to the other is refused in one line."""
    trained = meta.get("route")
    route = choice.route or trained or ("ip-adapter" if choice.ip_adapter else model_route or "dreamdiffusion")
    if route not in ROUTES:
        raise CheckpointError(f"unknown route '{route}'; choose {', '.join(ROUTES)}")
    if trained is not None and (trained == "dreamdiffusion") != (route == "dreamdiffusion"):
        raise CheckpointError(f"the EEG model was trained for the {trained} route, not for {route}: give "
                              f"--route {trained}, or fine-tune a model for {route}")
    return route


def _bank(choice: RouteChoice, meta: dict, checkpoint) -> ImageBank | None:
    """The image bank the command line names, checked against (or embedded with) the checkpoint's CLIP model."""
    if choice.bank is None:
        own = Path(checkpoint) / SUBJECT_BANK if checkpoint is not None else None
        if choice.route in CLIP_ROUTES or meta.get("route") in CLIP_ROUTES:
            if own is not None and own.is_file():  # a calibrated subject's stimuli
                log.info("image bank: the stimuli of %s", checkpoint)
                return load_bank(own, clip_model=meta.get("clip_model"))
        if choice.route == "retrieval":
            raise CheckpointError("the retrieval route needs an image bank: give --bank FOLDER or FILE")
        return None
    clip_model = choice.clip_model or meta.get("clip_model")
    source = Path(choice.bank)
    if source.is_dir() and clip_model is None:
        raise CheckpointError(f"embedding the images of {source} needs the CLIP model the EEG model was trained "
                              "against: give --clip-model, or a bank file made by 'bci-dream bank'")
    if source.is_dir():
        return build_bank(source, clip_model)
    return load_bank(source, clip_model=clip_model)
