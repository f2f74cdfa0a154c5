"""Temporal masked-signal pretraining of the EEG encoder on any mix of recordings.

Runs on one CPU, one GPU, or several GPUs and machines when started by ``accelerate launch`` or
``torchrun`` (the loop goes through :class:`accelerate.Accelerator`); bf16 autocast on CUDA.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bci_dream.core.errors import BciDreamError, CheckpointError
from bci_dream.models.checkpoint import load_checkpoint, load_training_state, read_config, save_checkpoint
from bci_dream.models.eeg_model import EegModel, EegModelConfig, Preprocessing
from bci_dream.models.encoder_config import preset as encoder_preset
from bci_dream.signal.channels import ChannelNaming
from bci_dream.training.reconstruction import ReconstructionScores, reconstruction_scores
from bci_dream.training.settings import PretrainSettings

log = logging.getLogger(__name__)


class NonFiniteLossError(BciDreamError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class PretrainResult:
    output: Path
    steps: int
    final_loss: float
    windows: int
    skipped: list[tuple[Path, str]]
    holdout: ReconstructionScores | None = None


def pretrain(paths: Sequence[str | os.PathLike], output: str | os.PathLike, settings: PretrainSettings,
             *, holdout: Sequence[str | os.PathLike] = (), restart: bool = False,
             progress: bool = True, naming: ChannelNaming | None = None) -> PretrainResult:
    """Pretrain an encoder on ``paths`` and save it to the folder ``output``.

    An existing checkpoint in ``output`` with the same preset is resumed from its last step unless
    ``restart``. ``holdout`` recordings are never trained on; at the end the masked-patch error on
    their windows is compared with predicting zeros and with linear interpolation. ``naming``: what the
    recordings' channels are (applied to each recording it fits; see :func:`~bci_dream.io.readers.read_recording`).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from bci_dream.training.windows import WindowDataset, WindowSpec

    output = Path(output)
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if cuda else "no", cpu=not cuda)
    torch.manual_seed(settings.seed)
    enc_config = encoder_preset(settings.preset)
    spec = WindowSpec(window_s=enc_config.window_seconds, target_sfreq=enc_config.sfreq,
                      bandpass=settings.bandpass, notch=settings.notch)
    dataset = WindowDataset.from_paths(paths, spec, hop_s=settings.hop_s, on_error="skip", naming=naming)
    if len(dataset) == 0:
        if dataset.skipped:
            path, reason = dataset.skipped[0]
            more = f" (and {len(dataset.skipped) - 1} more skipped)" if len(dataset.skipped) > 1 else ""
            raise BciDreamError(f"no windows to train on: {reason}{more}")
        raise BciDreamError("no windows to train on: no recordings given")
    log.info("%d windows from %d recordings", len(dataset), len(paths) - len(dataset.skipped))

    config = EegModelConfig(encoder=enc_config, cross_attention_dim=None, clip_projection_dim=None,
                            preprocessing=Preprocessing(bandpass=settings.bandpass, notch=settings.notch))
    model = EegModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), foreach=True,
                                  weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, settings.warmup_steps, settings.max_steps))
    step = 0
    if not restart and (output / "config.json").is_file():
        step = _resume(output, model, optimizer, scheduler, config)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=settings.batch_size, shuffle=True, drop_last=len(dataset) >= settings.batch_size,
        generator=torch.Generator().manual_seed(settings.seed + step))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    encoder = accelerator.unwrap_model(model).encoder

    metrics_path = output / "metrics.jsonl"
    output.mkdir(parents=True, exist_ok=True)
    meta = {"stage": "pretrain", "settings": asdict(settings), "recordings": [str(p) for p in paths],
            "channel_naming": naming.to_dict() if naming is not None else None}
    bar = tqdm(total=settings.max_steps, initial=step, desc="pretrain", unit="step",
               disable=not progress or not accelerator.is_main_process)
    loss_value = float("nan")
    started = time.perf_counter()
    seen = 0
    model.train()
    with open(metrics_path, "a") as metrics:
        while step < settings.max_steps:
            for batch in loader:
                if step >= settings.max_steps:
                    break
                with accelerator.autocast():
                    loss, _, _ = encoder(batch["eeg"], batch["mask"], settings.mask_ratio)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise NonFiniteLossError(
                        f"the loss became {loss_value} at step {step + 1}; training stopped and the last good "
                        f"checkpoint in {output} was kept (try a lower --lr)")
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                seen += batch["eeg"].shape[0] * accelerator.num_processes
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if accelerator.is_main_process and (step % settings.log_every == 0 or step == settings.max_steps):
                    elapsed = time.perf_counter() - started
                    metrics.write(json.dumps({"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                                              "windows_per_s": seen / elapsed if elapsed else 0.0}) + "\n")
                    metrics.flush()
                if step % settings.checkpoint_every == 0 or step == settings.max_steps:
                    _save(accelerator, model, optimizer, scheduler, step, output, meta)
    bar.close()
    result = PretrainResult(output, step, loss_value, len(dataset), list(dataset.skipped))
    if holdout and accelerator.is_main_process:
        result.holdout = holdout_scores(encoder, holdout, spec, settings, naming)
        with open(metrics_path, "a") as metrics:
            metrics.write(json.dumps({"step": step, "holdout": asdict(result.holdout)}) + "\n")
    return result


def holdout_scores(encoder, paths: Sequence[str | os.PathLike], spec, settings: PretrainSettings,
                   naming: ChannelNaming | None = None) -> ReconstructionScores:
    """Reconstruction error on windows of ``paths`` against the zero and interpolation baselines."""
    from bci_dream.training.windows import WindowDataset

    data = WindowDataset.from_paths(paths, spec, hop_s=settings.hop_s, on_error="skip", naming=naming)
    if len(data) == 0:
        raise BciDreamError("none of the held-out recordings gave a window")
    windows = np.stack([data[i]["eeg"].numpy() for i in range(len(data))])
    masks = np.stack([data[i]["mask"].numpy() for i in range(len(data))])
    device = next(encoder.parameters()).device
    return reconstruction_scores(encoder, windows, masks, mask_ratio=settings.mask_ratio, seed=settings.seed,
                                 device=device)


def _save(accelerator, model, optimizer, scheduler, step: int, output: Path, meta: dict) -> None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state()}
    save_checkpoint(output, accelerator.unwrap_model(model), training_state=state, meta={**meta, "steps": step})


def _resume(output: Path, model: EegModel, optimizer, scheduler, config: EegModelConfig) -> int:
    raw = read_config(output)
    if raw.get("meta", {}).get("stage") != "pretrain":
        raise CheckpointError(f"{output} holds a checkpoint that is not a pretraining run; choose another "
                              "output folder or pass --restart to overwrite it")
    loaded, _ = load_checkpoint(output, expected=config)
    model.load_state_dict(loaded.state_dict())
    state = load_training_state(output)
    if state is None:
        log.warning("%s has weights but no training state; continuing from them with a fresh optimizer", output)
        return int(raw.get("meta", {}).get("steps", 0))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    log.warning("resuming %s from step %d", output, state["step"])
    return int(state["step"])
