"""The canonical 128-channel montage that every window is mapped into, and channel-name matching.

Choice of montage (``CANONICAL_128``): all 86 positions of the 10-10 system from Fp1 to I2 (rows Fp,
AF, F, FT/FC, T/C, TP/CP, P, PO, O, I; including AF1/AF2, PO1/PO2 and the inferior row AF9 ... PO10),
plus 42 "h" (half-way) positions of the 10-05 system as used by 128-channel EasyCap/actiCAP layouts:
the rows AFF, FFC, FCC, CCP, CPP, PPO and OI, without the outermost inferior h positions (FFT9h,
FTT9h, TPP9h, PPO9h, POO9h and their right counterparts) and AFF3h/AFF4h/PPO3h/PPO4h, which sit
close to 10-10 sites. Rows run front to back and, within a row, left to right; the h rows sit between the 10-10
rows they lie between.

It covers every channel of the supported headsets: Muse (TP9 AF7 AF8 TP10), OpenBCI Cyton and Daisy,
the BrainFlow synthetic board, Wearable Sensing DSI-7 (its S1-S3 are not standard sites and stay
unmapped) and g.USBamp 16-channel caps. Mastoid and ear references (M1 M2 A1 A2) are not scalp
sites and are never mapped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

_ROWS: tuple[tuple[str, ...], ...] = (
    ("Fp1", "Fpz", "Fp2"),
    ("AF9", "AF7", "AF5", "AF3", "AF1", "AFz", "AF2", "AF4", "AF6", "AF8", "AF10"),
    ("AFF5h", "AFF1h", "AFF2h", "AFF6h"),
    ("F9", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8", "F10"),
    ("FFT7h", "FFC5h", "FFC3h", "FFC1h", "FFC2h", "FFC4h", "FFC6h", "FFT8h"),
    ("FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "FT10"),
    ("FTT7h", "FCC5h", "FCC3h", "FCC1h", "FCC2h", "FCC4h", "FCC6h", "FTT8h"),
    ("T9", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "T10"),
    ("TTP7h", "CCP5h", "CCP3h", "CCP1h", "CCP2h", "CCP4h", "CCP6h", "TTP8h"),
    ("TP9", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "TP10"),
    ("TPP7h", "CPP5h", "CPP3h", "CPP1h", "CPP2h", "CPP4h", "CPP6h", "TPP8h"),
    ("P9", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "P10"),
    ("PPO5h", "PPO1h", "PPO2h", "PPO6h"),
    ("PO9", "PO7", "PO5", "PO3", "PO1", "POz", "PO2", "PO4", "PO6", "PO8", "PO10"),
    ("O1", "Oz", "O2"),
    ("OI1h", "OI2h"),
    ("I1", "Iz", "I2"),
)

#: The canonical montage: 128 unique 10-10 / 10-05 electrode names, front to back, left to right.
CANONICAL_128: tuple[str, ...] = tuple(name for row in _ROWS for name in row)

#: Old 10-20 names and their 10-10 equivalents. M1/M2/A1/A2 (mastoids, ear lobes) are deliberately
#: absent: they are references, not scalp EEG sites, and stay unmapped.
ALIASES: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

_CANONICAL_BY_LOWER = {name.lower(): name for name in CANONICAL_128}
_ALIASES_BY_LOWER = {old.lower(): new for old, new in ALIASES.items()}
_PREFIX = re.compile(r"^(?:EEG|EXG)[\s:_\-]+", re.IGNORECASE)
_ZERO_PADDED = re.compile(r"^([A-Za-z]+)0+([1-9]\d*)(h?)$")
_SUFFIX = re.compile(
    r"[\s_\-]+(?:R[EÉ]F|LE|RE|AR|AV|AVG|CAR|LM|A1|A2|M1|M2|A1A2|M1M2|A12|M12)$", re.IGNORECASE
)


def normalise_channel_name(name: str) -> str:
    """Clean a channel label and return its canonical 10-05 spelling where it has one.

    Strips whitespace and trailing dots (EDF padding such as ``"Fc5."``), a type prefix (``"EEG "``,
    ``"EEG-"``, ``"EXG "``), a reference suffix (``"-REF"``, ``"-Ref"``, ``"-LE"``, ``"-A1"``,
    ``"-M2"``, ``"-AVG"`` ...), zero padding of the number (``"O01"`` → ``O1``), matches case-insensitively
    against the 10-05 names of the canonical montage and applies :data:`ALIASES` (``T3`` → ``T7``, ...).

    Returns:
        The canonical name (``"EEG FP1-REF"`` → ``"Fp1"``), or the cleaned label unchanged when it
        is not a known site (``"Right AUX"``, ``"M1"``, ``"S1"``).
    """
    cleaned = str(name).strip().rstrip(".").strip()
    without_prefix = _PREFIX.sub("", cleaned)
    if without_prefix:
        cleaned = without_prefix
    without_suffix = _SUFFIX.sub("", cleaned)
    if without_suffix:
        cleaned = without_suffix
    key = _ZERO_PADDED.sub(r"\1\2\3", cleaned).lower()  # ("O01", "FP02", "C03" as some caps number them)
    key = _ALIASES_BY_LOWER.get(key, key).lower()
    return _CANONICAL_BY_LOWER.get(key, cleaned)


@dataclass(frozen=True)
class MontageMapping:
    """How the channels of one stream land in a montage.

    Attributes:
        source_index: int64 [k], stream channels that are mapped.
        target_index: int64 [k], their positions in the montage.
        mask: bool [len(montage)], True where a montage position receives a channel.
        unmapped: stream channel names that map nowhere (unknown, non-scalp or duplicates).
        n_source: channels of the stream.
    """

    source_index: np.ndarray
    target_index: np.ndarray
    mask: np.ndarray
    unmapped: list[str]
    n_source: int

    @property
    def n_target(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_mapped(self) -> int:
        return int(self.source_index.shape[0])

    def restricted_to(self, keep: np.ndarray) -> MontageMapping:
        """The same mapping with the stream channels that land outside ``keep`` (bool [len(montage)]) unmapped."""
        inside = keep[self.target_index]
        mask = np.zeros_like(self.mask)
        mask[self.target_index[inside]] = True
        return MontageMapping(self.source_index[inside], self.target_index[inside], mask, list(self.unmapped),
                              self.n_source)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Place stream data into the montage.

        Args:
            x: [n_source, T] in the stream's channel order.

        Returns:
            float32 [len(montage), T]; rows of montage positions without a channel are zero.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != self.n_source:
            raise ValueError(f"expected data of shape [{self.n_source}, T], got {x.shape}")
        out = np.zeros((self.n_target, x.shape[1]), np.float32)
        out[self.target_index] = x[self.source_index]
        return out


class Montage:
    """An ordered list of electrode names that stream channels are mapped into by name.

    Args:
        names: unique electrode names (compared after :func:`normalise_channel_name`, so case and
            prefixes do not matter).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(str(n) for n in names)
        if not self.names:
            raise ValueError("a montage needs at least one channel")
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            key = normalise_channel_name(name).lower()
            if key in self._index:
                raise ValueError(f"montage channel {name!r} appears twice")
            self._index[key] = i

    @classmethod
    def canonical(cls) -> Montage:
        """The 128-channel canonical montage :data:`CANONICAL_128`."""
        return cls(CANONICAL_128)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.index(name) is not None

    def __repr__(self) -> str:
        return f"Montage({len(self)} channels)"

    def index(self, name: str) -> int | None:
        """Position of channel ``name`` (any accepted spelling), or None if not in the montage."""
        return self._index.get(normalise_channel_name(name).lower())

    def map(self, ch_names: Sequence[str]) -> MontageMapping:
        """Match the channels of a stream to montage positions.

        A second stream channel that lands on an already taken position is left unmapped (the first
        wins) and a warning is logged.
        """
        source, target, unmapped = [], [], []
        taken: dict[int, str] = {}
        for i, name in enumerate(ch_names):
            pos = self.index(name)
            if pos is None:
                unmapped.append(str(name))
                continue
            if pos in taken:
                logger.warning(
                    "channels %r and %r both map to %s; keeping the first", taken[pos], name, self.names[pos]
                )
                unmapped.append(str(name))
                continue
            taken[pos] = str(name)
            source.append(i)
            target.append(pos)
        mask = np.zeros(len(self), bool)
        mask[target] = True
        return MontageMapping(
            np.asarray(source, np.int64), np.asarray(target, np.int64), mask, unmapped, len(ch_names)
        )
