"""The EEG model as trained and shipped: encoder + conditioning head + CLIP head + preprocessing spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from bci_dream.core import defaults
from bci_dream.models.encoder import EegEncoder
from bci_dream.models.encoder_config import EncoderConfig
from bci_dream.models.heads import ClipHead, ConditioningHead
from bci_dream.signal.normalize import NAME as NORMALIZATION

#: The montage windows are mapped into (``Montage.canonical()``), as checkpoints name it.
CANONICAL_MONTAGE = "canonical-128"


@dataclass(frozen=True)
class Preprocessing:
    """How windows are made for this model (the live path and training must agree).

    Attributes:
        bandpass: band-pass edges in Hz, or None.
        notch: line-noise notch in Hz, or None (the device's setting is used live when None).
        montage: name of the canonical montage (``"canonical-128"``).
        normalization: name of the per-window normalisation (``"robust-channel-scale"``).
        epoch_offset_s: the training epochs began this long (s) after each image onset (their length is the
            encoder's window); evaluation cuts epochs the same way. Live windows end at the newest sample.
        channels: the montage channels the model was fine-tuned on (a subject's headset), or None (any: a
            pretrained or untrained model). A live stream must supply them; others are left out of its windows.
    """

    bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ
    notch: float | None = defaults.NOTCH_HZ
    montage: str = CANONICAL_MONTAGE
    normalization: str = NORMALIZATION
    epoch_offset_s: float = defaults.EPOCH_OFFSET_S
    channels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EegModelConfig:
    """Everything needed to rebuild an :class:`EegModel` (stored as ``config.json``)."""

    encoder: EncoderConfig
    cross_attention_dim: int | None = 1024
    clip_projection_dim: int | None = 768
    out_tokens: int = 77
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    channel_adapter: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EegModelConfig":
        pre = d.get("preprocessing") or {}
        if pre.get("bandpass") is not None:
            pre = {**pre, "bandpass": tuple(pre["bandpass"])}
        if pre.get("channels") is not None:
            pre = {**pre, "channels": tuple(pre["channels"])}
        known = {f.name for f in fields(Preprocessing)}
        pre = {k: v for k, v in pre.items() if k in known}
        return cls(encoder=EncoderConfig.from_dict(d["encoder"]),
                   cross_attention_dim=d.get("cross_attention_dim"),
                   clip_projection_dim=d.get("clip_projection_dim"),
                   out_tokens=int(d.get("out_tokens", 77)),
                   preprocessing=Preprocessing(**pre),
                   channel_adapter=bool(d.get("channel_adapter", False)))


class ChannelAdapter(nn.Module):
    """A per-subject spatial remix of the montage's channels before the encoder: ``x' = (I + D) x + b``.

    ``D`` [C, C] and ``b`` [C] start at zero (the adapter starts as the identity, and weight decay pulls it back
    there). Only channels present in the window's mask are mixed, and absent channels stay zero, so a headset's
    missing channels never leak in. It learns what a subject's electrode placement and contact change.
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(n_channels, n_channels))
        self.bias = nn.Parameter(torch.zeros(n_channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B, C, T] (and mask [B, C], True = present) → adapted windows [B, C, T]."""
        m = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype) if mask is None else mask.to(x.dtype)
        present = x * m[:, :, None]
        mixed = present + torch.einsum("oc,bct->bot", self.delta.to(x.dtype), present) + \
            self.bias.to(x.dtype)[None, :, None]
        return mixed * m[:, :, None]


class EegModel(nn.Module):
    """Encoder plus the heads named in ``config`` (a head is absent when its width is None), and the per-subject
    :class:`ChannelAdapter` in front of the encoder when ``config.channel_adapter``."""

    def __init__(self, config: EegModelConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        self.encoder = EegEncoder(enc)
        self.conditioning = (ConditioningHead(enc.num_patches, enc.embed_dim, config.cross_attention_dim,
                                              config.out_tokens) if config.cross_attention_dim else None)
        self.clip = ClipHead(enc.num_patches, enc.embed_dim, config.clip_projection_dim) \
            if config.clip_projection_dim else None
        self.channel_adapter = ChannelAdapter(enc.n_channels) if config.channel_adapter else None

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B, C, T] (through the channel adapter, if any) → encoder tokens [B, L, D]."""
        if self.channel_adapter is not None:
            x = self.channel_adapter(x, mask)
        return self.encoder.embed(x, mask)

    def prompt_embeds(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B, C, T] → Stable Diffusion ``prompt_embeds`` [B, 77, cross_attention_dim]."""
        if self.conditioning is None:
            raise ValueError("this model has no conditioning head")
        return self.conditioning(self.embed(x, mask))

    def clip_embeds(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows [B, C, T] → vectors [B, projection_dim] in CLIP image-embedding space."""
        if self.clip is None:
            raise ValueError("this model has no CLIP head")
        return self.clip(self.embed(x, mask))
