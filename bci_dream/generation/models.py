"""The diffusion models bci-dream can generate with: a registry, the Hugging Face cache, downloads.

Registry names (``bci-dream models list``):

- ``sd-turbo`` (default): ``stabilityai/sd-turbo`` with the ``madebyollin/taesd`` decoder
  (AutoencoderTiny), 512 x 512, 1 step, guidance 0; cross-attention width 1024.
- ``sdxl-turbo``: ``stabilityai/sdxl-turbo`` with ``madebyollin/taesdxl``, 512 x 512, 1 step,
  guidance 0; cross-attention width 2048 plus a pooled embedding of 1280.
- ``lcm-sd15``: Stable Diffusion 1.5 with the LCM-LoRA (``latent-consistency/lcm-lora-sdv1-5``,
  fused at load) and the LCM scheduler, 4 steps, guidance 1, taesd; cross-attention width 768.
- ``sdxl-turbo-ip``: SDXL-Turbo with h94/IP-Adapter's ``ip-adapter_sdxl_vit-h`` (the CLIP-image-embedding route:
  the EEG model predicts a ViT-H/14 image embedding, 1024 wide, as h94's ``models/image_encoder`` gives it).
- ``lcm-sd15-ip``: ``lcm-sd15`` with h94/IP-Adapter's ``ip-adapter_sd15`` (the same ViT-H/14 embeddings): the
  lighter model of that route.
- ``tiny``: an SD-Turbo-shaped pipeline with small widths and *random weights*, built on first use
  into ``$XDG_CACHE_HOME/bci-dream/tiny-sd-turbo`` (``~/.cache/...``) and loaded from there with
  ``from_pretrained`` like any other model. Its images mean nothing: every output is labelled
  "untrained preview model". Tests and offline demos use it.
- ``tiny-sdxl-ip``: the same for the IP-Adapter route: an SDXL-Turbo-shaped pipeline with a random-weight
  IP-Adapter in h94's file layout, built locally into ``.../bci-dream/tiny-sdxl-ip``.

Only what generation needs is downloaded (``allow_patterns``): the UNet (fp16 safetensors), the
scheduler, the small decoder repo, the LoRA, the IP-Adapter; the text encoders and tokenizers only for the models
that encode a prompt every session (SDXL's pooled embedding, the IP-Adapter route's text side; the others fetch
them on their first ``--prompt``); never safety checkers or ``.bin``/``.ckpt`` duplicates. Downloads go to the
Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``)
with huggingface_hub's progress bars.

This module imports no torch at load time (``bci-dream models list`` stays quick).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError, first_line
from bci_dream.generation.tiny import (
    build_tiny_clip_vision,
    build_tiny_ip_adapter,
    build_tiny_sd_turbo,
    build_tiny_sdxl_turbo,
)
from bci_dream.loading.hub import hub_reachable, hub_subfolder, is_local, quiet, quiet_transformers
from bci_dream.loading.pipeline_folder import (
    DIFFUSERS_WEIGHTS_STEM,
    check_pipeline_folder,
    missing_pipeline_files,
    pipeline_kind,
)
from bci_dream.loading.text_encoders import TEXT_PARTS, missing_text_files, text_patterns
from bci_dream.loading.unet_adapter import DIFFUSERS_LORA_WEIGHTS

log = logging.getLogger(__name__)

#: Bumped whenever :func:`build_tiny_sd_turbo`'s output for the ``tiny`` model changes: older
#: builds in the user cache are rebuilt.
TINY_VERSION = 3
#: Latent side of the ``tiny`` model built into the cache (256-pixel images).
TINY_SAMPLE_SIZE = 32
TINY_MARKER = "bci_dream_tiny.json"
#: The ``tiny-sdxl-ip`` preview's IP-Adapter file (in its folder) and image-embedding width.
TINY_IP_ADAPTER, TINY_IP_WIDTH = "ip-adapter.safetensors", 32
#: The ``tiny-sdxl-ip`` preview's image encoder (a tiny CLIP vision model, in its folder).
TINY_IMAGE_ENCODER = "image_encoder"


@dataclass(frozen=True)
class ModelSpec:
    """One generator model.

    Attributes:
        name: registry name (``bci-dream models ...``, ``--model NAME``).
        repo_id: Hugging Face repo of the diffusers pipeline (None for ``tiny``, built locally).
        vae_repo_id: repo of an ``AutoencoderTiny`` decoder used instead of the pipeline's vae, or None.
        kind: ``"sd"`` (StableDiffusionPipeline) or ``"sdxl"`` (StableDiffusionXLPipeline).
        size: default image side in pixels (on a GPU; the CPU default is at most 256).
        steps: default denoising steps.
        guidance: classifier-free guidance scale (<= 1: no guidance, one UNet pass per step).
        lora_repo_id: repo of a LoRA fused into the UNet at load (LCM-LoRA), or None.
        scheduler: diffusers scheduler class to use instead of the pipeline's, or None.
        variant: weights variant to download (``"fp16"``) or None for the plain files.
        description: one line for ``bci-dream models list``.
        is_preview: random weights (``tiny``): images carry the "untrained preview model" label.
        ip_adapter_repo_id, ip_adapter_file: the IP-Adapter loaded with the model (repo and path in it; for a
            locally built preview, the file name in its folder), or None.
        route: the conditioning route the model serves by default (``ip-adapter`` for those with an adapter).
        image_encoder: the CLIP vision model whose image embeddings the IP-Adapter takes (what the EEG model's
            CLIP head is trained against): a hub id with its subfolder, or, for a locally built preview, a folder in
            it; None without an adapter.
    """
    name: str
    repo_id: str | None
    vae_repo_id: str | None
    kind: str
    size: int
    steps: int
    guidance: float
    lora_repo_id: str | None = None
    scheduler: str | None = None
    variant: str | None = "fp16"
    description: str = ""
    is_preview: bool = False
    ip_adapter_repo_id: str | None = None
    ip_adapter_file: str | None = None
    route: str = "dreamdiffusion"
    image_encoder: str | None = None


MODELS: dict[str, ModelSpec] = {
    "sd-turbo": ModelSpec(
        "sd-turbo", defaults.DIFFUSION_MODEL, "madebyollin/taesd", "sd", 512, 1, 0.0,
        description="SD-Turbo (SD 2.1 distilled), 1 step, TAESD decoder; the default"),
    "sdxl-turbo": ModelSpec(
        "sdxl-turbo", "stabilityai/sdxl-turbo", "madebyollin/taesdxl", "sdxl", 512, 1, 0.0,
        description="SDXL-Turbo (2.6 B-parameter UNet), 1 step, TAESDXL decoder; cross-attention width 2048"),
    "lcm-sd15": ModelSpec(
        "lcm-sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "madebyollin/taesd", "sd", 512, 4, 1.0,
        lora_repo_id="latent-consistency/lcm-lora-sdv1-5", scheduler="LCMScheduler",
        description="Stable Diffusion 1.5 + LCM-LoRA, 4 steps, TAESD decoder; cross-attention width 768"),
    "sdxl-turbo-ip": ModelSpec(
        "sdxl-turbo-ip", "stabilityai/sdxl-turbo", "madebyollin/taesdxl", "sdxl", 512, 1, 0.0,
        ip_adapter_repo_id="h94/IP-Adapter", ip_adapter_file="sdxl_models/ip-adapter_sdxl_vit-h.safetensors",
        route="ip-adapter", image_encoder="h94/IP-Adapter/models/image_encoder",
        description="SDXL-Turbo + IP-Adapter SDXL (ViT-H/14 image embeddings, 1024): the CLIP-embedding route"),
    "lcm-sd15-ip": ModelSpec(
        "lcm-sd15-ip", "stable-diffusion-v1-5/stable-diffusion-v1-5", "madebyollin/taesd", "sd", 512, 4, 1.0,
        lora_repo_id="latent-consistency/lcm-lora-sdv1-5", scheduler="LCMScheduler",
        ip_adapter_repo_id="h94/IP-Adapter", ip_adapter_file="models/ip-adapter_sd15.safetensors",
        route="ip-adapter", image_encoder="h94/IP-Adapter/models/image_encoder",
        description="SD 1.5 + LCM-LoRA + IP-Adapter SD 1.5 (ViT-H/14 image embeddings, 1024), 4 steps: the "
                    "lighter CLIP-embedding route"),
    "tiny": ModelSpec(
        "tiny", None, None, "sd", TINY_SAMPLE_SIZE * 8, 1, 0.0, variant=None, is_preview=True,
        description="untrained preview: SD-Turbo-shaped, small widths, random weights, built locally"),
    "tiny-sdxl-ip": ModelSpec(
        "tiny-sdxl-ip", None, None, "sdxl", TINY_SAMPLE_SIZE * 8, 1, 0.0, variant=None, is_preview=True,
        ip_adapter_file=TINY_IP_ADAPTER, route="ip-adapter", image_encoder=TINY_IMAGE_ENCODER,
        description="untrained preview of the IP-Adapter route: SDXL-Turbo-shaped with an IP-Adapter (image "
                    f"embeddings {TINY_IP_WIDTH} wide), random weights, built locally"),
}
DEFAULT_MODEL = "sd-turbo"
AUTO = "auto"


class ModelNotAvailableError(BciDreamError):
    """A model is neither a local folder nor in the cache, and cannot be downloaded now.

    ``reason`` is the short cause (e.g. "the Hugging Face hub cannot be reached from here").
    """
    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class ResolvedModel:
    """A model made local: the folders :func:`bci_dream.generation.generator.load_generator` loads.

    Attributes:
        spec: the registry entry (for a hub id or folder outside the registry, one made up from
            ``model_index.json`` with the defaults of its kind).
        folder: the diffusers pipeline folder (a hub-cache snapshot, the tiny build, or the user's).
        vae_folder: folder of the ``AutoencoderTiny`` replacing the pipeline's vae, or None.
        lora_folder: folder with ``pytorch_lora_weights.safetensors`` to fuse, or None.
        ip_adapter: the IP-Adapter file loaded with the model, or None.
        model_id: what the frames name as their model (registry name, hub id or folder).
        fallback: the one-line reason when ``auto`` fell back to ``tiny``, else None.
    """
    spec: ModelSpec
    folder: Path
    vae_folder: Path | None = None
    lora_folder: Path | None = None
    model_id: str = ""
    fallback: str | None = None
    ip_adapter: Path | None = None

    @property
    def is_preview(self) -> bool:
        return self.spec.is_preview


# -- the tiny model -------------------------------------------------------------------------------

def cache_root() -> Path:
    """bci-dream's own cache folder: ``$XDG_CACHE_HOME/bci-dream`` (default ``~/.cache/bci-dream``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bci-dream"


def tiny_folder(name: str = "tiny") -> Path:
    """Where the locally built preview model ``name`` (``tiny`` or ``tiny-sdxl-ip``) lives."""
    return cache_root() / ("tiny-sd-turbo" if name == "tiny" else name)


def _tiny_marker(name: str = "tiny") -> dict:
    marker = {"version": TINY_VERSION, "sample_size": TINY_SAMPLE_SIZE, "seed": 0}
    return marker if name == "tiny" else {**marker, "model": name, "ip_width": TINY_IP_WIDTH}


def _tiny_ok(folder: Path, name: str = "tiny") -> bool:
    try:
        marker = json.loads((folder / TINY_MARKER).read_text())
    except (OSError, ValueError):
        return False
    spec = MODELS[name]
    return marker == _tiny_marker(name) and not missing_pipeline_files(folder) and \
        not missing_text_files(folder, spec.kind) and \
        (spec.ip_adapter_file is None or (folder / spec.ip_adapter_file).is_file()) and \
        (spec.image_encoder is None or (folder / spec.image_encoder / "config.json").is_file())


def _tiny_name(folder: Path) -> str:
    """Which preview model the build in ``folder`` is (``tiny`` or ``tiny-sdxl-ip``), from its marker."""
    try:
        name = json.loads((folder / TINY_MARKER).read_text()).get("model", "tiny")
    except (OSError, ValueError, AttributeError):
        name = "tiny"
    return name if name in MODELS and MODELS[name].repo_id is None else "tiny"


def ensure_tiny(name: str = "tiny") -> Path:
    """The folder of the preview model ``name`` (``tiny``, or ``tiny-sdxl-ip`` with its IP-Adapter), built (random
    weights, seed 0) if it is missing or out of date."""
    folder = tiny_folder(name)
    if _tiny_ok(folder, name):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed, so that a half-written build is never loaded.
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=folder.parent))
    try:
        # ("text_encoder=None ... cannot be saved": by design; transformers' "writing shards" bar: noise)
        with quiet("diffusers.pipelines.pipeline_utils"), quiet_transformers():
            if name == "tiny":
                build_tiny_sd_turbo(tmp, seed=0, sample_size=TINY_SAMPLE_SIZE, text=True)
            else:
                build_tiny_sdxl_turbo(tmp, seed=0, sample_size=TINY_SAMPLE_SIZE, text=True)
                build_tiny_ip_adapter(tmp, tmp, image_embed_dim=TINY_IP_WIDTH, seed=0)
                build_tiny_clip_vision(tmp / TINY_IMAGE_ENCODER, projection_dim=TINY_IP_WIDTH, seed=0)
        (tmp / TINY_MARKER).write_text(json.dumps(_tiny_marker(name)))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as e:
        raise BciDreamError(f"cannot build the tiny preview model in {folder}: {e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("built the %s preview model (random weights) in %s", name, folder)
    return folder


# -- the Hugging Face cache -----------------------------------------------------------------------

def _pipeline_patterns(spec: ModelSpec) -> list[str]:
    suffix = f".{spec.variant}" if spec.variant else ""
    patterns = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                f"unet/{DIFFUSERS_WEIGHTS_STEM}{suffix}.safetensors"]
    if spec.vae_repo_id is None:
        patterns += ["vae/config.json", f"vae/{DIFFUSERS_WEIGHTS_STEM}{suffix}.safetensors"]
    if needs_text_encoders(spec):
        patterns += text_patterns(spec.kind, spec.variant)
    return patterns


