"""Opening, superseding and stopping live streams on worker threads, without Qt.

The desktop window and the calibration wizard both open devices through one :class:`StreamController`
(each through a thin Qt adapter that queues the controller's events to the GUI thread):

- every :meth:`~StreamController.open` or :meth:`~StreamController.close` starts a new *request*; results
  carry the number of the request they answer, and :meth:`~StreamController.accept`,
  :meth:`~StreamController.is_current` drop those of older ones;
- workers take turns: a device can be opened only once, so the stream that was open is stopped before the
  next one opens, and a stream that finished opening after it was superseded is stopped by its own worker;
- a stream that opened but failed to start is closed before the failure is reported; an error while stopping
  one stream is logged and the others are stopped all the same;
- nothing here waits on the caller's thread except :meth:`~StreamController.close` with ``wait=True``
  (used when the window closes: a recording must be closed before the process ends).

Events (on a worker thread; see :class:`StreamEvents`): ``opened(number, live)`` once a stream streams,
``failed(number, message)`` with one line for the user, ``state(number, state, reason)`` for every source state
change, ``recorded(summary)`` when a stopped stream had a recording.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bci_dream.acquisition.live import LiveStream
from bci_dream.acquisition.recorder import RecordingSummary
from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)

#: Something to stop once its turn comes: a stream (its ``stop()`` may return a
#: :class:`RecordingSummary`), or a callable (e.g. ``lambda: engine.stop(timeout=10)``).
Stoppable = LiveStream | Callable[[], Any]


def _ignore(*args: Any) -> None:
    return None


@dataclass
class StreamEvents:
    """The controller's listeners; each is called on a worker thread (defaults do nothing)."""

    opened: Callable[[int, LiveStream], None] = _ignore
    failed: Callable[[int, str], None] = _ignore
    state: Callable[[int, str, str], None] = _ignore
    recorded: Callable[[RecordingSummary], None] = _ignore


class StreamController:
    """One current stream at a time, opened and stopped on worker threads that take turns (see the module
    docstring).

    Args:
        events: the listeners of the controller's events.
        name: prefix of the worker threads' names.

    Attributes:
        live: the stream accepted last (:meth:`accept`), or None.
    """

    def __init__(self, events: StreamEvents | None = None, *, name: str = "stream") -> None:
        self.events = events or StreamEvents()
        self.name = name
        self.live: LiveStream | None = None
        self._number = 0
        self._turn = threading.Lock()
        self._retired: list[Stoppable] = []
        self._retired_lock = threading.Lock()
        # Streams that opened for the current request and wait for accept(): a request that comes first retires
        # them (so a superseded or closing request never leaves one holding its device).
        self._pending: dict[int, LiveStream] = {}

    @property
    def number(self) -> int:
        """The current request's number."""
        return self._number

    def is_current(self, number: int) -> bool:
        """Whether a result of request ``number`` still counts (no open or close came since)."""
        return number == self._number

    # -- requests --------------------------------------------------------------------------------------

    def open(self, make_live: Callable[[], LiveStream], *, what: str = "the device",
             retire: tuple[Stoppable, ...] = ()) -> int:
        """Open and start the stream ``make_live()`` builds, on a worker thread, after stopping the current one
        (and ``retire``: things bound to it, such as its engine). Returns the request's number.

        ``make_live`` runs on the worker; its :class:`BciDreamError` (an unknown device, a missing port) becomes
        the ``failed`` event's message as it is, any other exception "could not open WHAT: Type: message".
        """
        number = self._new_request(retire)
        self._worker(f"{self.name}:open", lambda: self._open(number, make_live, what))
        return number

    def close(self, *, retire: tuple[Stoppable, ...] = (), wait: bool = False) -> None:
        """Stop the current stream (a recording is closed and kept) and ``retire``; on a worker thread, or here
        with ``wait`` (after any open in progress has finished and been stopped)."""
        self._new_request(retire)
        if wait:
            self._stop_retired_in_turn()
        else:
            self._worker(f"{self.name}:close", self._stop_retired_in_turn)

    def accept(self, number: int, live: LiveStream) -> bool:
        """Take ``live`` (the ``opened`` event of request ``number``) as the current stream; a stale one is
        stopped in turn instead and False returned. Call it on the thread that opens and closes."""
        with self._retired_lock:
            pending = self._pending.pop(number, None)
        if number != self._number or pending is not live:
            if pending is live:
                self._retire((live,))
            self._worker(f"{self.name}:close", self._stop_retired_in_turn)
            return False
        self.live = live
        return True

    def detach(self) -> LiveStream | None:
        """Take the current stream out without stopping it (the caller then owns it); None if there is none."""
        live, self.live = self.live, None
        return live

    # -- workers ---------------------------------------------------------------------------------------

    def _new_request(self, retire: tuple[Stoppable, ...]) -> int:
        with self._retired_lock:
            self._number += 1
            pending, self._pending = list(self._pending.values()), {}
            self._retired.extend(tuple(retire) + ((self.live,) if self.live is not None else ()) + tuple(pending))
        self.live = None
        return self._number

    def _retire(self, things: tuple[Stoppable, ...]) -> None:
        with self._retired_lock:
            self._retired.extend(things)

    @staticmethod
    def _worker(name: str, work: Callable[[], None]) -> None:
        # (daemon: a device that never answers must not keep the process alive after the window closed)
        threading.Thread(target=work, name=name, daemon=True).start()

    def _stop_retired_in_turn(self) -> None:
        with self._turn:
            self._stop_retired()

    def _stop_retired(self) -> None:
        """Stop everything retired so far (holding the turn)."""
        while True:
            with self._retired_lock:
                if not self._retired:
                    return
                thing = self._retired.pop(0)
            self._stop(thing)

    def _stop(self, thing: Stoppable) -> None:
        try:
            stop = getattr(thing, "stop", None)
            if stop is None:
                thing()
                return
            summary = stop()
            if isinstance(summary, RecordingSummary):
                self.events.recorded(summary)
        except Exception:  # noqa: BLE001 - stopping must go on for the others
            log.exception("stopping %s failed", thing)

    def _open(self, number: int, make_live: Callable[[], LiveStream], what: str) -> None:
        with self._turn:
            self._stop_retired()
            if number != self._number:
                return  # (superseded before it began)
            live = None
            try:
                live = make_live()
                live.open()
                live.source.add_state_listener(
                    lambda state, reason: self.events.state(number, state.value, reason))
                live.start()
            except Exception as e:  # noqa: BLE001 - said in one line; a bug must not take the window down
                if not isinstance(e, BciDreamError):  # (the traceback with -vv; the window says it in one line)
                    log.debug("opening %s failed", what, exc_info=True)
                if live is not None and live.pipeline is not None:
                    self._stop(live)  # (opened but did not start: close the device)
                self.events.failed(number, str(e) if isinstance(e, BciDreamError)
                                   else f"could not open {what}: {type(e).__name__}: {e}")
                return
            with self._retired_lock:
                superseded = number != self._number
                if not superseded:
                    self._pending[number] = live
            if superseded:  # superseded while it opened: closed here, before the next open
                self._stop(live)
                return
        self.events.opened(number, live)
