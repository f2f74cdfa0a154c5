"""Brain-state features of the live stream, every hop, on their own thread.

::

    LiveStream ──(filtered samples)──► feature thread: Windower.poll() every hop (2-s windows, the stream's rate)
                                           → BandFeatureExtractor → FeatureTracker (smoothing, baseline z-scores)
                                           │
                                           ▼  TrackedFeatures to every listener (OSC, the app), and as .latest
                                              for the engine's steering

They are computed whether or not generation runs or any panel shows them. No Qt here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bci_dream.acquisition.live import LiveStream
from bci_dream.core.defaults import HOP_S
from bci_dream.core.listeners import notify
from bci_dream.signal.band_features import BandFeatureExtractor
from bci_dream.signal.feature_tracker import TAU_S, FeatureTracker, TrackedFeatures
from bci_dream.signal.montage import Montage
from bci_dream.signal.windower import Window

log = logging.getLogger(__name__)

#: Window length of the features (s): 2 s gives three 1-s Welch segments.
FEATURE_WINDOW_S = 2.0


class FeatureMonitor:
    """Computes :class:`TrackedFeatures` of ``live`` every ``hop_s`` (see the module docstring).

    Args:
        live: an opened stream.
        window_s, hop_s: feature window length and spacing (s).
        tau_s: smoothing time constant (s).
    """

    def __init__(self, live: LiveStream, *, window_s: float = FEATURE_WINDOW_S, hop_s: float = HOP_S,
                 tau_s: float = TAU_S) -> None:
        self.live = live
        # (the stream's own channels as the montage: channels with generic names count too)
        names = _unique(live.info.ch_names)
        self.windower = live.windower(window_s=window_s, hop_s=hop_s, target_sfreq=live.info.sfreq,
                                      montage=Montage(names), ch_names=names)
        self.tracker = FeatureTracker(tau_s=tau_s)
        self._extractor: BandFeatureExtractor | None = None
        self.latest: TrackedFeatures | None = None
        self._listeners: list[Callable[[TrackedFeatures], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add_listener(self, listener: Callable[[TrackedFeatures], None]) -> None:
        """Call ``listener(features)`` for every window (on the feature thread)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[TrackedFeatures], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start_baseline(self, duration_s: float) -> None:
        """Record a baseline over the next ``duration_s`` seconds (:meth:`FeatureTracker.start_baseline`)."""
        with self._lock:
            self.tracker.start_baseline(duration_s)

    def process(self, window: Window) -> TrackedFeatures:
        """The features of one window (the thread calls this; tests and replays may too)."""
        if self._extractor is None or self._extractor.n_samples != window.n_samples:
            self._extractor = BandFeatureExtractor(window.sfreq, window.ch_names, window.n_samples)
        values = self._extractor(window.data, window.mask)
        with self._lock:
            tracked = self.tracker.update(values, window.t_end)
        self.latest = tracked
        notify(self._listeners, tracked, "feature")
        return tracked

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="features", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and timeout:
            self._thread.join(timeout)

    def _loop(self) -> None:
        stop, pipeline = self._stop, self.live.pipeline
        seen = pipeline.raw.total_written
        while not stop.is_set():
            pipeline.wait_for_samples(seen, timeout=0.1)
            window = self.windower.poll()
            seen = pipeline.raw.total_written  # (what the poll's own drain brought counts as seen)
            if window is not None:
                try:
                    self.process(window)
                except Exception:  # (a bad window must not end the features: said once per kind, in the log)
                    log.debug("computing the features of a window failed", exc_info=True)


def _unique(names) -> list[str]:
    """Channel names made unique (a repeated or empty label gets its position appended)."""
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        label = str(name) or f"ch{i + 1}"
        if label.upper() in seen:
            label = f"{label}#{i + 1}"
        seen.add(label.upper())
        out.append(label)
    return out
