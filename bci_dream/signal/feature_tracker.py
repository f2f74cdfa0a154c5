"""Band-power features over time: smoothed, and z-scored against a baseline the user records.

:class:`FeatureTracker` takes one feature dict per window (:mod:`bci_dream.signal.band_features`) with its time,
smooths each feature exponentially (time constant ``tau_s``), and gives its z-score against the mean and standard
deviation of a baseline the user records for 30-60 s (:meth:`FeatureTracker.start_baseline`). Before a baseline is
recorded the z-scores are against the running mean and standard deviation of the session so far, and say so
(:attr:`TrackedFeatures.reference`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The default baseline length (s) and smoothing time constant (s).
BASELINE_S = 45.0
TAU_S = 2.0
#: z-scores are clipped to this magnitude (one bad window must not swamp a blend).
Z_LIMIT = 4.0


@dataclass(frozen=True)
class TrackedFeatures:
    """The features of one moment.

    Attributes:
        t: when (the window's end, seconds on the stream's clock).
        raw: feature → value of the window itself.
        smoothed: feature → exponentially smoothed value.
        z: feature → z-score of the smoothed value against :attr:`reference` (clipped to ±4; 0 while the
            reference has fewer than two windows).
        reference: ``"baseline"`` (a recorded one) or ``"running"`` (the session so far, before a baseline).
    """

    t: float
    raw: dict[str, float]
    smoothed: dict[str, float]
    z: dict[str, float]
    reference: str


@dataclass
class _Stats:
    """Welford's running mean and variance."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def z(self, x: float) -> float:
        std = self.std
        if self.n < 2 or std <= 0 or not math.isfinite(x):
            return 0.0
        return max(-Z_LIMIT, min(Z_LIMIT, (x - self.mean) / std))


@dataclass
class FeatureTracker:
    """Smooths features and z-scores them (see the module docstring).

    Attributes:
        tau_s: smoothing time constant in seconds (0: none).
    """

    tau_s: float = TAU_S
    _smoothed: dict[str, float] = field(default_factory=dict)
    _last_t: float | None = None
    _running: dict[str, _Stats] = field(default_factory=dict)
    _baseline: dict[str, _Stats] | None = None
    _recording: dict[str, _Stats] | None = None
    _baseline_until: float | None = None
    _baseline_from: float | None = None

    def start_baseline(self, duration_s: float = BASELINE_S) -> None:
        """Record a baseline over the next ``duration_s`` seconds of windows (the current one, if any, is replaced
        when it is done)."""
        self._recording = {}
        self._baseline_from, self._baseline_until = None, float(duration_s)

    @property
    def baseline_state(self) -> str:
        """``"none"``, ``"recording"`` or ``"done"``."""
        if self._recording is not None:
            return "recording"
        return "done" if self._baseline is not None else "none"

    def baseline_progress(self, t: float) -> float:
        """Share of the baseline recorded by time ``t`` (0-1; 1 once done, 0 without one)."""
        if self._recording is None:
            return 1.0 if self._baseline is not None else 0.0
        if self._baseline_from is None:
            return 0.0
        return min(1.0, (t - self._baseline_from) / max(self._baseline_until, 1e-9))

    def update(self, values: dict[str, float], t: float) -> TrackedFeatures:
        """Take the features of the window ending at ``t`` (seconds)."""
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        keep = 0.0 if self.tau_s <= 0 else math.exp(-dt / self.tau_s)  # (the old value's share)
        for name, value in values.items():
            if not math.isfinite(value):
                continue
            old = self._smoothed.get(name)
            self._smoothed[name] = value if old is None else keep * old + (1 - keep) * value
        # (only what this window has: a feature it lacks, a group whose channels went flat, does not steer on
        # its last value)
        smoothed = {name: self._smoothed[name] for name, value in values.items()
                    if name in self._smoothed and math.isfinite(value)}
        if self._recording is not None:
            if self._baseline_from is None:
                self._baseline_from = t
            for name, value in smoothed.items():
                self._recording.setdefault(name, _Stats()).add(value)
            if t - self._baseline_from >= self._baseline_until:
                self._baseline, self._recording = self._recording, None
        for name, value in smoothed.items():
            self._running.setdefault(name, _Stats()).add(value)
        reference = self._baseline if self._baseline is not None else self._running
        z = {name: reference[name].z(value) if name in reference else 0.0 for name, value in smoothed.items()}
        return TrackedFeatures(t, dict(values), smoothed, z, "baseline" if self._baseline is not None else "running")
