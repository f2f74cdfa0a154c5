"""Import the EEG side of a DreamDiffusion generation checkpoint into a bci-dream checkpoint.

DreamDiffusion (Bai et al., arXiv 2306.16934; code: github.com/bbaaii/DreamDiffusion) saves its
fine-tuned latent diffusion model as ``checkpoint.pth`` = ``{"model_state_dict": <whole LDM>,
"config": <Config_Generative_Model>, "state": <RNG state>}``. The EEG side of it lives under
``cond_stage_model.`` (``dc_ldm/ldm_for_eeg.py``, class ``cond_stage_model``):

* ``mae.*`` — the encoder (``sc_mbm/mae_for_eeg.py``, class ``eeg_encoder``: a timm ViT over
  temporal patches, no cls token used, no masking at generation time);
* ``channel_mapper.*``, ``dim_mapper.*`` — tokens [B, L, D] → SD cross-attention tokens [B, 77, 768];
* ``mapping.*`` — tokens → CLIP image-embedding space (``mapping.maxpool`` is a Conv1d(L, 1, 1)).

Key map (DreamDiffusion ``cond_stage_model.`` key → bci-dream key), see :data:`KEY_MAP`:

===============================  ===================================  ==========================
DreamDiffusion                    bci-dream                            note
===============================  ===================================  ==========================
``mae.patch_embed.proj.*``        ``encoder.patch_embed.*``            Conv1d(C, D, p, stride p)
``mae.cls_token``                 ``encoder.cls_token``                unused by both at inference
``mae.blocks.N.*``                ``encoder.blocks.N.*``               timm Block names kept
``mae.norm.*``                    ``encoder.norm.*``
``channel_mapper.*``              ``conditioning.channel_mapper.*``
``dim_mapper.*``                  ``conditioning.dim_mapper.*``
``mapping.maxpool.*``             ``clip.pool.*``
``mapping.fc.*``                  ``clip.fc.*``
``mae.pos_embed``                 ``encoder.pos_embed`` when it differs  stored in the checkpoint (``positions =
                                  from our sin-cos positions            "stored"``); equal ones are not copied
``mae.mask_token``                (dropped)                            unused at generation
===============================  ===================================  ==========================

Any other ``cond_stage_model.`` key (e.g. ``cls_net.*`` of a classification-tuned run) is
reported and not loaded. The MAE decoder is not in the generation checkpoint: it stays at its
initial values (so the imported checkpoint can be fine-tuned, not pretrained further as is), and
``encoder.channel_embed`` stays at zero, which makes our encoder compute exactly what
DreamDiffusion's computes when every channel is present.

Windows for an imported model must look like DreamDiffusion's: 128 channels in the order of the
EEG-ImageNet recordings (Spampinato et al., 2017; 128-channel actiCAP), samples 20–460 ms after
image onset of the 1 kHz, 5–95 Hz band-passed recordings, linearly interpolated from 440 to 512
samples (``dataset.py``, ``EEGDataset.__getitem__``) — an effective rate of 512 / 0.44 s ≈
1163.6 Hz (:data:`DEFAULT_SFREQ`). bci-dream's canonical montage does not follow that channel
order, so fine-tune an imported model on your own pairs before live use.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bci_dream.core.errors import CheckpointError, first_line
from bci_dream.models.checkpoint import load_state, save_checkpoint
from bci_dream.models.eeg_model import EegModel, EegModelConfig, Preprocessing
from bci_dream.models.encoder_config import PRESETS, preset
from bci_dream.models.layers import sincos_positions

log = logging.getLogger(__name__)

#: Prefix of the EEG conditioning model inside DreamDiffusion's LDM state dict.
COND_PREFIX = "cond_stage_model."

#: DreamDiffusion's windows: 440 samples at 1 kHz (20–460 ms after onset) stretched to 512 samples.
DEFAULT_SFREQ = 1000.0 * 512 / 440
#: DreamDiffusion's EEG band (the EEG-ImageNet ``eeg_5_95_std.pth`` signals).
DREAMDIFFUSION_BANDPASS = (5.0, 95.0)
DEFAULT_NUM_HEADS = 16
POS_EMBED_TOLERANCE = 1e-4

#: (DreamDiffusion prefix under ``cond_stage_model.``, bci-dream prefix), applied to the first match.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("mae.patch_embed.proj.", "encoder.patch_embed."),
    ("mae.cls_token", "encoder.cls_token"),
    ("mae.blocks.", "encoder.blocks."),
    ("mae.norm.", "encoder.norm."),
    ("channel_mapper.", "conditioning.channel_mapper."),
    ("dim_mapper.", "conditioning.dim_mapper."),
    ("mapping.maxpool.", "clip.pool."),
    ("mapping.fc.", "clip.fc."),
)
#: Checked against our fixed sine-cosine positions, not loaded.
CHECKED_KEYS = ("mae.pos_embed",)
#: Dropped silently: not used when DreamDiffusion generates.
DROPPED_KEYS = ("mae.mask_token",)
#: Our parameters that the generation checkpoint does not hold (left at their initial values).
NOT_IMPORTED = ("encoder.decoder_", "encoder.mask_token", "encoder.channel_embed")

_BLOCK = re.compile(r"^mae\.blocks\.(\d+)\.")


@dataclass
class ImportReport:
    """What :func:`import_dreamdiffusion` did.

    Attributes:
        model: the imported model (on CPU, eval mode).
        output: the checkpoint folder written, or None when only converted.
        mapped: bci-dream key → DreamDiffusion key (without ``cond_stage_model.``) for every loaded tensor.
        checked: notes on keys that were compared but not loaded (``mae.pos_embed``).
        dropped: DreamDiffusion keys dropped on purpose (``mae.mask_token``).
        unknown: other ``cond_stage_model.`` keys, reported and not loaded.
        not_imported: prefixes of our parameters left at their initial values.
        pos_embed_max_diff: largest |difference| between the file's positions and ours (None if absent).
        other_keys: number of keys outside ``cond_stage_model.`` (UNet, VAE, EMA ...) that were ignored.
    """
    model: EegModel
    output: Path | None = None
    mapped: dict[str, str] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    not_imported: tuple[str, ...] = NOT_IMPORTED
    pos_embed_max_diff: float | None = None
    other_keys: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def config(self) -> EegModelConfig:
        return self.model.config


# -- reading the file -----------------------------------------------------------------------------

class _MissingClass:
    """Stands in for a class the file names but this environment lacks (e.g. DreamDiffusion's
    ``config.Config_Generative_Model``); it keeps whatever state the file gives it."""
    _qualname = "?"

    def __init__(self, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"<unavailable {self._qualname}>"


def _lenient_pickle_module() -> types.ModuleType:
    """A ``pickle_module`` for :func:`torch.load` whose unpickler replaces classes that cannot be
    imported here by inert stand-ins, so that ``--unsafe-load`` works without DreamDiffusion's code."""
    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                log.info("%s.%s is not available here; replaced by a placeholder", module, name)
                return type(name, (_MissingClass,), {"_qualname": f"{module}.{name}"})

    mod = types.ModuleType("bci_dream_lenient_pickle")
    mod.Unpickler = Unpickler
    mod.Pickler = pickle.Pickler
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()
    mod.loads = pickle.loads
    mod.dump, mod.dumps = pickle.dump, pickle.dumps
    mod.HIGHEST_PROTOCOL, mod.DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL, pickle.DEFAULT_PROTOCOL
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def _needs_unpickling(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, pickle.UnpicklingError) and "Unsupported global" in text


