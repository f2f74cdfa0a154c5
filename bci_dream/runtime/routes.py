"""Conditioning routes: how an EEG window's embedding becomes an image.

- ``dreamdiffusion``: the conditioning head's prompt embeddings [1, 77, D] go to the UNet's cross-attention (the
  route DreamDiffusion trains; interpolation is linear).
- ``ip-adapter``: the CLIP head's image embedding [1, P], optionally pulled towards an image bank
  (:func:`bci_dream.generation.image_bank.apply_prior`), conditions a frozen model through its IP-Adapter
  (interpolation on the sphere).
- ``retrieval``: the bank image nearest the CLIP head's embedding is shown itself (no diffusion: instant, and a
  control condition).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from bci_dream.core.errors import BciDreamError
from bci_dream.generation.image_bank import TEMPERATURE, TOP_K, ImageBank, apply_prior
from bci_dream.generation.session_models import ROUTES
from bci_dream.io.image_file import read_image

log = logging.getLogger(__name__)

DREAMDIFFUSION, IP_ADAPTER, RETRIEVAL = ROUTES


class RouteError(BciDreamError):
    """A route cannot run with this EEG model, generator or bank (one line naming what does not fit)."""


@dataclass(frozen=True)
class RouteSettings:
    """How windows become images.

    Attributes:
        route: one of :data:`ROUTES`.
        bank: the image bank of the prior (``ip-adapter``, optional) or of retrieval (required).
        k, temperature: the prior's top-k and softmax temperature (retrieval uses k = 1).
    """

    route: str = DREAMDIFFUSION
    bank: ImageBank | None = None
    k: int = TOP_K
    temperature: float = TEMPERATURE

    @property
    def uses_clip(self) -> bool:
        """The route conditions on the CLIP head's embedding."""
        return self.route != DREAMDIFFUSION


def check_route(settings: RouteSettings, eeg_model, generator) -> None:
    """Raise :class:`RouteError` when the route cannot run: an unknown route, a model without the head it needs,
    widths that do not fit (both named), retrieval without a bank."""
    if settings.route not in ROUTES:
        raise RouteError(f"unknown route '{settings.route}'; choose {', '.join(ROUTES)}")
    if not settings.uses_clip:
        return
    if eeg_model.clip is None:
        raise RouteError(f"the {settings.route} route needs an EEG model with a CLIP head; this one has none "
                         "(fine-tune one against the CLIP model of the IP-Adapter's image encoder)")
    width = int(eeg_model.config.clip_projection_dim)
    if settings.route == IP_ADAPTER and generator.image_embed_dim != width:
        if generator.image_embed_dim is None:
            raise RouteError(f"the ip-adapter route needs a generator with an IP-Adapter; {generator.model_id} has "
                             "none (give --ip-adapter FILE)")
        raise RouteError(f"the EEG model's CLIP head predicts embeddings of width {width}, but the IP-Adapter of "
                         f"{generator.model_id} takes width {generator.image_embed_dim}; use the adapter made for the "
                         "image encoder the EEG model was trained against")
    if settings.route == RETRIEVAL and settings.bank is None:
        raise RouteError("the retrieval route needs an image bank (give --bank FOLDER or FILE)")
    if settings.bank is not None and settings.bank.width != width:
        raise RouteError(f"the image bank holds embeddings of width {settings.bank.width}, but the EEG model's CLIP "
                         f"head predicts width {width}; build the bank with the CLIP model the EEG model was trained "
                         "against")


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Between embeddings ``a`` and ``b`` (same shape) on the sphere: their directions by spherical interpolation,
    their norms linearly (linear interpolation where they are nearly parallel)."""
    af, bf = a.flatten().float(), b.flatten().float()
    na, nb = af.norm(), bf.norm()
    ua, ub = af / na.clamp_min(1e-12), bf / nb.clamp_min(1e-12)
    cos = torch.clamp(ua @ ub, -1.0, 1.0)
    omega = torch.arccos(cos)
    if float(omega) < 1e-4:
        return torch.lerp(a.float(), b.float(), alpha).to(a.dtype)
    direction = (torch.sin((1 - alpha) * omega) * ua + torch.sin(alpha * omega) * ub) / torch.sin(omega)
    return (direction * torch.lerp(na, nb, alpha)).reshape(a.shape).to(a.dtype)


@dataclass
class Conditioning:
    """One window's conditioning: ``embeds`` (prompt embeddings [1, 77, D] or a CLIP embedding [1, P]) and the bank
    rows it came from (nearest first; empty without a bank)."""

    embeds: torch.Tensor
    bank_rows: list[int]


def condition(settings: RouteSettings, embeds: torch.Tensor) -> Conditioning:
    """The encoder's output for one window → what the route generates from (the bank prior applied)."""
    if not settings.uses_clip or settings.bank is None:
        return Conditioning(embeds, [])
    k = 1 if settings.route == RETRIEVAL else settings.k
    prior = apply_prior(embeds.reshape(-1).float(), settings.bank, k=k, temperature=settings.temperature)
    return Conditioning(prior.embedding[None].to(embeds.dtype), prior.indices)


def between(settings: RouteSettings, a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """An interpolated frame's embedding: linear for prompt embeddings, on the sphere for CLIP embeddings."""
    return slerp(a, b, alpha) if settings.uses_clip else torch.lerp(a, b, alpha)


class BankImages:
    """The bank's images, read once each and sized for the frames (retrieval shows them as they are)."""

    def __init__(self, bank: ImageBank, size: int) -> None:
        self.bank, self.size = bank, int(size)
        self._cache: dict[int, Any] = {}

    def image(self, row: int):
        """The image of bank row ``row``, square, ``size`` pixels (centre-cropped), RGB."""
        if row not in self._cache:
            from PIL import ImageOps

            self._cache[row] = ImageOps.fit(read_image(self.bank.images[row]), (self.size, self.size))
        return self._cache[row]
