"""The shape of an EEG encoder and its presets (no torch: the command line reads the preset names)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from bci_dream.core import defaults


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of an :class:`EegEncoder`.

    Attributes:
        preset: the preset's name (``"dreamdiffusion"``, ``"small"``, ``"tiny"`` or ``"custom"``).
        n_channels: channels of the canonical montage the windows are mapped into.
        n_samples: samples per window.
        sfreq: sampling rate of the windows in Hz (window length = n_samples / sfreq).
        patch_size: samples per temporal patch.
        embed_dim, depth, num_heads, mlp_ratio: the encoder transformer.
        decoder_embed_dim, decoder_depth, decoder_num_heads: the MAE decoder (pretraining only).
        positions: ``"sincos"`` (fixed 1-D sine-cosine positions, rebuilt from the shape) or ``"stored"`` (the
            encoder's positions are weights of the checkpoint: a model imported with positions of its own).
    """

    preset: str = "custom"
    n_channels: int = 128
    n_samples: int = defaults.WINDOW_SAMPLES
    sfreq: float = defaults.WINDOW_SFREQ
    patch_size: int = 4
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 1.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    decoder_mlp_ratio: float = 1.0
    positions: str = "sincos"

    @property
    def num_patches(self) -> int:
        return self.n_samples // self.patch_size

    @property
    def window_seconds(self) -> float:
        return self.n_samples / self.sfreq

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


PRESETS: dict[str, EncoderConfig] = {
    # The paper's code: 128 ch x 512 samples, patch 4, width 1024, depth 24, 16 heads, MLP ratio 1.
    "dreamdiffusion": EncoderConfig(preset="dreamdiffusion"),
    # Real time on a laptop CPU: 64 tokens of width 384.
    "small": EncoderConfig(preset="small", patch_size=8, embed_dim=384, depth=6, num_heads=6, mlp_ratio=2.0,
                           decoder_embed_dim=192, decoder_depth=2, decoder_num_heads=6, decoder_mlp_ratio=2.0),
    # For tests and offline demos only.
    "tiny": EncoderConfig(preset="tiny", patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                          decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_ratio=2.0),
}


def preset(name: str, **overrides) -> EncoderConfig:
    """The config of preset ``name``, with fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    return EncoderConfig.from_dict({**PRESETS[name].to_dict(), **overrides})
