"""Which electrode each channel of a stream or recording is, when its own labels do not say.

Real data often carries generic labels (OpenBCI GUI's LSL output: ``Ch1`` … ``ChN``; EEGLAB: ``EEG 000``; EGI:
``E1`` …). A :class:`ChannelNaming` says what they are, from one of:

- the user: ``--channels Fp1,Fp2,-,C3`` (stream order; ``-`` or an empty item leaves a channel out);
- a file (``--channels-file``, read by :mod:`bci_dream.io.channels_file`): names or positions;
- positions stored in the recording itself (FIF digitisation, EEGLAB chanlocs, BrainVision coordinates);
- a device profile's layout (``--layout cyton``): the profile's channel names for an unlabelled stream.

Positions map each channel to the nearest site of the canonical montage (by direction from the head's origin,
in MNE's ``head`` frame, against MNE's ``standard_1005`` positions); the distance is reported, and two channels
that land on one site keep the nearer.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from bci_dream.core.errors import BciDreamError
from bci_dream.signal.montage import CANONICAL_128, normalise_channel_name

log = logging.getLogger(__name__)

#: Radius (mm) of the standard head the distances of position-based mapping are given on.
HEAD_RADIUS_MM = 95.0
#: A channel whose nearest canonical site is farther than this (mm) is mapped, with a warning.
FAR_MM = 25.0
#: BIDS channel types that are scalp EEG (``channels.tsv`` ``type`` column); other rows are left out.
EEG_TYPES = ("EEG",)
#: Suffix on the label of a channel the user left out: it matches no site, and says why in every view.
LEFT_OUT = " (left out)"
_CANONICAL = frozenset(CANONICAL_128)


class ChannelNamingError(BciDreamError):
    """A channel list, channels file or layout cannot be used for a stream (wrong length, unknown names ...)."""


@dataclass(frozen=True)
class ChannelNaming:
    """What the channels of a stream are.

    Attributes:
        source: where it came from, for messages (``"--channels"``, a file name, ``"layout cyton"``).
        ordered: one canonical site name (or None: leave out) per stream channel, in stream order; or None.
        by_label: stream label → canonical site (from positions), for streams whose labels the file names; or
            None.
        distances_mm: for position-based names, how far each label's position is from its site.
    """

    source: str
    ordered: tuple[str | None, ...] | None = None
    by_label: Mapping[str, str] | None = None
    distances_mm: Mapping[str, float] = field(default_factory=dict)

    def apply(self, labels: Sequence[str]) -> tuple[str, ...]:
        """The stream's labels with this naming applied: each channel's canonical site, or for a channel left
        out (or, for a position table, not in it) its own label (marked :data:`LEFT_OUT` when the user left it
        out).

        Raises:
            ChannelNamingError: an ordered list of another length than the stream has channels; a position table
                that names none of the stream's channels.
        """
        labels = tuple(str(x) for x in labels)
        if self.ordered is not None:
            if len(self.ordered) != len(labels):
                raise ChannelNamingError(
                    f"{self.source} names {len(self.ordered)} channels but the stream has {len(labels)} "
                    f"({listing(labels)}); give one name per channel in stream order, '-' to leave one out")
            return tuple(site if site is not None else label + LEFT_OUT for site, label in zip(self.ordered, labels))
        table = {k.lower(): v for k, v in (self.by_label or {}).items()}
        if not any(label.strip().lower() in table for label in labels):
            raise ChannelNamingError(f"{self.source} has positions for none of the stream's channels "
                                     f"({listing(labels)}); its labels are {listing(tuple(self.by_label or ()))}")
        return tuple(table.get(label.strip().lower(), label) for label in labels)

    def describe(self) -> str:
        """One line: where the names come from, and the farthest position-based match."""
        if not self.distances_mm:
            return f"channel names from {self.source}"
        worst = max(self.distances_mm, key=self.distances_mm.get)
        return (f"channel names from the positions in {self.source} (nearest canonical site; farthest: "
                f"{worst} → {self.by_label[worst]} at {self.distances_mm[worst]:.0f} mm)")

    def to_dict(self) -> dict:
        return {"source": self.source, "ordered": list(self.ordered) if self.ordered is not None else None,
                "by_label": dict(self.by_label) if self.by_label is not None else None,
                "distances_mm": dict(self.distances_mm)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ChannelNaming:
        ordered = data.get("ordered")
        return cls(str(data.get("source", "checkpoint")), tuple(ordered) if ordered is not None else None,
                   dict(data["by_label"]) if data.get("by_label") is not None else None,
                   dict(data.get("distances_mm") or {}))


def listing(names: Sequence[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def canonical_site(name: str, *, what: str) -> str:
    """The canonical site ``name`` stands for (after :func:`normalise_channel_name`).

    Raises:
        ChannelNamingError: not a site of the canonical montage; the closest ones are named.
    """
    site = normalise_channel_name(name)
    if site in _CANONICAL:
        return site
    close = difflib.get_close_matches(site, CANONICAL_128, n=3, cutoff=0.5) or \
        difflib.get_close_matches(site.capitalize(), CANONICAL_128, n=3, cutoff=0.5)
    hint = f"; closest sites: {', '.join(close)}" if close else ""
    raise ChannelNamingError(f"{what}: '{name}' is not a 10-05 site of the canonical montage{hint} "
                             "('-' leaves a channel out)")


def parse_channel_list(text: str, source: str = "--channels") -> ChannelNaming:
    """``"Fp1,Fp2,-,C3"`` → a naming in stream order (``-`` or an empty item: leave that channel out)."""
    items = [item.strip() for item in str(text).split(",")]
    return ordered_naming(items, source)


def ordered_naming(items: Sequence[str | None], source: str) -> ChannelNaming:
    names: list[str | None] = []
    for item in items:
        names.append(None if item in (None, "", "-") else canonical_site(item, what=source))
    check_unique_sites([n for n in names if n is not None], source)
    if not any(names):
        raise ChannelNamingError(f"{source} leaves every channel out")
    return ChannelNaming(source, ordered=tuple(names))


def check_unique_sites(sites: Sequence[str], source: str) -> None:
    seen: set[str] = set()
    twice = [s for s in sites if s in seen or seen.add(s)]
    if twice:
        raise ChannelNamingError(f"{source} names {', '.join(dict.fromkeys(twice))} more than once")


def naming_from_positions(positions: Mapping[str, np.ndarray], source: str, *, frame: str = "head") -> ChannelNaming:
    """Map each labelled position (metres, MNE's head frame) to the nearest free canonical site.

    Raises:
        ChannelNamingError: positions in another coordinate frame, or none at all.
    """
    if frame not in ("head", "unknown"):
        raise ChannelNamingError(f"the positions in {source} are in the '{frame}' coordinate frame; bci-dream maps "
                                 "positions given in MNE's head frame (nasion/preauricular points); transform them "
                                 "to it (mne.transforms) or name the channels with --channels")
    labels = [k for k, v in positions.items() if v is not None and np.all(np.isfinite(v)) and np.linalg.norm(v) > 0]
    if not labels:
        raise ChannelNamingError(f"{source} holds no channel positions")
    sites, site_dirs = canonical_directions()
    dirs = np.stack([np.asarray(positions[k], float) / np.linalg.norm(positions[k]) for k in labels])
    angles = np.arccos(np.clip(dirs @ site_dirs.T, -1.0, 1.0))  # [labels, sites]
    order = np.argsort(angles.min(axis=1))  # nearest first: they win a contested site
    taken: dict[str, str] = {}
    distances: dict[str, float] = {}
    lost: list[str] = []
    for i in order:
        j = int(np.argmin(angles[i]))
        if sites[j] in taken.values():
            lost.append(labels[i])
            continue
        taken[labels[i]] = sites[j]
        distances[labels[i]] = float(angles[i, j] * HEAD_RADIUS_MM)
    far = [f"{k} ({distances[k]:.0f} mm)" for k in taken if distances[k] > FAR_MM]
    if far:
        log.warning("%s: %d channels are far from any canonical site and mapped to the nearest anyway: %s",
                    source, len(far), listing(far))
    if lost:
        log.warning("%s: %s share a canonical site with a nearer channel and are left out", source, listing(lost))
    return ChannelNaming(source, by_label={k: taken[k] for k in labels if k in taken}, distances_mm=distances)


@cache
def canonical_directions() -> tuple[tuple[str, ...], np.ndarray]:
    """The canonical sites MNE's ``standard_1005`` places, and their unit directions from the origin of MNE's head
    frame (midway between the preauricular points), where FIF digitisations and MNE's readers put positions."""
    xyz_by_site = standard_head_positions()
    sites = tuple(xyz_by_site)
    xyz = np.stack([xyz_by_site[s] for s in sites])
    return sites, xyz / np.linalg.norm(xyz, axis=1, keepdims=True)


def standard_1005_montage():
    """MNE's 10-05 template montage: ``colin27_1005`` where MNE has that name (1.13 on; the same positions),
    else ``standard_1005`` (its old name, deprecated in 1.13 and gone in 1.14)."""
    import mne

    name = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    return mne.channels.make_standard_montage(name)


def standard_head_positions() -> dict[str, np.ndarray]:
    """The canonical sites' positions (metres) in MNE's head frame, from its 10-05 template montage."""
    import mne

    standard = standard_1005_montage()
    known = {k.lower(): k for k in standard.ch_names}
    sites = [s for s in CANONICAL_128 if s.lower() in known]
    info = mne.create_info([known[s.lower()] for s in sites], 1000.0, "eeg")
    info.set_montage(standard, verbose="error")  # (transformed to the head frame through its fiducials)
    head = info.get_montage().get_positions()["ch_pos"]
    return {s: np.asarray(head[known[s.lower()]], float) for s in sites}


def layout_naming(profile) -> ChannelNaming:
    """The naming a device profile's ``channels`` give an unlabelled stream of that headset (``--layout NAME``)."""
    if not profile.channels:
        raise ChannelNamingError(f"device profile '{profile.name}' names no channels, so it cannot be a --layout")
    return ordered_naming(list(profile.channels), f"layout {profile.name}")
