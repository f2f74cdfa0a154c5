"""Brain-state steering: band-power features (z-scored) mapped to what the generator is given.

A :class:`SteeringRule` maps one feature (``alpha``, ``beta.frontal``, ``engagement`` ...; see
:mod:`bci_dream.signal.band_features`) to a target:

- ``prompt``: the feature's prompt takes a share of the text conditioning: the shares are a softmax over the rules'
  ``gain * z`` (alpha up → more of "calm ocean at dusk", beta up → more of "busy city at noon");
- ``ip_scale``: the IP-Adapter's strength follows the feature (a logistic of ``gain * z``, 0-1 times the set
  strength);
- ``seed``: the initial noise drifts from the session's seed towards the next one as the feature rises (the same
  logistic), so that the picture's composition moves with it.

Rules are written ``FEATURE=PROMPT`` (a prompt rule), ``FEATURE>ip_scale`` or ``FEATURE>seed``, with an optional
``*GAIN`` after the feature (``alpha*2=calm ocean at dusk``). Everything steered this way is labelled "steered by
band power": it follows the spectrum, it does not decode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bci_dream.core.errors import BciDreamError

TARGETS = ("prompt", "ip_scale", "seed")
STEERED_LABEL = "steered by band power"
_RULE = re.compile(r"^\s*(?P<feature>[A-Za-z_][\w.]*)\s*(\*\s*(?P<gain>[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?))?\s*"
                   r"(=(?P<prompt>.+)|>\s*(?P<target>\w+))\s*$")


class SteeringError(BciDreamError):
    """A steering rule cannot be read or names an unknown feature or target."""


@dataclass(frozen=True)
class SteeringRule:
    """One feature → one target (see the module docstring)."""

    feature: str
    target: str = "prompt"
    prompt: str | None = None
    gain: float = 1.0

    def text(self) -> str:
        """The rule as :func:`parse_rule` reads it (``"alpha*2=calm ocean"``, ``"engagement>seed"``)."""
        gain = f"*{self.gain:g}" if self.gain != 1 else ""
        return f"{self.feature}{gain}" + (f"={self.prompt}" if self.target == "prompt" else f">{self.target}")

    def describe(self) -> str:
        gain = f" ×{self.gain:g}" if self.gain != 1 else ""
        return f"{self.feature}{gain} → " + (f"'{self.prompt}'" if self.target == "prompt" else self.target)


def parse_rule(text: str, features: Sequence[str] | None = None) -> SteeringRule:
    """``"alpha=calm ocean at dusk"``, ``"engagement*2>ip_scale"``, ``"beta.frontal>seed"`` → a rule.

    Raises:
        SteeringError: the text is not a rule, or names a target (or, when ``features`` is given, a feature) that
            does not exist (one line listing what does).
    """
    match = _RULE.match(text)
    if match is None:
        raise SteeringError(f"cannot read the steering rule '{text}': write FEATURE=PROMPT, FEATURE>ip_scale or "
                            "FEATURE>seed (e.g. 'alpha=calm ocean at dusk')")
    feature = match["feature"]
    if features is not None and feature not in features:
        raise SteeringError(f"unknown feature '{feature}' in '{text}'; features: {', '.join(features)}")
    target = match["target"] or "prompt"
    if target not in TARGETS:
        raise SteeringError(f"unknown steering target '{target}' in '{text}'; targets: {', '.join(TARGETS)}")
    prompt = match["prompt"].strip().strip("\"'") if match["prompt"] else None
    if target == "prompt" and not prompt:
        raise SteeringError(f"the steering rule '{text}' has an empty prompt")
    gain = float(match["gain"]) if match["gain"] else 1.0
    if not math.isfinite(gain):
        raise SteeringError(f"the gain in '{text}' is not a finite number")
    return SteeringRule(feature, target, prompt, gain)


def logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


@dataclass(frozen=True)
class SteeringState:
    """What the rules made of one moment's z-scores: each prompt rule's weight (in rule order, summing to 1), the
    IP-Adapter strength factor and the seed drift (None without such a rule)."""

    prompt_weights: tuple[float, ...] = ()
    ip_scale: float | None = None
    seed_mix: float | None = None


class Steering:
    """The rules of a session (see the module docstring)."""

    def __init__(self, rules: Sequence[SteeringRule]) -> None:
        self.rules = tuple(rules)
        self.prompt_rules = tuple(r for r in self.rules if r.target == "prompt")

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.prompt_rules]

    def state(self, z: Mapping[str, float], *, anchor: bool = False) -> SteeringState:
        """The weights for the z-scores ``z`` (a feature the window lacks counts as 0). ``anchor``: a prompt of the
        user's joins the blend first, as a neutral member (its score is 0)."""
        weights: tuple[float, ...] = ()
        if self.prompt_rules or anchor:
            scores = [0.0] * anchor + [r.gain * _finite(z.get(r.feature, 0.0)) for r in self.prompt_rules]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            total = sum(exps)
            weights = tuple(e / total for e in exps)
        ip_scale = seed_mix = None
        for rule in self.rules:
            if rule.target == "ip_scale":
                ip_scale = logistic(rule.gain * _finite(z.get(rule.feature, 0.0)))
            elif rule.target == "seed":
                seed_mix = logistic(rule.gain * _finite(z.get(rule.feature, 0.0)))
        return SteeringState(weights, ip_scale, seed_mix)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
