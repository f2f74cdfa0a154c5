"""OSC out and in (python-osc), for stage tools: TouchDesigner, Max, Ableton, Resolume, Processing.

Sent to ``--osc HOST:PORT`` (UDP), under ``/bci-dream``:

- ``/bci-dream/feature/<name>`` ``smoothed z``: every band-power feature, every hop (``alpha``, ``beta.frontal``,
  ``engagement``, ``artefact`` ...), whether or not anything shows them;
- ``/bci-dream/steering`` ``prompt weight`` per prompt of the blend, ``/bci-dream/eeg_influence`` ``w``: per frame;
- ``/bci-dream/frame`` ``index t_end latency_ms skipped``: per frame (``t_end``: LSL seconds of the window's last
  sample; latency -1 when unknown);
- ``/bci-dream/quality/<channel>`` ``status``: once a second (``good``, ``flat``, ``railed``, ``line_noise``,
  ``high_amplitude``).

Received on ``--osc-listen PORT``: ``/bci-dream/eeg_influence f``, ``/bci-dream/prompt s``, ``/bci-dream/seed i``,
``/bci-dream/generate i`` (1 start, 0 stop) and ``/bci-dream/marker s``. A host that cannot be reached is said in one
line and generation goes on without OSC.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)

PREFIX = "/bci-dream"
COMMANDS = ("eeg_influence", "prompt", "seed", "generate", "marker")


class OscError(BciDreamError):
    """An OSC address that cannot be read or a port that cannot be opened."""


def parse_host_port(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9000"`` → ``("127.0.0.1", 9000)``; ``":9000"`` and ``"9000"`` mean this machine.

    Raises:
        OscError: not HOST:PORT with a port from 1 to 65535.
    """
    host, _, port = str(text).rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise OscError(f"'{text}' is not an OSC address: give HOST:PORT, e.g. 127.0.0.1:9000")
    return host or "127.0.0.1", number


class OscSender:
    """Sends features, steering and frame events to one host (see the module docstring). Sending never raises: a
    failure is said once, in one line, and later messages are dropped quietly until one goes through again."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, int(port)
        self._failing = False
        self.sent = 0
        try:
            self._client = SimpleUDPClient(host, self.port)
        except OSError as e:
            self._client = None
            log.warning("cannot send OSC to %s:%d (%s); generation goes on without OSC", host, self.port, e)

    def send(self, address: str, *values: Any) -> None:
        if self._client is None:
            return
        try:
            self._client.send_message(address, list(values))
            self.sent += 1
            self._failing = False
        except OSError as e:
            if not self._failing:
                log.warning("OSC to %s:%d failed (%s); generation goes on, OSC is retried", self.host, self.port, e)
            self._failing = True

    def features(self, tracked) -> None:
        """A :class:`~bci_dream.signal.feature_tracker.TrackedFeatures` as ``/bci-dream/feature/<name>``."""
        for name, value in tracked.smoothed.items():
            self.send(f"{PREFIX}/feature/{name}", float(value), float(tracked.z.get(name, 0.0)))

    def frame(self, frame) -> None:
        """An engine frame: its event, the blend's weights and the EEG influence."""
        r = frame.record
        self.send(f"{PREFIX}/frame", int(r.index), float(r.t_end),
                  float(r.latency_ms) if r.latency_ms is not None else -1.0, int(r.skipped))
        for prompt, weight in r.prompt_weights.items():
            self.send(f"{PREFIX}/steering", prompt, float(weight))
        if r.eeg_influence is not None:
            self.send(f"{PREFIX}/eeg_influence", float(r.eeg_influence))

    def quality(self, channels) -> None:
        """:class:`~bci_dream.signal.quality.ChannelQuality` list as ``/bci-dream/quality/<channel>``."""
        for q in channels:
            self.send(f"{PREFIX}/quality/{q.name}", str(q.status))


class OscReceiver:
    """Takes commands on a UDP port (see the module docstring) and calls ``handlers[command](value)`` on its own
    thread; a handler that fails is said in one line and the receiver goes on.

    Raises:
        OscError: the port cannot be opened (in use, or not allowed).
    """

    def __init__(self, port: int, handlers: Mapping[str, Callable[[Any], None]], host: str = "0.0.0.0") -> None:
        unknown = set(handlers) - set(COMMANDS)
        if unknown:
            raise OscError(f"unknown OSC commands {', '.join(sorted(unknown))}; known: {', '.join(COMMANDS)}")
        dispatcher = Dispatcher()
        for command, handler in handlers.items():
            dispatcher.map(f"{PREFIX}/{command}", self._call(command, handler))
        dispatcher.set_default_handler(lambda address, *args: log.debug("unknown OSC message %s %s", address, args))
        try:
            # (one message at a time, in the order sent: a later prompt is never overtaken by an earlier one)
            self._server = BlockingOSCUDPServer((host, int(port)), dispatcher)
        except OSError as e:
            raise OscError(f"cannot listen for OSC on port {port}: {e.strerror or e}; choose another --osc-listen "
                           "port") from e
        self.port = int(self._server.server_address[1])
        self.received = 0
        self._thread = threading.Thread(target=self._server.serve_forever, name="osc:listen", daemon=True)
        self._thread.start()

    def _call(self, command: str, handler: Callable[[Any], None]):
        def on_message(address: str, *args: Any) -> None:
            self.received += 1
            if not args:
                log.warning("OSC %s needs a value", address)
                return
            try:
                handler(args[0])
            except Exception as e:  # noqa: BLE001 - a bad command must not end the session
                log.warning("OSC %s %r failed: %s", address, args[0], e)

        return on_message

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
