"""``bci-dream finetune``: fine-tune the EEG model on EEG-image pairs against a Stable Diffusion model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bci_dream.commands.common import add_channel_args, add_compute_device_arg, naming_from_args
from bci_dream.core import defaults
from bci_dream.models.encoder_config import PRESETS
from bci_dream.training.settings import ALIGNMENTS, OBJECTIVES, TRAINING_ROUTES, FinetuneError, FinetuneSettings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune the EEG model on EEG-image pairs (DreamDiffusion stage 2)",
        description="Train the conditioning head (and a LoRA adapter on the UNet's cross-attention) so that the "
                    "EEG recorded while an image was seen conditions the diffusion model towards that image, and "
                    "the CLIP head so that it predicts the image's CLIP embedding. --model and --clip-model take "
                    "hub ids (downloaded once, e.g. with 'hf download stabilityai/sd-turbo') or local folders.")
    p.add_argument("--pairs", type=Path, required=True, help="pairs manifest (CSV; see 'bci-dream make-pairs')")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint folder to write")
    add_training_args(p, old_device_flag=True)  # (finetune has no headset: its old --device still works)
    p.add_argument("--val-fraction", type=float, default=FinetuneSettings.val_fraction,
                   help="share of pairs held out for validation")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an --output that holds a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_channel_args(p)
    p.set_defaults(func=run)


def add_training_args(p: argparse.ArgumentParser, *, old_device_flag: bool = False) -> None:
    """The model and training options shared by ``finetune`` and ``calibrate``; defaults from
    :class:`~bci_dream.training.settings.FinetuneSettings`."""
    d = FinetuneSettings
    p.add_argument("--init", type=Path, help="start from this checkpoint (e.g. from 'bci-dream pretrain')")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help=f"encoder size without --init (default {d.preset})")
    p.add_argument("--model", default=d.model,
                   help="diffusers pipeline: hub id, folder, or a name from 'bci-dream models list' (sdxl-turbo-ip: "
                        "with --route ip-adapter, its IP-Adapter and image encoder are the defaults)")
    p.add_argument("--clip-model", default=None,
                   help="CLIP vision model: hub id, folder, or hub id with subfolder (default: the model's image "
                        f"encoder on --route ip-adapter, else {defaults.CLIP_MODEL})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lora-rank", type=int, default=d.lora_rank, help="rank of the LoRA adapter on the cross-attention")
    g.add_argument("--full-cross-attention", action="store_true",
                   help="train the UNet's cross-attention weights themselves instead of a LoRA adapter")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: the rank)")
    enc = p.add_mutually_exclusive_group()
    enc.add_argument("--train-encoder", dest="train_encoder", action="store_true", default=None,
                     help="also train the EEG encoder (default: only when it is not pretrained, i.e. without --init)")
    enc.add_argument("--freeze-encoder", dest="train_encoder", action="store_false",
                     help="never train the EEG encoder, even an untrained one")
    p.add_argument("--no-channel-adapter", action="store_true",
                   help="no per-subject channel adapter in front of the encoder (default: one is trained)")
    p.add_argument("--clip-weight", type=float, default=d.clip_weight, help="weight of the CLIP alignment loss (0: off)")
    p.add_argument("--diffusion-weight", type=float, default=d.diffusion_weight,
                   help="weight of the denoising loss (0: off)")
    p.add_argument("--objective", choices=OBJECTIVES, default=d.objective,
                   help="diffusion loss: inference = at the generator's own timesteps (read from its scheduler; "
                        "t=999 for SD-Turbo) on the clean latent; denoise = DreamDiffusion's uniform timesteps; "
                        "auto = inference for few-step models (default)")
    p.add_argument("--inference-steps", type=int, help="the generator's steps for --objective inference "
                                                        "(default: the model's)")
    p.add_argument("--alignment", choices=ALIGNMENTS, default=d.alignment,
                   help="CLIP loss: cosine, infonce (contrastive, learned temperature) or both (default)")
    p.add_argument("--no-ridge-init", action="store_true",
                   help="start the CLIP head at random, not from the closed-form ridge fit")
    p.add_argument("--freeze-unet", action="store_true",
                   help="no UNet adapter: the diffusion loss trains the EEG side only")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW, warm-up then cosine)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--resolution", type=int, default=d.resolution, help="image side in pixels (multiple of 8)")
    p.add_argument("--epoch", type=float, default=d.epoch_s, metavar="S",
                   help="training epochs' length in seconds (default %(default)s); the encoder is resized to take "
                        "windows this long, live too")
    p.add_argument("--offset", type=float, default=d.offset_s, metavar="S",
                   help="epochs start this many seconds after each image onset (default %(default)s)")
    p.add_argument("--route", choices=TRAINING_ROUTES, default=d.route,
                   help="what the model conditions: dreamdiffusion (its prompt embeddings in the UNet's "
                        "cross-attention, default) or ip-adapter (its CLIP image embedding through a frozen model's "
                        "IP-Adapter: the CLIP head alone is trained)")
    p.add_argument("--ip-adapter", metavar="FILE",
                   help="for --route ip-adapter: the IP-Adapter to condition (its width is checked, its path saved; "
                        "default: the --model's own, e.g. sdxl-turbo-ip's)")
    p.add_argument("--keep-last", action="store_true",
                   help="keep the last step's weights (default: those of the validation with the best held-out "
                        "identification, the starting point included)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between validations")
    p.add_argument("--seed", type=int, default=d.seed)
    add_compute_device_arg(p, old_device_flag=old_device_flag)


def settings_from_args(args: argparse.Namespace, val_fraction: float = 0.0) -> FinetuneSettings:
    """:class:`FinetuneSettings` from the options of :func:`add_training_args`."""
    if args.init and args.preset:
        log.warning("--preset %s is ignored: the encoder comes from --init %s", args.preset, args.init)
    return FinetuneSettings(
        model=str(args.model), clip_model=args.clip_model, preset=args.preset or FinetuneSettings.preset, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha, full_cross_attention=args.full_cross_attention, train_encoder=args.train_encoder,
        channel_adapter=not args.no_channel_adapter,
        clip_weight=args.clip_weight, diffusion_weight=args.diffusion_weight, objective=args.objective,
        inference_steps=args.inference_steps, alignment=args.alignment, ridge_init=not args.no_ridge_init,
        freeze_unet=args.freeze_unet, max_steps=args.max_steps,
        batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, resolution=args.resolution,
        val_fraction=val_fraction, epoch_s=args.epoch, offset_s=args.offset, seed=args.seed, device=args.gpu,
        checkpoint_every=max(1, args.checkpoint_every), eval_every=max(1, args.eval_every),
        select_best=not args.keep_last, route=args.route, ip_adapter=args.ip_adapter)


def run(args: argparse.Namespace) -> int:
    from bci_dream.training.finetune import finetune

    if args.resume and args.overwrite:
        raise FinetuneError("--resume and --overwrite exclude each other")
    if args.resume and args.init:
        raise FinetuneError("--resume continues --output; --init is only for a new run")
    settings = settings_from_args(args, args.val_fraction)
    r = finetune(args.pairs, args.output, settings, init=args.init, resume=args.resume, overwrite=args.overwrite,
                 progress=not args.no_progress, naming=naming_from_args(args))
    val = f"; validation CLIP cosine {r.val_clip_cosine:.3f}" if r.val_clip_cosine is not None else ""
    if r.val_class_accuracy is not None:
        val += f", class accuracy {r.val_class_accuracy:.2f} (chance {r.val_class_chance:.2f})"
    print(f"fine-tuned for {r.steps} steps on {r.n_train} pairs ({r.n_val} held out); final loss {r.loss:.4f} "
          f"(diffusion {r.diffusion_loss:.4f}, clip {r.clip_loss:.4f}){val}; checkpoint in {r.output}")
    return 0
