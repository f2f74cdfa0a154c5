"""The wizard's signal check: pass or fail per channel over the last few seconds, with advice.

The live pipeline assesses every channel once a second (:func:`bci_dream.signal.quality.assess_quality`:
flat, railed, line noise, amplitude). :class:`SignalCheck` keeps the last ``seconds`` assessments and
passes a channel when it was good in at least ``pass_share`` of them, so that one blink does not fail a
channel and one lucky second does not pass it. For a Muse, the four sensors are also given a contact
level like the Muse app's "horseshoe" (good / fair / poor) and advice about where that sensor sits.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

from bci_dream.core import defaults
from bci_dream.signal.quality import ADVICE, ChannelQuality, QualityThresholds

#: Where each Muse sensor sits, and what helps it touch the skin.
MUSE_SENSORS = {
    "TP9": ("left ear", "tuck the hair away behind the left ear so the rubber sensor touches the skin"),
    "AF7": ("left forehead", "push the band down onto the forehead and wipe the skin under the left sensor"),
    "AF8": ("right forehead", "push the band down onto the forehead and wipe the skin under the right sensor"),
    "TP10": ("right ear", "tuck the hair away behind the right ear so the rubber sensor touches the skin"),
}


def is_muse(ch_names: Sequence[str]) -> bool:
    """True for a Muse's channel set (TP9, AF7, AF8, TP10; an AUX channel may come with it)."""
    return set(MUSE_SENSORS) <= set(ch_names) and len(ch_names) <= 5


@dataclass(frozen=True)
class ChannelVerdict:
    """The check's result for one channel.

    Attributes:
        name: channel name.
        passed: good in at least ``pass_share`` of the seconds looked at.
        good_share: share of those seconds in which it was good (0-1).
        status: its latest status (``"good"``, ``"flat"``, ``"railed"``, ``"line_noise"``, ``"high_amplitude"``).
        problem: the most frequent bad status over the seconds looked at ("" if it was always good).
        contact: ``"good"``, ``"fair"`` or ``"poor"`` (``good_share`` >= pass share, >= 0.4, below).
        advice: what to do about it ("" when it passed).
    """

    name: str
    passed: bool
    good_share: float
    status: str
    problem: str
    contact: str
    advice: str


class SignalCheck:
    """Pass/fail per channel over the last ``seconds`` one-second quality assessments.

    Args:
        ch_names: the stream's channel names.
        seconds: how many assessments to look at.
        pass_share: share of them a channel must be good in to pass.
        thresholds: the limits the pipeline assesses with (only to describe them).
        line_freq: the mains frequency used by the line-noise check (only to describe it).
    """

    def __init__(self, ch_names: Sequence[str], *, seconds: int = 5, pass_share: float = 0.8,
                 thresholds: QualityThresholds | None = None, line_freq: float = defaults.NOTCH_HZ) -> None:
        self.ch_names = list(ch_names)
        self.seconds = seconds
        self.pass_share = pass_share
        self.thresholds = thresholds or QualityThresholds()
        self.line_freq = line_freq
        self.muse = is_muse(self.ch_names)
        self._history: collections.deque[list[ChannelQuality]] = collections.deque(maxlen=seconds)

    def update(self, quality: Sequence[ChannelQuality]) -> None:
        """Add one assessment (one :class:`ChannelQuality` per channel, as ``StreamStatus.quality`` holds); one equal
        to the last one added is not counted again (the pipeline assesses once a second; callers may poll faster)."""
        if len(quality) != len(self.ch_names) or (self._history and list(quality) == self._history[-1]):
            return  # (another stream's, or the same assessment again: no new second came in)
        self._history.append(list(quality))

    @property
    def seconds_seen(self) -> int:
        """Assessments (seconds) looked at so far, up to ``seconds``."""
        return len(self._history)

    @property
    def ready(self) -> bool:
        """True once ``seconds`` assessments have come in."""
        return self.seconds_seen >= self.seconds

    def verdicts(self) -> list[ChannelVerdict]:
        """One verdict per channel (all failing with "no signal yet" before the first assessment)."""
        out = []
        for c, name in enumerate(self.ch_names):
            statuses = [q[c].status for q in self._history]
            if not statuses:
                out.append(ChannelVerdict(name, False, 0.0, "none", "no signal yet", "poor",
                                          "Wait for the signal to arrive."))
                continue
            share = statuses.count("good") / len(statuses)
            bad = [s for s in statuses if s != "good"]
            problem = collections.Counter(bad).most_common(1)[0][0] if bad else ""
            passed = share >= self.pass_share - 1e-9
            contact = "good" if passed else "fair" if share >= 0.4 else "poor"
            advice = ""
            if not passed:
                advice = ADVICE.get(problem, "")
                if self.muse and name in MUSE_SENSORS:
                    advice = f"{MUSE_SENSORS[name][0]} sensor: {MUSE_SENSORS[name][1]}. {advice}"
            out.append(ChannelVerdict(name, passed, share, statuses[-1], problem, contact, advice))
        return out

    @property
    def passed(self) -> bool:
        """True when enough seconds were looked at and every channel passed."""
        return self.ready and all(v.passed for v in self.verdicts())

    def describe_thresholds(self) -> str:
        """The stated thresholds, one sentence each."""
        th = self.thresholds
        return (f"A channel passes when it was good in at least {self.pass_share:.0%} of the last {self.seconds} s. "
                f"Flat: raw standard deviation below {th.flat_std_uv:g} µV. "
                f"Railed: more than {th.rail_fraction:.0%} of samples at the amplifier's limit. "
                f"Line noise: power at {self.line_freq:g} ± {th.line_halfwidth_hz:g} Hz above "
                f"{th.line_noise_ratio:g}× the {th.band_hz[0]:g}-{th.band_hz[1]:g} Hz power. "
                f"Amplitude: filtered standard deviation above {th.high_std_uv:g} µV.")
