"""A stand-in for an OpenBCI Cyton on a pseudo-terminal, for BrainFlow's real Cyton driver to talk to.

No Cyton can be plugged into the test machine, so this plays the board's side of its serial protocol (the Cyton
SDK: ``v`` → a banner ending in ``$$$``, ``d`` → defaults, ``b``/``s`` → start/stop 33-byte packets at 250 Hz,
``x…X`` channel settings, ``z…Z`` lead-off) the way BrainFlow's own emulator (``brainflow_emulator/cyton_linux.py``)
does. The EEG it sends is a real recording, scaled by each channel's gain as the ADS1299 would; a channel whose
lead-off current is on carries, in addition, the 31.25 Hz sine that a 6 nA current makes across
``impedance + 2.2 kΩ`` — so the impedance a check measures can be compared with the one set here.

Use::

    with CytonEmulator(background_uv, impedance_kohm=[5, 20, ...]) as cyton:
        ... BrainFlowSource(profile, {"serial_port": cyton.port}) ...
        cyton.commands, cyton.gains, cyton.lead_off
"""

from __future__ import annotations

import os
import pty
import select
import threading
import time
import tty

import numpy as np

SFREQ = 250.0
BANNER = b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\nLIS3DH Device ID: 0x33\nFirmware: v3.1.2\n$$$"
GAINS = (1, 2, 4, 6, 8, 12, 24)
LETTERS = "12345678"
LEAD_OFF_AMPS = 6.0e-9
SERIES_OHMS = 2200.0


class CytonEmulator:
    """An 8-channel Cyton on a pty: ``port`` is the device path to give BrainFlow.

    Args:
        background_uv: ``[n, 8]`` EEG in µV, sent in a loop.
        impedance_kohm: each electrode's impedance, shown while its lead-off current is on.
    """

    def __init__(self, background_uv: np.ndarray, impedance_kohm) -> None:
        self.background = np.asarray(background_uv, dtype=np.float64)
        self.impedance_kohm = list(impedance_kohm)
        self.commands: list[str] = []
        self.gains = [24] * 8
        self.srb2 = [True] * 8
        self.lead_off = [False] * 8
        self.streaming = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sample = 0
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._thread = threading.Thread(target=self._serve, name="cyton-emulator", daemon=True)

    def __enter__(self) -> CytonEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the protocol ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        pending = b""
        next_packet = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.004)
            if ready:
                try:
                    pending += os.read(self.master, 1024)
                except OSError:
                    return
                pending = self._handle(pending)
            now = time.monotonic()
            if self.streaming:
                n = int((now - next_packet) * SFREQ)
                if n > 0:
                    self._send_packets(n)
                    next_packet += n / SFREQ
            else:
                next_packet = now

    def _handle(self, pending: bytes) -> bytes:
        while pending:
            head = chr(pending[0])
            if head in "xz":
                size = 9 if head == "x" else 5
                if len(pending) < size:
                    return pending
                self._setting(pending[:size].decode("ascii", "replace"))
                pending = pending[size:]
                continue
            pending = pending[1:]
            with self._lock:
                self.commands.append(head)
            if head == "v":
                os.write(self.master, BANNER)
            elif head == "d":
                self.gains, self.srb2, self.lead_off = [24] * 8, [True] * 8, [False] * 8
                os.write(self.master, b"updating channel settings to default$$$")
            elif head == "b":
                self.streaming = True
            elif head == "s":
                self.streaming = False
        return pending

    def _setting(self, command: str) -> None:
        with self._lock:
            self.commands.append(command)
        channel = LETTERS.find(command[1])
        if channel < 0:
            return
        if command[0] == "x" and command[-1] == "X":
            self.gains[channel] = GAINS[int(command[3])]
            self.srb2[channel] = command[6] == "1"
        elif command[0] == "z" and command[-1] == "Z":
            self.lead_off[channel] = command[3] == "1"

    def _send_packets(self, n: int) -> None:
        out = bytearray()
        for _ in range(n):
            i = self._sample
            uv = self.background[i % len(self.background)].copy()
            t = i / SFREQ
            for c in range(8):
                if self.lead_off[c]:
                    amplitude_uv = LEAD_OFF_AMPS * (self.impedance_kohm[c] * 1000.0 + SERIES_OHMS) * 1e6
                    uv[c] += amplitude_uv * np.sin(2 * np.pi * 31.25 * t)
            out += b"\xa0" + bytes([i & 0xFF])
            for c in range(8):
                scale_uv = 4.5 / (2 ** 23 - 1) / self.gains[c] * 1e6
                counts = int(np.clip(round(uv[c] / scale_uv), -(2 ** 23), 2 ** 23 - 1))
                out += (counts & 0xFFFFFF).to_bytes(3, "big")
            out += bytes(6) + b"\xc0"
            self._sample += 1
        try:
            os.write(self.master, bytes(out))
        except OSError:
            pass

    @property
    def settings_commands(self) -> list[str]:
        """The ``x…X`` and ``z…Z`` commands received, in order."""
        with self._lock:
            return [c for c in self.commands if len(c) > 1]

    def wait_for_settings(self, n: int, timeout: float = 3.0) -> list[str]:
        """The settings commands once ``n`` have come in (the serial line is read on the emulator's thread), or
        those that came within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while len(self.settings_commands) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.settings_commands