def load_torch_file(path: str | os.PathLike, *, unsafe_load: bool = False) -> object:
    """``torch.load`` a foreign checkpoint on CPU, ``weights_only=True`` unless ``unsafe_load``.

    Raises :class:`CheckpointError` (one line) when the file is missing, damaged, or needs full
    unpickling without ``unsafe_load``.
    """
    from safetensors import SafetensorError  # (torch.load hands a .safetensors file to safetensors)

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the path of DreamDiffusion's checkpoint.pth inside it")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give the path of DreamDiffusion's checkpoint.pth")
    if unsafe_load:
        log.warning("loading %s with full unpickling (--unsafe-load): this runs code from the file; "
                    "do it only for files from a source you trust", path)
        kwargs = {"weights_only": False, "pickle_module": _lenient_pickle_module()}
    else:
        kwargs = {"weights_only": True}
    try:
        try:
            return torch.load(path, map_location="cpu", mmap=True, **kwargs)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", **kwargs)  # old (non-zip) format: no mmap
    except pickle.UnpicklingError as e:
        if not unsafe_load and _needs_unpickling(e):
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = f" (it holds a {found.group(1)} object)" if found else ""
            raise CheckpointError(
                f"{path} needs full unpickling to load{what}; if you trust its source, run again with "
                f"--unsafe-load") from e
        raise CheckpointError(f"cannot read {path}: damaged or not a PyTorch checkpoint "
                              f"({first_line(e, 160)})") from e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, ImportError, AttributeError,
            TypeError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {path}: truncated, damaged or not a PyTorch checkpoint "
                              f"({type(e).__name__}: {first_line(e, 160)})") from e


