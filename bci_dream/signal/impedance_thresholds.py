"""The kΩ limits an electrode's impedance is rated good, fair or poor by (light: the device profiles read them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

RATINGS = ("good", "fair", "poor")


@dataclass(frozen=True)
class ImpedanceThresholds:
    """Where an impedance stops being good, and fair, in kΩ.

    The defaults are the usual ones for wet (gel or paste) electrodes: below 10 kΩ is good (the clinical target is
    5-10 kΩ); up to 50 kΩ is fair, usable with an amplifier of high input impedance such as the ADS1299 in a quiet
    room; above that the signal picks up mains hum and movement. Dry and saline electrodes read far higher; a
    profile may raise both (``[impedance] good_kohm`` / ``fair_kohm``).
    """

    good_kohm: float = 10.0
    fair_kohm: float = 50.0

    def rate(self, kohm: float) -> str:
        """``"good"``, ``"fair"`` or ``"poor"`` (also for NaN: nothing measured)."""
        if not math.isfinite(kohm):
            return "poor"
        return "good" if kohm <= self.good_kohm else "fair" if kohm <= self.fair_kohm else "poor"

    def describe(self) -> str:
        """The thresholds in one sentence."""
        return (f"Good below {self.good_kohm:g} kΩ, fair up to {self.fair_kohm:g} kΩ, poor above (wet electrodes; "
                "the clinical target is 5-10 kΩ).")
