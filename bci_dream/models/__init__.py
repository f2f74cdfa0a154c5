"""The EEG side of bci-dream: masked-signal encoder, conditioning and CLIP heads, checkpoints."""

from bci_dream.models.encoder import PRESETS, EegEncoder, EncoderConfig, preset
from bci_dream.models.heads import ClipHead, ConditioningHead

__all__ = ["EegEncoder", "EncoderConfig", "PRESETS", "preset", "ClipHead", "ConditioningHead"]
