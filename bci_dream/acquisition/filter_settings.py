"""Which online filters a stream gets: :class:`FilterSettings`, decided in one place by :func:`choose_filters`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bci_dream.core import defaults

if TYPE_CHECKING:  # pragma: no cover
    from bci_dream.devices import DeviceProfile

#: "Not given": take the device profile's setting (None itself means "off").
FROM_PROFILE: Any = type("FromProfile", (), {"__repr__": lambda self: "FROM_PROFILE"})()


@dataclass(frozen=True)
class FilterSettings:
    """Online filter settings: band-pass edges in Hz (or None: no band-pass), notch frequency in Hz (or None)."""

    bandpass: tuple[float, float] | None = defaults.BANDPASS_HZ
    notch: float | None = defaults.NOTCH_HZ


NO_FILTERS = FilterSettings(None, None)


def choose_filters(profile: DeviceProfile | None = None, override: FilterSettings | None = None, *,
                   bandpass: tuple[float, float] | None = FROM_PROFILE,
                   notch: float | None = FROM_PROFILE) -> FilterSettings:
    """The filters of a stream, in this order of precedence:

    1. ``override``: a whole setting the user chose (the app's settings dialog, ``--no-filter``);
    2. ``bandpass`` / ``notch``, each on its own, when given (``None`` or a notch of 0: off);
    3. the device profile's;
    4. the project defaults (:data:`bci_dream.core.defaults.BANDPASS_HZ`, :data:`~bci_dream.core.defaults.NOTCH_HZ`)
       for a stream without a profile (an .xdf replay, an LSL stream without one).
    """
    if override is not None:
        return override
    base = FilterSettings(profile.bandpass, profile.notch) if profile is not None else FilterSettings()
    band = base.bandpass if bandpass is FROM_PROFILE else (tuple(bandpass) if bandpass else None)
    line = base.notch if notch is FROM_PROFILE else (notch or None)
    return FilterSettings(band, line)


def _band_text(band: tuple[float, float] | None) -> str:
    return f"{band[0]:g}-{band[1]:g} Hz" if band else "no band-pass"


def band_pass_mismatch(trained: tuple[float, float] | None, live: FilterSettings) -> str | None:
    """One line naming the difference when a stream's band-pass is not the one a model was trained with (the
    windows would differ from every training window), else None. (The notch follows the local mains: a 50 Hz notch
    in training and a 60 Hz one live are both right.)"""
    want = tuple(float(x) for x in trained) if trained else None
    have = tuple(float(x) for x in live.bandpass) if live.bandpass else None
    if want == have:
        return None
    flag = f"--bandpass {want[0]:g} {want[1]:g}" if want else "--no-filter"
    return (f"the EEG model was trained on {_band_text(want)} EEG but the stream is filtered {_band_text(have)}; "
            f"give {flag} (or leave the filter options out: the stream then takes the model's)")