def needs_text_encoders(spec: ModelSpec) -> bool:
    """Whether every session of ``spec`` encodes a prompt (SDXL's pooled embedding; the IP-Adapter route's text
    side), so that its text encoders are downloaded with it. Other models fetch them on their first prompt."""
    return spec.kind == "sdxl" or spec.route == "ip-adapter"


def _vae_patterns() -> list[str]:
    return ["config.json", f"{DIFFUSERS_WEIGHTS_STEM}.safetensors"]


def _cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - a damaged cache entry counts as not cached
        return False


def _cached_any(repo_id: str, filenames: list[str]) -> bool:
    return any(_cached(repo_id, f) for f in filenames)


def _weight_names(prefix: str) -> list[str]:
    return [f"{prefix}{DIFFUSERS_WEIGHTS_STEM}{v}.safetensors" for v in ("", ".fp16")]


def is_cached(spec: ModelSpec) -> bool:
    """Whether everything ``spec`` needs is in the Hugging Face cache (``tiny``: already built)."""
    if spec.repo_id is None:
        return _tiny_ok(tiny_folder(spec.name), spec.name)
    if spec.ip_adapter_repo_id and not _cached(spec.ip_adapter_repo_id, spec.ip_adapter_file):
        return False
    repo = spec.repo_id
    if not all(_cached(repo, f) for f in ("model_index.json", "scheduler/scheduler_config.json", "unet/config.json")):
        return False
    if not _cached_any(repo, _weight_names("unet/")):
        return False
    if spec.vae_repo_id is None:
        if not (_cached(repo, "vae/config.json") and _cached_any(repo, _weight_names("vae/"))):
            return False
    elif not all(_cached(spec.vae_repo_id, f) for f in _vae_patterns()):
        return False
    if needs_text_encoders(spec) and not _text_cached(spec):
        return False
    return spec.lora_repo_id is None or _cached(spec.lora_repo_id, DIFFUSERS_LORA_WEIGHTS)


