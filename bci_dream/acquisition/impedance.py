"""Measuring electrode impedance on a streaming board that can (OpenBCI Cyton, Cyton + Daisy, Ganglion).

:class:`ImpedanceMeter` drives the board through its BrainFlow driver while it streams, from a thread of its own
(a check takes a few seconds per Cyton channel), and returns an :class:`ImpedanceReport`:

- ``cyton-lead-off``: for one channel at a time, the channel is set to gain 1, SRB2 off, bias on, and the ADS1299's
  lead-off current is switched on at its N input (``x…X`` and ``z…Z`` commands of the Cyton SDK, as the OpenBCI GUI
  sends them); after ``settle_s`` the channel's next ``measure_s`` of samples give its impedance
  (:func:`bci_dream.signal.impedance.lead_off_impedance_kohm`); then the channel goes back to the board's default
  settings (gain 24, SRB2 on, lead-off off) — also when the check fails or is cancelled.
- ``ganglion``: the board's impedance mode (``z``, ended by ``Z``) makes it report all four channels and the
  reference; the median of what it reports over ``measure_s`` after every value has come in is kept.

While a check runs the EEG of the channel being measured carries the lead-off current (a Ganglion's carries nothing):
the meter tells the source (:meth:`~bci_dream.acquisition.source.Source.begin_driven_span`, until
:data:`SETTLE_AFTER_S` after the check), so that the engine makes no images of it, and callers that record mark the
stretch (the app and the wizard add markers).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bci_dream.acquisition.source import Source
from bci_dream.core.errors import BciDreamError, DeviceError
from bci_dream.core.types import Chunk, SourceState
from bci_dream.signal.impedance import ganglion_impedance_kohm, lead_off_impedance_kohm
from bci_dream.signal.impedance_thresholds import ImpedanceThresholds

log = logging.getLogger(__name__)

#: The Cyton SDK's letter for each channel (1-8 on the Cyton, 9-16 on the Daisy).
CYTON_CHANNEL_LETTERS = "12345678QWERTYUI"

#: Seconds after a check during which the EEG still carries its after-effects (the gain switched back, the filters
#: settling after the test current); readers that make images leave them out too.
SETTLE_AFTER_S = 1.0
#: What the source is told drives its EEG during a check.
DRIVEN_REASON = "impedance check"

#: Called as ``progress(done, total, what)`` before each step (``what``: the channel about to be measured).
Progress = Callable[[int, int, str], None]


def cyton_lead_off_on(channel: int) -> str:
    """Commands that put channel ``channel`` (0-based) in lead-off mode: gain 1, normal input, bias on, SRB2 and
    SRB1 off, lead-off current on its N input."""
    letter = CYTON_CHANNEL_LETTERS[channel]
    return f"x{letter}000100Xz{letter}01Z"


def cyton_lead_off_off(channel: int) -> str:
    """Commands that give channel ``channel`` back the board's defaults: gain 24, normal, bias on, SRB2 on, no
    lead-off current."""
    letter = CYTON_CHANNEL_LETTERS[channel]
    return f"x{letter}060110Xz{letter}00Z"


class ImpedanceCancelled(BciDreamError):
    """The check was cancelled (:meth:`ImpedanceMeter.cancel`)."""


@dataclass(frozen=True)
class ElectrodeImpedance:
    """One electrode's impedance.

    Attributes:
        name: the channel's name (``"REF"`` for a Ganglion's reference).
        kohm: its impedance in kΩ (NaN: not measured).
        rating: ``"good"``, ``"fair"`` or ``"poor"`` by the report's thresholds (``"none"`` when not measured).
    """

    name: str
    kohm: float
    rating: str

    @property
    def text(self) -> str:
        """``"Fp1 12.3 kΩ fair"`` or ``"Fp1 not measured"``."""
        if not math.isfinite(self.kohm):
            return f"{self.name} not measured"
        return f"{self.name} {self.kohm:.1f} kΩ {self.rating}"


@dataclass(frozen=True)
class ImpedanceReport:
    """The result of one check.

    Attributes:
        device: the board's description.
        method: how it was measured (:data:`bci_dream.devices.IMPEDANCE_METHODS`).
        electrodes: one entry per electrode, in the board's order.
        thresholds: what the ratings were judged by.
        seconds: how long the check took.
        complete: False when it was cancelled before every electrode was measured.
        finished_at: when it ended (UNIX time, s).
    """

    device: str
    method: str
    electrodes: tuple[ElectrodeImpedance, ...]
    thresholds: ImpedanceThresholds
    seconds: float
    complete: bool = True
    finished_at: float = 0.0

    @property
    def passed(self) -> bool:
        """Every electrode measured and none poor."""
        return self.complete and all(e.rating in ("good", "fair") for e in self.electrodes)

    def summary(self) -> str:
        """One line: ``"impedance: Fp1 4.1 kΩ good, Fp2 61.0 kΩ poor"``."""
        return "impedance: " + ", ".join(e.text for e in self.electrodes)


class _Collector:
    """Keeps the chunks a source delivers (on its thread) for the meter (on another)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: list[Chunk] = []
        self.arrived = threading.Condition(self._lock)

    def __call__(self, chunk: Chunk) -> None:
        if len(chunk.timestamps):
            with self.arrived:
                self._chunks.append(chunk)
                self.arrived.notify_all()

    def newest(self) -> float:
        """The newest sample's timestamp (-inf before the first)."""
        with self._lock:
            return self._newest()

    def _newest(self) -> float:
        return float(self._chunks[-1].timestamps[-1]) if self._chunks else -math.inf

    def wait_past(self, stamp: float, timeout: float) -> float:
        """Wait up to ``timeout`` s for a sample stamped at or after ``stamp``; the newest timestamp then."""
        with self.arrived:
            if self._newest() < stamp:
                self.arrived.wait(timeout)
            return self._newest()

    def between(self, start: float, end: float, channel: int) -> np.ndarray:
        """Samples of ``channel`` stamped in ``[start, end)``; chunks that ended before ``start`` are let go."""
        with self._lock:
            self._chunks = [c for c in self._chunks if c.timestamps[-1] >= start]
            parts = [c.samples[(c.timestamps >= start) & (c.timestamps < end), channel] for c in self._chunks]
        return np.concatenate(parts) if parts else np.empty(0, np.float32)


