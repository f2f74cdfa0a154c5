"""An image bank: images in CLIP image-embedding space, the prior that pulls a predicted embedding towards them, and
the retrieval mode that shows the nearest one.

A bank is built once from a folder of images (searched recursively: the calibration stimuli, any folder) with the
CLIP vision model the EEG model's CLIP head was trained against, and saved as a ``.safetensors`` file: the tensor
``embeddings`` [N, P] (CLIP's ``image_embeds``, as the model gives them, not normalised: the scale IP-Adapter was
trained on) and in the metadata the format, the CLIP model and the images' paths.

The prior (:func:`apply_prior`): the predicted embedding's cosine to every bank image, the top ``k`` of them
weighted by a softmax with a temperature, their embeddings mixed by those weights. With ``k = 1`` it is retrieval:
the nearest bank image itself — honest, instant, and a control condition for experiments.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.io.image_file import IMAGE_SUFFIXES
from bci_dream.loading.vision_models import clip_image_embeds, load_clip_vision

log = logging.getLogger(__name__)

FORMAT = "bci-dream-image-bank"
BANK_SUFFIX = ".safetensors"
#: A calibrated subject's bank of its stimuli, in the subject folder (the CLIP routes' default bank).
SUBJECT_BANK = "bank.safetensors"
#: The prior's defaults: the 5 nearest bank images, softmax temperature 0.05 on their cosines.
TOP_K, TEMPERATURE = defaults.BANK_K, defaults.BANK_TEMPERATURE


class ImageBankError(BciDreamError):
    """An image bank is missing, empty, unreadable, or was built with another CLIP model."""


@dataclass(frozen=True)
class ImageBank:
    """Images in CLIP image-embedding space.

    Attributes:
        embeddings: float32 [N, P], CLIP ``image_embeds`` of the images (not normalised).
        images: the images' paths, one per row.
        clip_model: the CLIP vision model that embedded them (hub id or folder, as given).
    """

    embeddings: torch.Tensor
    images: tuple[str, ...]
    clip_model: str

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def width(self) -> int:
        """P, the embedding width."""
        return int(self.embeddings.shape[1])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank to ``path`` (``.safetensors``), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"embeddings": self.embeddings.contiguous().float().cpu()}, str(tmp),
                  metadata={"format": FORMAT, "clip_model": self.clip_model, "images": json.dumps(list(self.images))})
        os.replace(tmp, path)
        return path

    def check_clip_model(self, clip_model: str, source: str | os.PathLike) -> None:
        """Raise :class:`ImageBankError` when the bank was built with another CLIP model than ``clip_model``."""
        if _same_model(self.clip_model, clip_model):
            return
        raise ImageBankError(f"the image bank {source} was built with the CLIP model {self.clip_model}, but the EEG "
                             f"model's embeddings are in {clip_model}'s space; build the bank again with "
                             f"--clip-model {clip_model}")


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def bank_images(folder: str | os.PathLike) -> list[Path]:
    """The image files under ``folder`` (recursively, hidden ones left out), sorted by path.

    Raises:
        ImageBankError: the folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageBankError(f"image bank folder {folder} does not exist")
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not images:
        raise ImageBankError(f"image bank folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def build_bank(folder: str | os.PathLike, clip_model: str | os.PathLike, *, device: str = "cpu",
               batch_size: int = 16) -> ImageBank:
    """Embed every image under ``folder`` with ``clip_model`` (see :func:`bank_images`).

    Raises:
        ImageBankError: no images; ImageFileError: an image cannot be read; ModelLoadError: CLIP cannot be loaded.
    """
    return embed_images(bank_images(folder), clip_model, device=device, batch_size=batch_size)