def _text_cached(spec: ModelSpec) -> bool:
    return all(_cached(spec.repo_id, f"{encoder}/config.json") and
               _cached_any(spec.repo_id, [f"{encoder}/model{v}.safetensors" for v in ("", ".fp16")]) and
               _cached(spec.repo_id, f"{tokenizer}/tokenizer_config.json")
               for encoder, tokenizer in TEXT_PARTS[spec.kind])


def text_encoder_folder(resolved: ResolvedModel, *, progress: bool = True) -> Path:
    """The pipeline folder of ``resolved`` with its text encoders and tokenizers in it: the model's own folder, or,
    for a hub model whose cached snapshot lacks them, the snapshot after downloading them (said in one line).

    Raises:
        ModelNotAvailableError: a folder without them, or a hub model whose text encoders cannot be downloaded now.
    """
    spec, folder = resolved.spec, Path(resolved.folder)
    missing = missing_text_files(folder, spec.kind)
    if not missing:
        return folder
    repo = spec.repo_id or (resolved.model_id if not is_local(resolved.model_id) else None)
    if repo is None:
        raise ModelNotAvailableError(f"model folder {folder} lacks {', '.join(missing)}: a prompt cannot be encoded "
                                     "without the pipeline's text encoders")
    patterns = text_patterns(spec.kind, spec.variant if spec.repo_id else None)
    try:
        cached = _snapshot(repo, patterns, local_files_only=True)
        if not missing_text_files(cached, spec.kind):
            return cached
    except Exception:  # noqa: BLE001 - not cached: download below
        pass
    if not hub_reachable():
        raise ModelNotAvailableError(f"the text encoders of {repo} are not in the Hugging Face cache and the hub "
                                     "cannot be reached from here; run without a prompt, or download them where "
                                     f"there is a network ('bci-dream models download {spec.name}')")
    log.warning("downloading the text encoders of %s (once) to encode the prompt", repo)
    try:
        return _snapshot(repo, patterns, local_files_only=False, progress=progress)
    except Exception as e:
        raise ModelNotAvailableError(f"downloading the text encoders of {repo} failed: {first_line(e)}") from e