class ImpedanceMeter:
    """Measures electrode impedance on a started source whose ``impedance_method`` is not empty.

    Args:
        source: the streaming source (a :class:`~bci_dream.acquisition.brainflow_source.BrainFlowSource`).
        thresholds: the kΩ limits the ratings use (default: the source's profile's, else the usual ones).
        settle_s: seconds after switching a channel before its samples count.
        measure_s: seconds of samples each value is taken from.
        timeout_s: seconds without the samples (or, on a Ganglion, the values) it waits for before giving up.
    """

    def __init__(self, source: Source, *, thresholds: ImpedanceThresholds | None = None, settle_s: float = 0.5,
                 measure_s: float = 1.0, timeout_s: float = 5.0) -> None:
        self.source = source
        profile = getattr(source, "profile", None)
        self.thresholds = thresholds or getattr(profile, "impedance_thresholds", None) or ImpedanceThresholds()
        self.settle_s = settle_s
        self.measure_s = measure_s
        self.timeout_s = timeout_s
        self._cancel = threading.Event()

    @property
    def device(self) -> str:
        profile = getattr(self.source, "profile", None)
        return getattr(profile, "description", "") or self.source.name

    def estimated_seconds(self, n_channels: int | None = None) -> float:
        """About how long :meth:`measure` takes for ``n_channels`` (default: all)."""
        n = self.source.info.n_channels if n_channels is None else n_channels
        if self.source.impedance_method == "ganglion":
            return 3.0 + self.measure_s
        return n * (self.settle_s + self.measure_s + 0.2)

    def cancel(self) -> None:
        """Stop the check at the next step (the channel being measured is set back first)."""
        self._cancel.set()

    def measure(self, channels: Sequence[str] | None = None, progress: Progress | None = None) -> ImpedanceReport:
        """Measure the electrodes of ``channels`` (names; default all) and return the report.

        Blocks for :meth:`estimated_seconds`; call it off the GUI thread. Raises :class:`DeviceError` with one line
        when the source cannot measure, is not streaming, or stops delivering; :class:`ImpedanceCancelled` never
        escapes (a cancelled check returns what it measured, with ``complete`` False).
        """
        source = self.source
        if not source.impedance_method:
            raise DeviceError(source.impedance_unavailable)
        if source.state != SourceState.STREAMING:
            raise DeviceError(f"{source.name} is {source.state.value}, not streaming: connect it first")
        names = list(source.info.ch_names)
        wanted = names if channels is None else list(channels)
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise DeviceError(f"{source.name} has no channel {unknown[0]} (its channels: {', '.join(names)})")
        from pylsl import local_clock

        self._cancel.clear()
        started = time.monotonic()
        values: dict[str, float] = {}  # (filled as electrodes are measured: a cancelled check keeps them)
        ganglion = source.impedance_method == "ganglion"
        order = [c for c in names + ["REF"] if c in wanted or c == "REF"] if ganglion else wanted
        source.begin_driven_span(DRIVEN_REASON, local_clock())
        try:
            if ganglion:
                self._ganglion(values, progress)
            else:
                self._cyton([names.index(c) for c in wanted], values, progress)
            complete = True
        except ImpedanceCancelled:
            complete = False
        finally:
            source.end_driven_span(local_clock() + SETTLE_AFTER_S)
        electrodes = tuple(self._electrode(name, values.get(name, math.nan)) for name in order)
        report = ImpedanceReport(self.device, source.impedance_method, electrodes, self.thresholds,
                                 time.monotonic() - started, complete, time.time())
        log.info("%s: %s", source.name, report.summary())
        return report

    def _electrode(self, name: str, kohm: float) -> ElectrodeImpedance:
        return ElectrodeImpedance(name, float(kohm), self.thresholds.rate(kohm) if math.isfinite(kohm) else "none")

    # -- Cyton ----------------------------------------------------------------------------------------

    def _cyton(self, indices: list[int], values: dict[str, float], progress: Progress | None) -> None:
        from pylsl import local_clock

        source = self.source
        names = source.info.ch_names
        if max(indices, default=0) >= len(CYTON_CHANNEL_LETTERS):
            raise DeviceError(f"a Cyton measures at most {len(CYTON_CHANNEL_LETTERS)} channels")
        collector = _Collector()
        source.add_tap(collector)
        try:
            for done, c in enumerate(indices):
                if self._cancel.is_set():
                    raise ImpedanceCancelled("impedance check cancelled")
                if progress is not None:
                    progress(done, len(indices), names[c])
                source.configure(cyton_lead_off_on(c))
                try:
                    start = local_clock() + self.settle_s
                    end = start + self.measure_s
                    self._wait_for(collector, end)
                    values[names[c]] = lead_off_impedance_kohm(collector.between(start, end, c), source.info.sfreq)
                except BaseException:
                    self._set_back_quietly(c)  # (the reason the check stopped is what the caller hears)
                    raise
                source.configure(cyton_lead_off_off(c))
        finally:
            source.remove_tap(collector)
        if progress is not None:
            progress(len(indices), len(indices), "")

    def _set_back_quietly(self, channel: int) -> None:
        try:
            self.source.configure(cyton_lead_off_off(channel))
        except DeviceError as e:
            log.warning("%s: channel %d could not be set back after the impedance check (%s); connecting again "
                        "resets the board", self.source.name, channel + 1, e)

    def _wait_for(self, collector: _Collector, end: float) -> None:
        """Until a sample stamped at or after ``end`` has come; :class:`DeviceError` after ``timeout_s`` of none."""
        waited_since, seen = time.monotonic(), collector.newest()
        while True:
            if self._cancel.is_set():
                raise ImpedanceCancelled("impedance check cancelled")
            newest = collector.wait_past(end, 0.1)
            if newest >= end:
                return
            if newest != seen:
                waited_since, seen = time.monotonic(), newest
            elif time.monotonic() - waited_since > self.timeout_s:
                raise DeviceError(f"{self.source.name} sent no samples for {self.timeout_s:g} s during the "
                                  "impedance check; check that it is on and in range")

    # -- Ganglion -------------------------------------------------------------------------------------

    def _ganglion(self, values: dict[str, float], progress: Progress | None) -> None:
        source = self.source
        if progress is not None:
            progress(0, 1, "all channels")
        source.set_resistance_capture(True)
        source.configure("z")
        try:
            wait_s = 2 * self.timeout_s  # (the board reports one electrode at a time)
            deadline = time.monotonic() + wait_s
            while not np.isfinite(source.resistance_values()).all():
                if time.monotonic() > deadline:
                    raise DeviceError(f"{self.device} reported no impedance for {wait_s:g} s after 'z'; switch it "
                                      "off and on, and connect again")
                if self._cancel.wait(0.1):
                    raise ImpedanceCancelled("impedance check cancelled")
            readings = []
            until = time.monotonic() + self.measure_s
            while time.monotonic() < until:
                readings.append(source.resistance_values())
                if self._cancel.wait(0.1):
                    raise ImpedanceCancelled("impedance check cancelled")
        finally:
            try:
                source.configure("Z")
            finally:
                source.set_resistance_capture(False)
        kohm = ganglion_impedance_kohm(np.median(np.array(readings), axis=0))
        values.update(zip([*source.info.ch_names, "REF"], (float(v) for v in kohm)))
        if progress is not None:
            progress(1, 1, "")