def embed_images(images: Sequence[str | os.PathLike], clip_model: str | os.PathLike, *, device: str = "cpu",
                 batch_size: int = 16) -> ImageBank:
    """A bank of the images at ``images`` (e.g. a calibration's stimuli), embedded with ``clip_model``.

    Raises:
        ImageBankError: no images; ImageFileError: an image cannot be read; ModelLoadError: CLIP cannot be loaded.
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise ImageBankError("an image bank needs at least one image")
    model, processor = load_clip_vision(clip_model, device=device)
    embeddings = torch.from_numpy(clip_image_embeds(paths, model, processor, batch_size=batch_size))
    log.info("image bank: %d images embedded with %s", len(paths), clip_model)
    return ImageBank(embeddings, tuple(str(p) for p in paths), str(clip_model))


def load_bank(path: str | os.PathLike, *, clip_model: str | None = None) -> ImageBank:
    """Read a bank written by :meth:`ImageBank.save`; with ``clip_model``, check that it was built with that model.

    Raises:
        ImageBankError: the file is missing, unreadable, not a bank, empty, or of another CLIP model (one line,
            naming the file).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ImageBankError(f"image bank {path} does not exist; build one with 'bci-dream bank FOLDER -o {path.name}'")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or "embeddings" not in f.keys():
                raise ImageBankError(f"{path} is not a bci-dream image bank (format {meta.get('format')!r})")
            embeddings = f.get_tensor("embeddings").float()
        images = tuple(json.loads(meta.get("images", "[]")))
    except (OSError, SafetensorError, ValueError) as e:
        raise ImageBankError(f"cannot read image bank {path}: {e}") from e
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ImageBankError(f"image bank {path} is empty; build it from a folder that holds images")
    if len(images) != embeddings.shape[0] or not torch.isfinite(embeddings).all():
        raise ImageBankError(f"image bank {path} is damaged ({embeddings.shape[0]} embeddings, {len(images)} "
                             "image names, or values that are not finite); build it again")
    bank = ImageBank(embeddings, images, meta.get("clip_model", "?"))
    if clip_model is not None:
        bank.check_clip_model(clip_model, path)
    return bank


def bank_from(source: str | os.PathLike, clip_model: str | os.PathLike, *, device: str = "cpu") -> ImageBank:
    """A bank from ``source``: a ``.safetensors`` bank file (checked against ``clip_model``) or a folder of images
    (embedded now)."""
    source = Path(source)
    if source.suffix == BANK_SUFFIX or source.is_file():
        return load_bank(source, clip_model=str(clip_model))
    return build_bank(source, clip_model, device=device)


@dataclass(frozen=True)
class PriorResult:
    """What :func:`apply_prior` made of one prediction.

    Attributes:
        embedding: float32 [P], the embedding to generate from (in the bank's scale).
        indices: the bank rows used, nearest first [k].
        weights: their softmax weights [k] (sum 1).
        cosines: the prediction's cosine to each of them [k].
    """

    embedding: torch.Tensor
    indices: list[int]
    weights: list[float]
    cosines: list[float]

    @property
    def nearest(self) -> int:
        """The bank row nearest the prediction (the image retrieval shows)."""
        return self.indices[0]


def apply_prior(predicted: torch.Tensor, bank: ImageBank, *, k: int = TOP_K,
                temperature: float = TEMPERATURE) -> PriorResult:
    """Pull ``predicted`` [P] towards the bank: the softmax(cosine / ``temperature``)-weighted mix of the embeddings
    of its ``k`` nearest bank images (by cosine). ``k = 1`` is retrieval: the nearest image's own embedding.

    Raises:
        ImageBankError: the prediction's width is not the bank's (both named), or ``k`` / ``temperature`` out of range.
    """
    if predicted.ndim != 1 or predicted.shape[0] != bank.width:
        raise ImageBankError(f"a CLIP embedding of shape {list(predicted.shape)} does not fit an image bank of width "
                             f"{bank.width}; build the bank with the CLIP model the EEG model was trained against")
    if k < 1:
        raise ImageBankError(f"the bank prior needs k >= 1, not {k}")
    if not temperature > 0:
        raise ImageBankError(f"the bank prior's temperature must be positive, not {temperature}")
    embeddings = bank.embeddings.to(predicted.device)
    cosines = F.normalize(embeddings, dim=-1) @ F.normalize(predicted.float(), dim=0)
    top = torch.topk(cosines, min(k, len(bank)))
    weights = torch.softmax(top.values / temperature, dim=0)
    mixed = weights @ embeddings[top.indices]
    return PriorResult(mixed, top.indices.tolist(), weights.tolist(), top.values.tolist())