def _snapshot(repo_id: str, patterns: list[str] | None = None, *, local_files_only: bool,
              progress: bool = True) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_files_only))
    finally:
        if not progress and not was_disabled:
            enable_progress_bars()


def _resolved(spec: ModelSpec, *, local_files_only: bool, progress: bool = True,
              model_id: str | None = None) -> ResolvedModel:
    """Snapshot folders of ``spec``'s repos (from the cache, or downloaded)."""
    assert spec.repo_id is not None
    folder = _snapshot(spec.repo_id, _pipeline_patterns(spec), local_files_only=local_files_only, progress=progress)
    vae = lora = None
    if spec.vae_repo_id:
        vae = _snapshot(spec.vae_repo_id, _vae_patterns(), local_files_only=local_files_only, progress=progress)
    if spec.lora_repo_id:
        lora = _snapshot(spec.lora_repo_id, [DIFFUSERS_LORA_WEIGHTS], local_files_only=local_files_only, progress=progress)
    adapter = None
    if spec.ip_adapter_repo_id:
        adapter = _snapshot(spec.ip_adapter_repo_id, [spec.ip_adapter_file], local_files_only=local_files_only,
                            progress=progress) / spec.ip_adapter_file
    return ResolvedModel(spec, folder, vae, lora, model_id or spec.name, ip_adapter=adapter)


