"""Signal processing for streaming EEG: online filters, quality, montage, resampling, windows."""

from bci_dream.signal.filters import OnlineFilter, design_filter
from bci_dream.signal.montage import ALIASES, CANONICAL_128, Montage, MontageMapping, normalise_channel_name
from bci_dream.signal.quality import ChannelQuality, QualityThresholds, assess_quality
from bci_dream.signal.resample import resample, resampled_length
from bci_dream.signal.windower import Window, Windower

__all__ = [
    "ALIASES",
    "CANONICAL_128",
    "ChannelQuality",
    "Montage",
    "MontageMapping",
    "OnlineFilter",
    "QualityThresholds",
    "Window",
    "Windower",
    "assess_quality",
    "design_filter",
    "normalise_channel_name",
    "resample",
    "resampled_length",
]
