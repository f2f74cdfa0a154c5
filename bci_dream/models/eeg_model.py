"""The EEG model as trained and shipped: encoder + conditioning head + CLIP head + preprocessing spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from bci_dream.models.encoder import EegEncoder, EncoderConfig
from bci_dream.models.heads import ClipHead, ConditioningHead


@dataclass(frozen=True)
class Preprocessing:
    """How windows are made for this model (the live path and training must agree).

    Attributes:
        bandpass: band-pass edges in Hz, or None.
        notch: line-noise notch in Hz, or None (the device's setting is used live when None).
        montage: name of the canonical montage (``"canonical-128"``).
        normalization: name of the per-window normalisation (``"robust-channel-scale"``).
    """

    bandpass: tuple[float, float] | None = (1.0, 45.0)
    notch: float | None = 50.0
    montage: str = "canonical-128"
    normalization: str = "robust-channel-scale"


@dataclass(frozen=True)
class EegModelConfig:
    """Everything needed to rebuild an :class:`EegModel` (stored as ``config.json``)."""

    encoder: EncoderConfig
    cross_attention_dim: int | None = 1024
    clip_projection_dim: int | None = 768
    out_tokens: int = 77
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EegModelConfig":
        pre = d.get("preprocessing") or {}
        if pre.get("bandpass") is not None:
            pre = {**pre, "bandpass": tuple(pre["bandpass"])}
        return cls(encoder=EncoderConfig.from_dict(d["encoder"]),
                   cross_attention_dim=d.get("cross_attention_dim"),
                   clip_projection_dim=d.get("clip_projection_dim"),
                   out_tokens=int(d.get("out_tokens", 77)),
                   preprocessing=Preprocessing(**pre))


class EegModel(nn.Module):
    """Encoder plus the heads named in ``config`` (a head is absent when its width is None)."""

    def __init__(self, config: EegModelConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        self.encoder = EegEncoder(enc)
        self.conditioning = (ConditioningHead(enc.num_patches, enc.embed_dim, config.cross_attention_dim,
                                              config.out_tokens) if config.cross_attention_dim else None)
        self.clip = ClipHead(enc.num_patches, enc.embed_dim, config.clip_projection_dim) \
            if config.clip_projection_dim else None

    def prompt_embeds(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B, C, T] → Stable Diffusion ``prompt_embeds`` [B, 77, cross_attention_dim]."""
        if self.conditioning is None:
            raise ValueError("this model has no conditioning head")
        return self.conditioning(self.encoder.embed(x, mask))

    def clip_embeds(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B, C, T] → vectors [B, projection_dim] in CLIP image-embedding space."""
        if self.clip is None:
            raise ValueError("this model has no CLIP head")
        return self.clip(self.encoder.embed(x, mask))