def download(spec: ModelSpec, progress: bool = True) -> ResolvedModel:
    """Download what ``spec`` needs into the Hugging Face cache (``tiny``: build it); returns the folders.

    Raises:
        ModelNotAvailableError: the hub cannot be reached or did not provide a file (one line).
    """
    if spec.repo_id is None:
        return _resolved_tiny(spec)
    if not hub_reachable():
        reason = "the Hugging Face hub cannot be reached from here"
        raise ModelNotAvailableError(f"cannot download {spec.name} ({spec.repo_id}): {reason}", reason)
    try:
        resolved = _resolved(spec, local_files_only=False, progress=progress)
    except Exception as e:
        reason = f"the download failed: {first_line(e)}"
        raise ModelNotAvailableError(f"downloading {spec.name} ({spec.repo_id}) failed: {first_line(e)}",
                                     reason) from e
    if not is_cached(spec):
        reason = "the hub did not provide every file it needs"
        raise ModelNotAvailableError(f"downloading {spec.name} ({spec.repo_id}): {reason}", reason)
    return resolved


def download_image_encoder(spec: ModelSpec, progress: bool = True) -> str | None:
    """Download the image encoder of ``spec``'s IP-Adapter (what ``finetune --route ip-adapter`` trains the CLIP head
    against; generation does not need it) into the Hugging Face cache; returns its name, None when it has none.

    Raises:
        ModelNotAvailableError: the hub cannot be reached or the download failed (one line).
    """
    if spec.image_encoder is None or spec.repo_id is None:
        return spec.image_encoder
    repo, sub = hub_subfolder(spec.image_encoder) or (spec.image_encoder, "")
    prefix = f"{sub}/" if sub else ""
    if not hub_reachable():
        raise ModelNotAvailableError(f"cannot download the image encoder {spec.image_encoder}: the Hugging Face hub "
                                     "cannot be reached from here")
    try:
        _snapshot(repo, [f"{prefix}config.json", f"{prefix}model.safetensors", f"{prefix}preprocessor_config.json"],
                  local_files_only=False, progress=progress)
    except Exception as e:
        raise ModelNotAvailableError(f"downloading the image encoder {spec.image_encoder} failed: "
                                     f"{first_line(e)}") from e
    return spec.image_encoder


