"""Temporal masked-signal pretraining of the EEG encoder on any mix of recordings.

Runs on one CPU, one GPU, or several GPUs and machines when started by ``accelerate launch`` or
``torchrun`` (the loop goes through :class:`accelerate.Accelerator`); bf16 autocast where the device has bf16
arithmetic (CUDA, CPUs with AVX-512 BF16 or AMX; ``settings.precision``), the weights and AdamW's state in float32
(the fused AdamW: one pass over the weights instead of one per operation, 10x less time in the step on a CPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
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
from bci_dream.models.precision import compute_dtype
from bci_dream.signal.channels import ChannelNaming
from bci_dream.training.corpus_sources import file_items
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
    #: The held-out subjects and the scores on their windows (subject-wise split), or None.
    holdout_subjects: tuple[list[str], ReconstructionScores] | None = None
    epochs: float = 0.0


def pretrain_optimizer(parameters, settings: PretrainSettings) -> torch.optim.AdamW:
    """MAE's AdamW (betas 0.9, 0.95), fused: one pass over the weights per step."""
    return torch.optim.AdamW(parameters, lr=settings.lr, betas=(0.9, 0.95), fused=True,
                             weight_decay=settings.weight_decay)


def pretrain(paths: Sequence[str | os.PathLike], output: str | os.PathLike, settings: PretrainSettings,
             *, store: str | os.PathLike | None = None, holdout: Sequence[str | os.PathLike] = (),
             holdout_subjects: str | Sequence[str] | float | None = None, restart: bool = False,
             progress: bool = True, naming: ChannelNaming | None = None, jobs: int = 1, buffer: int = 4096,
             workers: int = 0) -> PretrainResult:
    """Pretrain an encoder on the window store ``store``, or on ``paths`` (built into a store in ``output`` first,
    removed when training ends), and save it to the folder ``output``.

    Each process (``accelerate launch`` / ``torchrun``) streams its own share of the store
    (:class:`~bci_dream.training.store_stream.StoreBatches`, ``settings.batch_size`` windows per process and step);
    memory does not grow with the store. An existing checkpoint in ``output`` with the same preset is resumed from its
    last step unless ``restart``, mid-epoch, without windows seen twice. ``holdout`` recordings, and the subjects
    ``holdout_subjects`` (names, or a share drawn with the seed), are never trained on; at the end the masked-patch
    error on their windows is compared with predicting zeros and with linear interpolation. ``naming``: what the
    recordings' channels are (applied to each recording it fits; see :func:`~bci_dream.io.readers.read_recording`).

    Raises:
        StoreError: the store's windows are not the preset's (what differs is named).
        BciDreamError: no windows to train on.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from bci_dream.training.store_stream import StoreBatches, split_subjects
    from bci_dream.training.window_store import WindowStore, spec_to_dict
    from bci_dream.training.windows import WindowSpec

    output = Path(output)
    cuda = torch.cuda.is_available()
    bf16 = compute_dtype("cuda" if cuda else "cpu", settings.precision) == torch.bfloat16
    # (the schedule counts optimizer steps: accelerate would otherwise step it once per process and step)
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not cuda,
                              step_scheduler_with_optimizer=False)
    torch.manual_seed(settings.seed)
    enc_config = encoder_preset(settings.preset)
    spec = WindowSpec(window_s=enc_config.window_seconds, target_sfreq=enc_config.sfreq,
                      bandpass=settings.bandpass, notch=settings.notch)
    want = spec_to_dict(spec, settings.hop_s)
    built_here = store is None
    skipped: list[tuple[Path, str]] = []
    if built_here:
        store = output / "window-store"
        with accelerator.main_process_first():
            if accelerator.is_main_process:
                skipped = _build_temporary_store(paths, store, spec, settings.hop_s, naming, jobs, progress)
    windows = WindowStore.open(store)
    windows.check_spec({**want, "hop_s": windows.hop_s}, f"the '{settings.preset}' encoder with these settings")
    if not built_here:
        skipped = [(Path(s), r) for s, r in windows.skipped.items()]
    held = split_subjects(windows, holdout_subjects, settings.seed)
    if windows.n_windows == 0:
        if skipped:
            path, reason = skipped[0]
            more = f" (and {len(skipped) - 1} more skipped)" if len(skipped) > 1 else ""
            raise BciDreamError(f"no windows to train on: {reason}{more}")
        raise BciDreamError("no windows to train on: no recordings given")

    config = EegModelConfig(encoder=enc_config, cross_attention_dim=None, clip_projection_dim=None,
                            preprocessing=Preprocessing(bandpass=settings.bandpass, notch=settings.notch))
    model = EegModel(config)
    if accelerator.process_index:  # (the same initial weights everywhere; each process masks its own way)
        torch.manual_seed(settings.seed + 7919 * accelerator.process_index)
    optimizer = pretrain_optimizer(model.parameters(), settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, settings.warmup_steps, settings.max_steps))
    step, data_state = 0, {}
    if not restart and (output / "config.json").is_file():
        step, data_state = _resume(output, model, optimizer, scheduler, config)
    stream = StoreBatches(windows, settings.batch_size, rank=accelerator.process_index,
                          ranks=accelerator.num_processes, seed=settings.seed, buffer=buffer, exclude_subjects=held)
    data_state = _data_position(stream, windows, step, data_state)
    stream.start = step + data_state["offset"]
    log.info("training in %s on %s", "bf16 autocast" if bf16 else "float32", accelerator.device)
    log.info("%d windows from %d recordings (%d subjects held out): %d batches of %d per process and epoch",
             stream.n_windows, len(stream.recordings), len(held), stream.batches_per_epoch, settings.batch_size)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         persistent_workers=workers > 0)
    model.to(accelerator.device)
    # (the encoder is what trains; in several processes its calls must go through the wrapper prepare returns, which
    # averages the gradients across them: calling the module itself would train each process on its own)
    trained, optimizer, scheduler = accelerator.prepare(model.encoder, optimizer, scheduler)
    encoder = model.encoder

    metrics_path = output / "metrics.jsonl"
    output.mkdir(parents=True, exist_ok=True)
    meta = {"stage": "pretrain", "settings": asdict(settings),
            "recordings": [str(p) for p in paths] if built_here else [],
            "store": None if built_here else str(Path(store).absolute()), "holdout_subjects": held,
            "channel_naming": naming.to_dict() if naming is not None else None}
    bar = tqdm(total=settings.max_steps, initial=step, desc="pretrain", unit="step",
               disable=not progress or not accelerator.is_main_process)
    loss_value = float("nan")
    started = time.perf_counter()
    seen = 0
    model.train()
    batches = iter(loader)
    with open(metrics_path, "a") if accelerator.is_main_process else _nowhere() as metrics:
        while step < settings.max_steps:
            batch = next(batches)
            eeg, mask = batch["eeg"].to(accelerator.device), batch["mask"].to(accelerator.device)
            with accelerator.autocast():
                loss, _, _ = trained(eeg, mask, settings.mask_ratio)
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
            seen += eeg.shape[0] * accelerator.num_processes
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if step % settings.log_every == 0 or step == settings.max_steps:
                mean_loss = float(accelerator.reduce(loss.detach().float(), reduction="mean"))  # (every process)
                if accelerator.is_main_process:
                    elapsed = time.perf_counter() - started
                    metrics.write(json.dumps({"step": step, "loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                                              "epoch": round((step + data_state["offset"])
                                                             / stream.batches_per_epoch, 3),
                                              "windows_per_s": seen / elapsed if elapsed else 0.0}) + "\n")
                    metrics.flush()
            if step % settings.checkpoint_every == 0 or step == settings.max_steps:
                _save(accelerator, model, optimizer, scheduler, step, output, meta, data_state)
    bar.close()
    result = PretrainResult(output, step, loss_value, stream.n_windows, skipped,
                            epochs=(step + data_state["offset"]) / stream.batches_per_epoch)
    if accelerator.is_main_process:
        device = next(encoder.parameters()).device
        if holdout:
            result.holdout = holdout_scores(encoder, holdout, spec, settings, naming)
        if held:
            from bci_dream.training.store_stream import subject_windows

            x, m = subject_windows(windows, held, seed=settings.seed)
            result.holdout_subjects = (held, reconstruction_scores(encoder, x, m, mask_ratio=settings.mask_ratio,
                                                                   seed=settings.seed, device=device))
        with open(metrics_path, "a") as metrics:
            if result.holdout is not None:
                metrics.write(json.dumps({"step": step, "holdout": asdict(result.holdout)}) + "\n")
            if result.holdout_subjects is not None:
                metrics.write(json.dumps({"step": step, "holdout_subjects": held,
                                          "holdout_subject_scores": asdict(result.holdout_subjects[1])}) + "\n")
    accelerator.wait_for_everyone()
    if built_here and accelerator.is_main_process and step >= settings.max_steps:
        shutil.rmtree(store, ignore_errors=True)
    return result


def _build_temporary_store(paths, store: Path, spec, hop_s: float, naming, jobs: int,
                           progress: bool) -> list[tuple[Path, str]]:
    """Build ``paths`` into the store ``store`` (resumed if a killed run left it); the sources skipped."""
    from bci_dream.training.store_build import build_store
    from bci_dream.training.window_store import StoreError, WindowStore, spec_to_dict

    if (store / "store.json").is_file():
        try:
            WindowStore.open(store).check_spec(spec_to_dict(spec, hop_s), "this run")
        except StoreError:
            log.warning("%s holds windows of other settings: built again", store)
            shutil.rmtree(store)
    report = build_store(file_items(paths), store, spec, hop_s, jobs=jobs, naming=naming, progress=progress)
    log.info("%s", report.summary())
    return [(Path(s), r) for s, r in report.store.skipped.items()]


def _data_position(stream, windows, step: int, saved: dict) -> dict:
    """Where the stream resumes: global batch ``step + offset``. A store that changed since the checkpoint (or
    another number of processes or batch size) starts a new epoch of the new order instead."""
    now = {"store": windows.fingerprint(), "batches_per_epoch": stream.batches_per_epoch, "ranks": stream.ranks,
           "batch_size": stream.batch_size, "offset": 0}
    if not saved or step == 0:
        return now
    same = all(saved.get(k) == now[k] for k in ("store", "batches_per_epoch", "ranks", "batch_size"))
    if same:
        return {**now, "offset": int(saved.get("offset", 0))}
    epoch = (step + int(saved.get("offset", 0))) // max(1, int(saved.get("batches_per_epoch") or 1)) + 1
    log.warning("the window store, the batch size or the number of processes changed since the checkpoint: "
                "training goes on with a new epoch of the new order")
    return {**now, "offset": epoch * stream.batches_per_epoch - step}


@contextlib.contextmanager
def _nowhere():
    yield None


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


def _save(accelerator, model, optimizer, scheduler, step: int, output: Path, meta: dict, data: dict) -> None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state(), "data": data}
    save_checkpoint(output, accelerator.unwrap_model(model), training_state=state, meta={**meta, "steps": step})


def _resume(output: Path, model: EegModel, optimizer, scheduler, config: EegModelConfig) -> tuple[int, dict]:
    raw = read_config(output)
    if raw.get("meta", {}).get("stage") != "pretrain":
        raise CheckpointError(f"{output} holds a checkpoint that is not a pretraining run; choose another "
                              "output folder or pass --restart to overwrite it")
    loaded, _ = load_checkpoint(output, expected=config)
    model.load_state_dict(loaded.state_dict())
    state = load_training_state(output)
    if state is None:
        log.warning("%s has weights but no training state; continuing from them with a fresh optimizer", output)
        return int(raw.get("meta", {}).get("steps", 0)), {}
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    log.warning("resuming %s from step %d", output, state["step"])
    return int(state["step"]), dict(state.get("data") or {})
