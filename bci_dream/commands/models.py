"""``bci-dream models``: the diffusion models for generation (list them, download one)."""

from __future__ import annotations

import argparse

from bci_dream.core.errors import BciDreamError
from bci_dream.generation.models import (
    DEFAULT_MODEL,
    MODELS,
    download,
    download_image_encoder,
    is_cached,
    resolve_model,
    spec_for_repo,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list or download the diffusion models used for generation",
                              description="Diffusion models for generation. Downloads go to the Hugging Face cache "
                                          "(HF_HOME) and fetch only what generation needs (text encoders only for "
                                          "the models that encode a prompt every session: SDXL, IP-Adapter).")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    lp = sub.add_parser("list", help="the known models and whether they are cached")
    lp.set_defaults(func=cmd_list)
    dp = sub.add_parser("download", help="download a model into the Hugging Face cache")
    dp.add_argument("name", help="a name from 'bci-dream models list' (or a hub id such as owner/name)")
    dp.add_argument("--quiet", action="store_true", help="no progress bars")
    dp.add_argument("--for-training", action="store_true",
                    help="also the image encoder an IP-Adapter model's EEG head is trained against "
                         "('finetune --route ip-adapter'; ViT-H/14 for sdxl-turbo-ip)")
    dp.set_defaults(func=cmd_download)
    p.set_defaults(func=lambda args: cmd_list(args))


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "repository", "size", "steps", "cached", "description")]
    for spec in MODELS.values():
        repo = spec.repo_id or "(built locally)"
        if spec.vae_repo_id:
            repo += f" + {spec.vae_repo_id}"
        if spec.lora_repo_id:
            repo += f" + {spec.lora_repo_id}"
        if spec.ip_adapter_repo_id:
            repo += f" + {spec.ip_adapter_repo_id}"
        cached = ("built" if is_cached(spec) else "no") if spec.repo_id is None else \
            ("yes" if is_cached(spec) else "no")
        name = spec.name + (" *" if spec.name == DEFAULT_MODEL else "")
        rows.append((name, repo, str(spec.size), str(spec.steps), cached, spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    print("* used by --model auto when cached or downloadable; otherwise auto runs 'tiny'")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    name = args.name
    spec = MODELS.get(name) or (spec_for_repo(name) if "/" in name else None)
    if spec is None:
        if "/" not in name:
            raise BciDreamError(f"unknown model '{name}'; models: {', '.join(MODELS)} (or a hub id owner/name)")
        resolved = resolve_model(name, progress=not args.quiet)
    elif is_cached(spec):
        resolved = resolve_model(spec.name)
        print(f"{spec.name} is already {'built' if spec.repo_id is None else 'in the Hugging Face cache'}", flush=True)
    else:
        resolved = download(spec, progress=not args.quiet)
    where = resolved.folder if resolved.vae_folder is None else f"{resolved.folder} and {resolved.vae_folder}"
    print(f"{resolved.model_id}: ready in {where}", flush=True)
    if args.for_training and spec is not None:
        encoder = download_image_encoder(spec, progress=not args.quiet)
        print(f"image encoder for training: {encoder or 'none (this model has no IP-Adapter)'}", flush=True)
    return 0
