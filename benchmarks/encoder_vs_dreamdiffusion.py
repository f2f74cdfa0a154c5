"""The `dreamdiffusion` encoder against DreamDiffusion's own code, in one process, alternating (issue 18).

DIR is a checkout of github.com/bbaaii/DreamDiffusion that you fetched (``git clone
https://github.com/bbaaii/DreamDiffusion DIR``); its module ``code/sc_mbm/mae_for_eeg.py`` is imported from there,
never copied into this repository. It needs timm at the version they pin (``pip install timm==0.5.4`` in the
environment this runs in; not a dependency of bci-dream). Their utilities use ``np.float``, removed in numpy 1.24,
and timm 0.5.4 imports torchvision for its data helpers only: both are aliased here (a module with torchvision's
names and nothing in it) when missing.

Same configuration on both sides (128 channels x 512 samples, patch 4, width 1024, depth 24, 16 heads, MLP ratio 1;
decoder 512 wide, 8 deep), random weights, CPU:

- inference, batch 1: their ``eeg_encoder.forward`` (float32, as their code runs) against our ``EegEncoder`` in
  float32 and at the precision bci-dream picks on this CPU (``--encoder-precision auto``: bf16 weights where the CPU
  has AVX-512 BF16 or AMX, as ``PromptEncoder`` converts them), with the largest difference of that embedding from
  our float32 one and their cosine;
- the masked-signal training step, batch ``--batch``, mask ratio 0.75 (forward + backward + gradient clipping +
  AdamW): their ``MAEforEEG`` with torch's default AdamW (their ``optim.AdamW(..., betas=(0.9, 0.95))``) against
  ours with the optimizer ``bci-dream pretrain`` builds (fused AdamW), in float32 and at ``pretrain``'s default
  precision (bf16 autocast where the CPU has bf16 arithmetic, float32 weights).

Medians over ``--rounds`` alternating rounds and their ratios.

    python benchmarks/encoder_vs_dreamdiffusion.py --reference DIR [--rounds 5] [--batch 8] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch


def import_theirs(reference: Path):
    """Their ``sc_mbm.mae_for_eeg`` module from the checkout ``reference``."""
    code = reference / "code"
    if not (code / "sc_mbm" / "mae_for_eeg.py").is_file():
        raise SystemExit(f"{reference} is not a DreamDiffusion checkout (no code/sc_mbm/mae_for_eeg.py): run "
                         f"'git clone https://github.com/bbaaii/DreamDiffusion {reference}' first")
    if not hasattr(np, "float"):
        np.float = float  # (their utils: np.arange(..., dtype=np.float))
    try:
        import torchvision  # noqa: F401
    except ImportError:  # (timm 0.5.4 imports it for image transforms and datasets only)
        sys.modules.update(_torchvision_names())
    sys.path.insert(0, str(code))
    try:
        import timm
        from sc_mbm import mae_for_eeg
    except ImportError as e:
        raise SystemExit(f"cannot import DreamDiffusion's encoder ({e}); install the timm it pins: "
                         "pip install timm==0.5.4") from e
    print(f"their code from {reference}; timm {timm.__version__}", flush=True)
    return mae_for_eeg


def _torchvision_names() -> dict[str, types.ModuleType]:
    """Modules with the names timm 0.5.4 imports from torchvision, each name a placeholder class."""

    def placeholder(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {"__init__": lambda self, *a, **k: None})

    modules = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                 "torchvision.datasets", "torchvision.ops", "torchvision.ops.misc"):
        module = types.ModuleType(name)
        module.__path__ = []  # (a package: its submodules import)
        module.__getattr__ = placeholder
        modules[name] = module
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    modules["torchvision.transforms.functional"].InterpolationMode = type("InterpolationMode", (), {
        "NEAREST": "nearest", "BILINEAR": "bilinear", "BICUBIC": "bicubic", "BOX": "box", "HAMMING": "hamming",
        "LANCZOS": "lanczos"})
    return modules


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="a DreamDiffusion checkout")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="calls per round (the median is kept)")
    p.add_argument("--batch", type=int, default=8, help="training batch")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    theirs_module = import_theirs(args.reference)

    from bci_dream.models.encoder import EegEncoder
    from bci_dream.models.encoder_config import preset
    from bci_dream.models.precision import compute_dtype, dtype_name
    from bci_dream.training.pretrain import pretrain_optimizer
    from bci_dream.training.settings import PretrainSettings

    dtype = compute_dtype("cpu")
    label = dtype_name(dtype)

    config = preset("dreamdiffusion")
    shape = dict(time_len=config.n_samples, patch_size=config.patch_size, embed_dim=config.embed_dim,
                 in_chans=config.n_channels, depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio)
    torch.manual_seed(0)
    their_encoder = theirs_module.eeg_encoder(**shape).eval()
    their_mae = theirs_module.MAEforEEG(**shape, decoder_embed_dim=config.decoder_embed_dim,
                                        decoder_depth=config.decoder_depth,
                                        decoder_num_heads=config.decoder_num_heads).train()
    ours = EegEncoder(config).eval()
    ours_low = copy.deepcopy(ours).to(dtype)
    ours_train = EegEncoder(config).train()
    params = {"theirs": sum(q.numel() for q in their_encoder.parameters()) / 1e6,
              "ours": sum(q.numel() for n, q in ours.named_parameters() if not n.startswith("decoder")) / 1e6}
    print(f"encoder parameters: theirs {params['theirs']:.1f} M, ours {params['ours']:.1f} M; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    x1 = torch.randn(1, config.n_channels, config.n_samples)
    mask1 = torch.ones(1, config.n_channels, dtype=torch.bool)
    xb = torch.randn(args.batch, config.n_channels, config.n_samples)
    maskb = torch.ones(args.batch, config.n_channels, dtype=torch.bool)
    opt_theirs = torch.optim.AdamW(their_mae.parameters(), lr=1e-4, betas=(0.9, 0.95))
    opt_ours = pretrain_optimizer(ours_train.parameters(), PretrainSettings(lr=1e-4))

    @torch.inference_mode()
    def infer_theirs():
        their_encoder(x1)

    @torch.inference_mode()
    def infer_ours():
        ours.embed(x1, mask1)

    x1_low, mask1_low = x1.to(dtype), mask1.to(dtype)

    @torch.inference_mode()
    def infer_ours_auto():
        ours_low.embed(x1_low, mask1_low)

    def train_theirs():
        loss, _, _ = their_mae(xb, mask_ratio=0.75)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(their_mae.parameters(), 1.0)
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    def train_ours(autocast: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _, _ = ours_train(xb, maskb, 0.75)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours_train.parameters(), 1.0)
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    auto = dtype == torch.bfloat16
    runs = {"infer theirs": infer_theirs, "infer ours fp32": infer_ours, f"infer ours {label}": infer_ours_auto,
            "train theirs": train_theirs, "train ours fp32": lambda: train_ours(False)}
    if auto:
        runs["train ours bf16"] = lambda: train_ours(True)
    for fn in runs.values():  # (warm-up)
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(median_ms(runs[name], args.repeats))
    med = {k: statistics.median(v) for k, v in times.items()}
    with torch.inference_mode():
        f32 = ours.embed(x1, mask1).float()
        low = ours_low.embed(x1_low, mask1_low).float()
    rel = float((low - f32).abs().max() / f32.abs().max())
    cos = float(torch.nn.functional.cosine_similarity(low.flatten(), f32.flatten(), 0))
    for name, value in med.items():
        print(f"  {name:16s} median {value:8.1f} ms  [{', '.join(f'{t:.1f}' for t in times[name])}]", flush=True)
    speed = {k: med["infer theirs" if k.startswith("infer") else "train theirs"] / v for k, v in med.items()}
    train = f"{speed['train ours fp32']:.2f}x in fp32" + (
        f", {speed['train ours bf16']:.2f}x under bf16 autocast (pretrain's default here)" if auto else
        " (no bf16 arithmetic on this CPU: pretrain trains in fp32)")
    print(f"SUMMARY encoder_vs_dreamdiffusion.py: inference batch 1 ours {speed['infer ours fp32']:.2f}x theirs in "
          f"fp32, {speed[f'infer ours {label}']:.2f}x at the precision bci-dream picks here ({label}; largest "
          f"difference from fp32 {rel:.3f} of the largest value, cosine {cos:.5f}; goal 3x); training step batch "
          f"{args.batch} {train} (goal 1.5x)", flush=True)


if __name__ == "__main__":
    main()