# -- names, hub ids and folders -------------------------------------------------------------------

def spec_for_repo(repo_id: str) -> ModelSpec | None:
    """The registry entry whose pipeline repo is ``repo_id`` (case-insensitive), or None."""
    for spec in MODELS.values():
        if spec.repo_id and spec.repo_id.lower() == repo_id.lower():
            return spec
    return None


def _generic_spec(name: str, kind: str) -> ModelSpec:
    """Defaults for a pipeline outside the registry: its own vae and scheduler, 1 step, no guidance."""
    return ModelSpec(name, None, None, kind, 1024 if kind == "sdxl" else 512, 1, 0.0, variant=None,
                     description="user model")


def _resolve_hub(spec: ModelSpec, *, progress: bool) -> ResolvedModel:
    if is_cached(spec):
        return _resolved(spec, local_files_only=True)
    return download(spec, progress=progress)


def _resolve_other_hub_id(repo_id: str, *, progress: bool) -> ResolvedModel:
    """A hub id outside the registry: its cached snapshot, else a download of the parts generation needs."""
    try:
        folder = _snapshot(repo_id, local_files_only=True)
        if not missing_pipeline_files(folder):
            return ResolvedModel(_generic_spec(repo_id, pipeline_kind(folder)), folder, model_id=repo_id)
    except Exception as e:  # noqa: BLE001 - not cached
        log.debug("%s is not in the Hugging Face cache: %s", repo_id, e)
    if not hub_reachable():
        raise ModelNotAvailableError(
            f"model '{repo_id}' is not a local folder, not in the Hugging Face cache, and the hub cannot be reached "
            f"from here; download it first with 'hf download {repo_id}' or pass a local folder")
    try:
        from huggingface_hub import HfApi

        files = set(HfApi().list_repo_files(repo_id))
        variant = "fp16" if f"unet/{DIFFUSERS_WEIGHTS_STEM}.fp16.safetensors" in files else None
        probe = replace(_generic_spec(repo_id, "sd"), repo_id=repo_id, variant=variant)
        folder = _snapshot(repo_id, _pipeline_patterns(probe), local_files_only=False, progress=progress)
    except Exception as e:
        raise ModelNotAvailableError(f"cannot download '{repo_id}' from the Hugging Face hub: {first_line(e)}") from e
    check_pipeline_folder(folder)
    return ResolvedModel(_generic_spec(repo_id, pipeline_kind(folder)), folder, model_id=repo_id)