def extract_cond_stage(obj: object, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], int]:
    """The ``cond_stage_model.`` tensors of a DreamDiffusion checkpoint, prefix removed.

    ``obj`` is what :func:`load_torch_file` returned: a dict with ``model_state_dict`` (or
    ``state_dict``) holding the whole LDM, or a bare state dict — of the LDM (keys start with
    ``cond_stage_model.``) or of the cond_stage_model itself (keys start with ``mae.``).
    Returns (tensors, number of other keys ignored).
    """
    state = obj
    if isinstance(obj, dict):
        for name in ("model_state_dict", "state_dict"):
            if isinstance(obj.get(name), dict):
                state = obj[name]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict; "
                              "give DreamDiffusion's generation checkpoint (checkpoint.pth)")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    cond = {k[len(COND_PREFIX):]: v for k, v in tensors.items() if k.startswith(COND_PREFIX)}
    if not cond and any(k.startswith("mae.") for k in tensors):
        cond = {k: v for k, v in tensors.items()}
    if not any(k.startswith("mae.") for k in cond):
        raise CheckpointError(f"{source} has no DreamDiffusion EEG encoder (no '{COND_PREFIX}mae.*' keys); "
                              "give the generation checkpoint saved by DreamDiffusion's eeg_ldm.py")
    return cond, len(tensors) - len(cond)


# -- conversion -----------------------------------------------------------------------------------

def map_key(key: str) -> str | None:
    """bci-dream key for a DreamDiffusion ``cond_stage_model`` key, or None if it is not mapped."""
    for src, dst in KEY_MAP:
        if key == src or (src.endswith(".") and key.startswith(src)):
            return dst + key[len(src):]
    return None


