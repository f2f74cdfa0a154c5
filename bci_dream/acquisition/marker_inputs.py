"""Markers from outside, for every source (a BrainFlow headset, an LSL stream, a replay): UDP datagrams and an LSL
marker stream, each on its own thread, into :meth:`LiveStream.mark
<bci_dream.acquisition.live.LiveStream.mark>` (the traces draw them, a recording keeps them, the LSL outlet
re-publishes them), stamped with the LSL clock when they arrive (an LSL marker keeps its own stamp, mapped to this
clock).

- :class:`UdpMarkers`: each datagram on the port is one marker, its text the datagram decoded as UTF-8 (a trailing
  newline dropped): ``echo -n stimulus | nc -u -w0 127.0.0.1 9002``.
- :class:`LslMarkers`: every sample of the named LSL stream (type ``Markers``, string channel) is one marker; the
  stream is looked for until it appears, and again when it vanishes.
"""

from __future__ import annotations

import logging
import socket
import threading

import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)


class MarkerInputError(BciDreamError):
    """A marker input that cannot be opened (a UDP port in use)."""


class UdpMarkers:
    """Markers from UDP datagrams on ``port`` (see the module docstring); :meth:`close` ends it.

    Raises:
        MarkerInputError: the port cannot be opened.
    """

    def __init__(self, live, port: int, host: str = "0.0.0.0") -> None:
        self.live = live
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._socket.bind((host, int(port)))
        except OSError as e:
            self._socket.close()
            raise MarkerInputError(f"cannot listen for UDP markers on port {port}: {e.strerror or e}; choose another "
                                   "port") from e
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="markers:udp", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._socket.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return  # (closed)
            text = data.decode("utf-8", "replace").rstrip("\r\n")
            if text:
                self.received += 1
                try:
                    self.live.mark(text, stream="udp")
                except BciDreamError as e:
                    log.warning("UDP marker %r not added: %s", text, e)

    def close(self) -> None:
        """End it (its thread notices within 0.2 s; not waited for)."""
        self._stop.set()
        self._socket.close()


class LslMarkers:
    """Markers from the LSL stream named ``name`` (see the module docstring); :meth:`close` ends it."""

    def __init__(self, live, name: str) -> None:
        self.live, self.name = live, name
        self.received = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="markers:lsl", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        said = False
        while not self._stop.is_set():
            found = pylsl.resolve_byprop("name", self.name, minimum=1, timeout=1.0)
            if not found:
                if not said:
                    log.info("waiting for the LSL marker stream %r", self.name)
                    said = True
                continue
            inlet = pylsl.StreamInlet(found[0], recover=False)
            self.connected.set()
            log.info("markers from the LSL stream %r", self.name)
            try:
                offset = inlet.time_correction(timeout=2.0)
                while not self._stop.is_set():
                    sample, stamp = inlet.pull_sample(timeout=0.2)
                    if sample is None:
                        continue
                    self.received += 1
                    self.live.mark(str(sample[0]), timestamp=stamp + offset, stream=self.name)
            except (LostError, LslTimeoutError):
                log.warning("the LSL marker stream %r vanished; looking for it again", self.name)
                self.connected.clear()
            except BciDreamError as e:
                log.warning("LSL marker not added: %s", e)
            finally:
                inlet.close_stream()

    def close(self) -> None:
        """End it (its thread notices within a second; not waited for)."""
        self._stop.set()
