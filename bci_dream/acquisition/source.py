"""The common shape of every source: a thread that reads a device, stream or file and emits chunks."""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace

from bci_dream.core.errors import BciDreamError
from bci_dream.core.types import Chunk, SourceState, StreamInfo

log = logging.getLogger(__name__)

ChunkSink = Callable[[Chunk], None]
#: Receives the chunks of the source's aux streams: ``sink(index into aux_infos, chunk)``.
AuxSink = Callable[[int, Chunk], None]
StateListener = Callable[[SourceState, str], None]

#: How many driven spans a source remembers (older ones lie far behind any window still being read).
KEPT_DRIVEN_SPANS = 16


@dataclass(frozen=True)
class DrivenSpan:
    """A stretch of a source's EEG that the device itself drove (an impedance check's test current), not the brain.

    Attributes:
        reason: what drove it, for the user ("impedance check").
        start, end: LSL clock seconds; ``end`` is infinite while the device still drives it.
    """

    reason: str
    start: float
    end: float = math.inf


class Source(ABC):
    """Base class of the BrainFlow, LSL and XDF-replay sources.

    Use: ``info = source.open()`` (blocking; raises :class:`~bci_dream.core.errors.BciDreamError` with
    a one-line message if the device cannot be opened), then ``source.start(sink)`` runs the
    acquisition on a thread of its own that calls ``sink(chunk)`` for every chunk, and
    ``source.stop()`` ends it. ``state`` tells where it is; ``error`` holds the reason it failed.
    A source with aux streams (a board's accelerometer, PPG or analog inputs) describes them in
    :attr:`aux_infos` after ``open()`` and delivers their chunks to ``start``'s ``aux_sink``.
    """

    #: Seconds without samples after which a streaming source is reported as stalled.
    stall_timeout: float = 2.0
    #: How the device measures electrode impedance (:data:`bci_dream.devices.IMPEDANCE_METHODS`); "" if it cannot.
    impedance_method: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self._info: StreamInfo | None = None
        self._state = SourceState.STOPPED
        self._state_listeners: list[StateListener] = []
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._sink: ChunkSink | None = None
        self._aux_sink: AuxSink | None = None
        self._taps: tuple[ChunkSink, ...] = ()
        self._driven: tuple[DrivenSpan, ...] = ()
        self.error: BciDreamError | None = None
        #: Samples the device reported as lost (sample-counter gaps), not counting overruns downstream.
        self.dropped_samples = 0

    @property
    def info(self) -> StreamInfo:
        if self._info is None:
            raise RuntimeError(f"{self.name}: call open() before reading info")
        return self._info

    @property
    def aux_infos(self) -> tuple[StreamInfo, ...]:
        """The streams delivered beside the EEG (none by default), known after ``open()``."""
        return ()

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(state, reason)`` on every change of state (from the source's thread)."""
        self._state_listeners.append(listener)

    def _set_state(self, state: SourceState, reason: str = "") -> None:
        if state == self._state:
            return
        self._state = state
        log.info("%s: %s%s", self.name, state.value, f" ({reason})" if reason else "")
        for listener in list(self._state_listeners):
            try:
                listener(state, reason)
            except Exception:  # a broken listener must not stop acquisition
                log.exception("state listener failed")

    @abstractmethod
    def open(self) -> StreamInfo:
        """Connect and learn the stream's description; raise ``BciDreamError`` if that fails."""

    @abstractmethod
    def _run(self) -> None:
        """Acquisition loop: emit chunks with :meth:`_emit` until ``self._stop_event`` is set."""

    def _close(self) -> None:
        """Release the device (called on the acquisition thread when the loop ends)."""

    def start(self, sink: ChunkSink, aux_sink: AuxSink | None = None) -> None:
        """Start the acquisition thread, delivering every chunk to ``sink`` (and aux chunks to ``aux_sink``)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        if self._info is None:
            self.open()
        self._sink = sink
        self._aux_sink = aux_sink
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._thread_main, name=f"source:{self.name}", daemon=True)
        self._thread.start()

    def _thread_main(self) -> None:
        try:
            self._run()
        except BciDreamError as e:
            self.error = e
            log.error("%s: %s", self.name, e)
            self._set_state(SourceState.FAILED, str(e))
        except Exception as e:  # unexpected: keep the message, never kill the process
            self.error = BciDreamError(f"{self.name} stopped unexpectedly: {type(e).__name__}: {e}")
            log.exception("%s: acquisition thread crashed", self.name)
            self._set_state(SourceState.FAILED, str(e))
        finally:
            try:
                self._close()
            except Exception:
                log.exception("%s: closing failed", self.name)
            if self._state != SourceState.FAILED:
                self._set_state(SourceState.STOPPED)

    def drain(self) -> None:
        """Deliver now, on the caller's thread, what the source already holds (nothing by default: a source whose
        thread waits for its data delivers it as it comes). Readers call it before reading a window."""

    @property
    def impedance_unavailable(self) -> str:
        """Why this source cannot measure electrode impedance, in one sentence; "" when it can."""
        return ("this stream cannot measure electrode impedance (only a headset's own driver can); the signal check "
                "stands in for it")

    def add_tap(self, tap: ChunkSink) -> None:
        """Also deliver every EEG chunk to ``tap`` (on the acquisition thread) until :meth:`remove_tap`."""
        self._taps = (*self._taps, tap)

    def remove_tap(self, tap: ChunkSink) -> None:
        self._taps = tuple(t for t in self._taps if t is not tap)

    def begin_driven_span(self, reason: str, start: float) -> None:
        """From ``start`` (LSL clock s) on, the device drives its own EEG (say why in ``reason``) until
        :meth:`end_driven_span`: readers that turn EEG into images leave that stretch out."""
        self._driven = (*self._driven[-(KEPT_DRIVEN_SPANS - 1):], DrivenSpan(reason, float(start)))

    def end_driven_span(self, end: float) -> None:
        """The stretch begun last ends at ``end`` (LSL clock s; add the time the signal takes to settle)."""
        if self._driven and math.isinf(self._driven[-1].end):
            self._driven = (*self._driven[:-1], replace(self._driven[-1], end=float(end)))

    def driven_during(self, start: float, end: float) -> str:
        """Why the EEG between ``start`` and ``end`` (LSL clock s) is partly the device's own, or "" if none of it
        is (see :meth:`begin_driven_span`)."""
        for span in reversed(self._driven):
            if span.start <= end and start <= span.end:
                return span.reason
        return ""

    def _emit(self, chunk: Chunk) -> None:
        if self._sink is not None:
            self._sink(chunk)
        for tap in self._taps:
            tap(chunk)

    def _emit_aux(self, index: int, chunk: Chunk) -> None:
        if self._aux_sink is not None:
            self._aux_sink(index, chunk)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for it. A source opened but never started is
        released here (its thread would have done it): a BrainFlow session left prepared blocks the next one."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: acquisition thread did not stop within %.1f s", self.name, timeout)
        elif self._info is not None:
            try:
                self._close()
            except Exception:
                log.exception("%s: closing failed", self.name)
            self._info = None  # (a later start opens it again)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the acquisition thread to end by itself (a replay that finished); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