def _shape(cond: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in cond:
        raise CheckpointError(f"the DreamDiffusion checkpoint lacks cond_stage_model.{key}; it cannot be imported")
    shape = tuple(cond[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"cond_stage_model.{key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def derive_config(cond: dict[str, torch.Tensor], *, num_heads: int = DEFAULT_NUM_HEADS,
                  sfreq: float = DEFAULT_SFREQ) -> EegModelConfig:
    """The :class:`EegModelConfig` that fits DreamDiffusion tensors ``cond`` (prefix removed).

    Widths come from the shapes: embed dim, channels and patch size from ``mae.patch_embed.proj.weight``
    [D, C, p], depth from the highest block index, MLP ratio from ``mlp.fc1``, number of patches from
    ``mae.pos_embed`` (else the channel mapper), cross-attention width from ``dim_mapper.weight``
    and CLIP width from ``mapping.fc.weight``. The number of heads is not in the weights: 16 unless given.
    """
    d, c, p = _shape(cond, "mae.patch_embed.proj.weight", 3)
    blocks = [int(m.group(1)) for k in cond if (m := _BLOCK.match(k))]
    if not blocks:
        raise CheckpointError("the DreamDiffusion checkpoint has no encoder blocks (cond_stage_model.mae.blocks.*)")
    depth = max(blocks) + 1
    if "channel_mapper.0.weight" not in cond:
        raise CheckpointError("the DreamDiffusion checkpoint has no channel_mapper (trained with global_pool=True); "
                              "only global_pool=False checkpoints (77 conditioning tokens) can be imported")
    cm0 = _shape(cond, "channel_mapper.0.weight", 3)
    cm1 = _shape(cond, "channel_mapper.1.weight", 3)
    if "mae.pos_embed" in cond:
        num_patches = _shape(cond, "mae.pos_embed", 3)[1] - 1
    else:
        num_patches = cm0[1]
    if cm0[1] != num_patches:
        raise CheckpointError(f"channel_mapper takes {cm0[1]} tokens but mae.pos_embed has {num_patches} patches")
    hidden = _shape(cond, "mae.blocks.0.mlp.fc1.weight", 2)[0]
    cross_dim, d_in = _shape(cond, "dim_mapper.weight", 2)
    if d_in != d:
        raise CheckpointError(f"dim_mapper takes width {d_in} but the encoder has width {d}")
    clip_dim = _shape(cond, "mapping.fc.weight", 2)[0] if "mapping.fc.weight" in cond else None
    if d % num_heads:
        raise CheckpointError(f"embed width {d} is not divisible by {num_heads} heads; give --num-heads")
    shape = {"n_channels": c, "n_samples": num_patches * p, "patch_size": p, "embed_dim": d, "depth": depth,
             "num_heads": num_heads, "mlp_ratio": hidden / d}
    ref = PRESETS["dreamdiffusion"]
    name = "dreamdiffusion" if all(getattr(ref, k) == v for k, v in shape.items()) else "custom"
    positions = "sincos"
    if "mae.pos_embed" in cond and cond["mae.pos_embed"].device.type != "meta":
        theirs = cond["mae.pos_embed"].to(torch.float32).reshape(1, num_patches + 1, d)
        fixed = sincos_positions(d, num_patches, cls_token=True)[None]
        if float((theirs - fixed).abs().max()) > POS_EMBED_TOLERANCE:
            positions = "stored"
    encoder = preset("dreamdiffusion", preset=name, sfreq=float(sfreq), positions=positions, **shape)
    return EegModelConfig(encoder=encoder, cross_attention_dim=cross_dim, clip_projection_dim=clip_dim,
                          out_tokens=cm1[0], preprocessing=Preprocessing(bandpass=DREAMDIFFUSION_BANDPASS))


def convert(cond: dict[str, torch.Tensor], *, num_heads: int = DEFAULT_NUM_HEADS,
            sfreq: float = DEFAULT_SFREQ) -> ImportReport:
    """Build an :class:`EegModel` from DreamDiffusion ``cond_stage_model`` tensors (prefix removed)."""
    config = derive_config(cond, num_heads=num_heads, sfreq=sfreq)
    model = EegModel(config)
    report = ImportReport(model=model)
    state: dict[str, torch.Tensor] = {}
    for key, value in cond.items():
        target = map_key(key)
        if target is not None:
            state[target] = value.detach().to(torch.float32)
            report.mapped[target] = key
        elif key in CHECKED_KEYS:
            continue
        elif key in DROPPED_KEYS:
            report.dropped.append(key)
        else:
            report.unknown.append(key)
    if report.unknown:
        shown = ", ".join(report.unknown[:6]) + (f" (+{len(report.unknown) - 6} more)" if len(report.unknown) > 6 else "")
        report.warnings.append(f"{len(report.unknown)} cond_stage_model keys not imported: {shown}")

    if "mae.pos_embed" in cond:
        ours = model.encoder.pos_embed
        theirs = cond["mae.pos_embed"].to(torch.float32)
        diff = float((theirs.reshape(ours.shape) - ours).abs().max())
        report.pos_embed_max_diff = diff
        if diff > POS_EMBED_TOLERANCE:
            state["encoder.pos_embed"] = theirs.reshape(ours.shape).clone()
            report.mapped["encoder.pos_embed"] = "mae.pos_embed"
            report.checked["mae.pos_embed"] = (f"differs from our fixed sin-cos positions by up to {diff:.3g}; "
                                               "theirs are loaded and stored in the checkpoint")
        else:
            report.checked["mae.pos_embed"] = f"matches our fixed sin-cos positions (max |diff| {diff:.2g}); not loaded"
    else:
        report.warnings.append("the checkpoint has no mae.pos_embed; our fixed sin-cos positions are used")

    load_state(model, state, source="DreamDiffusion cond_stage_model", source_preset="dreamdiffusion",
               allow_missing=NOT_IMPORTED)
    model.eval()
    for w in report.warnings:
        log.warning("%s", w)
    return report


def import_dreamdiffusion(path: str | os.PathLike, output: str | os.PathLike | None = None, *,
                          unsafe_load: bool = False, sfreq: float = DEFAULT_SFREQ,
                          num_heads: int = DEFAULT_NUM_HEADS) -> ImportReport:
    """Read DreamDiffusion's generation checkpoint ``path`` and (with ``output``) save it as ours.

    Args:
        path: ``checkpoint.pth`` of DreamDiffusion's ``eeg_ldm.py`` (or a bare state dict).
        output: folder for the bci-dream checkpoint (``config.json`` + ``model.safetensors``), or None.
        unsafe_load: unpickle everything in the file (runs code from it). The released file needs
            this because it also pickles a config object; classes missing here are replaced by inert
            placeholders.
        sfreq: sampling rate of the windows the model was trained on (default: DreamDiffusion's
            440 ms at 1 kHz stretched to 512 samples, ≈1163.6 Hz).
        num_heads: attention heads (not recoverable from the weights; DreamDiffusion uses 16).

    Raises:
        CheckpointError: the file is missing, damaged, needs ``unsafe_load``, or holds no EEG encoder.
    """
    path = Path(path)
    obj = load_torch_file(path, unsafe_load=unsafe_load)
    cond, others = extract_cond_stage(obj, source=str(path))
    report = convert(cond, num_heads=num_heads, sfreq=sfreq)
    report.other_keys = others
    del obj
    if output is not None:
        cfg = report.config
        meta = {
            "source": "DreamDiffusion (arXiv 2306.16934) generation checkpoint",
            "source_file": str(path.resolve()),
            "imported_keys": {k: COND_PREFIX + v for k, v in report.mapped.items()},
            "checked_keys": {COND_PREFIX + k: v for k, v in report.checked.items()},
            "dropped_keys": [COND_PREFIX + k for k in report.dropped],
            "unknown_keys": [COND_PREFIX + k for k in report.unknown],
            "ignored_other_keys": others,
            "not_imported": {
                "encoder.decoder_*, encoder.mask_token": "MAE decoder: not in the generation checkpoint, left at "
                                                         "initial values (fine-tune; do not resume pretraining)",
                "encoder.channel_embed": "zero (no effect when all channels are present, as in DreamDiffusion)",
            },
            "num_heads": f"{cfg.encoder.num_heads} (not stored in the weights; DreamDiffusion uses 16)",
            "input": (f"windows of {cfg.encoder.n_channels} channels x {cfg.encoder.n_samples} samples in "
                      "DreamDiffusion's channel order (EEG-ImageNet, 128-channel actiCAP) and sampling: 20-460 ms "
                      "after image onset at 1 kHz, 5-95 Hz band-passed, interpolated from 440 to 512 samples "
                      f"(sfreq recorded as {cfg.encoder.sfreq:g} Hz)"),
            "warning": ("bci-dream's canonical montage uses another channel order than DreamDiffusion's: "
                        "fine-tune this model on your own EEG-image pairs before use"),
            "notes": report.warnings,
        }
        report.output = save_checkpoint(output, report.model, meta=meta)
    return report