def _resolved_tiny(spec: ModelSpec) -> ResolvedModel:
    folder = ensure_tiny(spec.name)
    adapter = folder / spec.ip_adapter_file if spec.ip_adapter_file else None
    return ResolvedModel(spec, folder, model_id=spec.name, ip_adapter=adapter)


def image_encoder_of(resolved: ResolvedModel) -> str | None:
    """The CLIP vision model (hub id with subfolder, or folder) whose embeddings the IP-Adapter of ``resolved``
    takes, or None when the registry does not say."""
    encoder = resolved.spec.image_encoder
    if encoder is None:
        return None
    return str(Path(resolved.folder) / encoder) if resolved.spec.repo_id is None else encoder


def _unknown(name: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(f"unknown model '{name}'; use one of {', '.join([AUTO, *MODELS])}, a hub id "
                                  "(owner/name) or a diffusers pipeline folder")


def resolve_model(name_or_folder: str | os.PathLike = AUTO, *, progress: bool = True) -> ResolvedModel:
    """Make a model local: ``auto``, a registry name, a hub id, or a diffusers pipeline folder.

    ``auto`` is SD-Turbo when it is cached or can be downloaded now; when it cannot, one warning
    line says so and the untrained ``tiny`` preview model is used (``fallback`` holds that line).

    Raises:
        ModelNotAvailableError, ModelLoadError: one line naming the model and what is missing.
    """
    text = str(name_or_folder)
    if text == AUTO:
        spec = MODELS[DEFAULT_MODEL]
        try:
            return _resolve_hub(spec, progress=progress)
        except ModelNotAvailableError as e:
            line = (f"SD-Turbo is not cached and cannot be downloaded ({e.reason}); "
                    "running the untrained preview model 'tiny'")
            log.warning(line)
            tiny = MODELS["tiny"]
            return ResolvedModel(tiny, ensure_tiny(), model_id=tiny.name, fallback=line)
    if text in MODELS:
        spec = MODELS[text]
        if spec.repo_id is None:
            return _resolved_tiny(spec)
        try:
            return _resolve_hub(spec, progress=progress)
        except ModelNotAvailableError as e:
            raise ModelNotAvailableError(
                f"{e}; run 'bci-dream models download {spec.name}' where there is a network, or use --model tiny "
                "for the untrained preview") from e
    if is_local(text):
        folder = Path(text).expanduser()
        if not folder.exists() and "/" not in text and os.sep not in text:
            raise _unknown(text)
        check_pipeline_folder(folder)
        spec = _generic_spec(str(folder), pipeline_kind(folder))
        if (folder / TINY_MARKER).is_file():  # a copy of a preview build: still random weights
            spec = replace(MODELS[_tiny_name(folder)], name=str(folder))
        return ResolvedModel(spec, folder, model_id=str(folder))
    if "/" not in text:
        raise _unknown(text)
    spec = spec_for_repo(text)
    if spec is not None:
        return replace(_resolve_hub(spec, progress=progress), model_id=text)
    return _resolve_other_hub_id(text, progress=progress)
