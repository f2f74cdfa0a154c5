"""Timestamps for the samples that open an LSL connection, which liblsl stamps from nothing.

An LSL outlet that pushes a chunk stamps only the chunk's first sample; the others travel as
"deduced", and the receiving inlet stamps each one as the previous sample's timestamp +
1/sfreq. The receiver starts that count at 0 on every new connection, so an inlet that connects
(or that liblsl reconnects) while a chunk is on its way gets its first samples stamped 1/sfreq,
2/sfreq, ... seconds of the sender's clock: off by the sender's uptime. liblsl's dejitterer,
started on such a sample, then spreads the error over the next minutes.

:class:`StampSettler` recognises that run (with the clock offset taken off, its timestamps are a
few seconds at most, where a sender's clock reads its uptime), holds its samples back until the
first sample stamped by the sender arrives, and stamps them back from it at 1/sfreq. The source
keeps liblsl's dejitterer off until then, so that it starts on a true timestamp.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: A timestamp this close to the sender clock's zero (seconds) was counted up from nothing.
DEDUCED_STAMP_LIMIT_S = 10.0
#: Seconds of held samples after which the settler stops waiting for a stamped one.
MAX_HELD_S = 5.0


class StampSettler:
    """Re-stamps the leading samples of a connection that liblsl stamped from nothing.

    Use: :meth:`begin` when a connection (re)starts; while :attr:`settling`, pass each pulled
    chunk through :meth:`settle` and emit what it returns; call :meth:`flush` when the stream
    stalls, is lost or stops, so that held samples are never lost.

    Args:
        sfreq: the stream's nominal sampling rate in Hz (> 0).
        name: the source's name, for log lines.
    """

    def __init__(self, sfreq: float, name: str = "LSL") -> None:
        if sfreq <= 0:
            raise ValueError("a regular stream is needed (sfreq > 0)")
        self.sfreq = float(sfreq)
        self.name = name
        self.settling = False
        self._held: list[np.ndarray] = []
        self._held_count = 0
        self._held_at = 0.0

    def begin(self) -> None:
        """A connection starts (or may have restarted): look at the next samples' timestamps."""
        self.settling = True

    def settle(
        self, samples: np.ndarray, timestamps: np.ndarray, clock_offset: float, now: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The samples to emit now, with their timestamps set right.

        Args:
            samples: float32 [n, n_channels] as pulled (owned by the caller's chunk; copied if held).
            timestamps: float64 [n], the sender's stamps plus ``clock_offset`` (local seconds).
            clock_offset: seconds liblsl added to map the sender's clock to ours (0 without clocksync).
            now: local clock (seconds) when the chunk was pulled; stamps held samples if given up on.

        Returns:
            ``(samples [m, n_channels], timestamps [m])``; ``m`` is 0 while every sample so far was
            stamped from nothing. Ends settling at the first sample its sender stamped.
        """
        deduced = (timestamps - clock_offset) < DEDUCED_STAMP_LIMIT_S
        run = int(np.argmin(deduced)) if not deduced.all() else len(timestamps)
        if run == len(timestamps):
            self._held.append(samples.copy())
            self._held_count += run
            self._held_at = now
            if self._held_count / self.sfreq > MAX_HELD_S:
                log.warning(
                    "%s: the stream's timestamps stay near its clock's zero (%.3f s); using arrival times instead",
                    self.name, float(timestamps[-1] - clock_offset),
                )
                return self.end()
            return samples[:0], timestamps[:0]
        held = [*self._held, samples[:run]]
        count = self._held_count + run
        self._held, self._held_count = [], 0
        self.settling = False
        if count == 0:
            return samples, timestamps
        log.info("%s: %d sample(s) opening the connection re-stamped from the first stamped one", self.name, count)
        restamped = timestamps[run] - np.arange(count, 0, -1) / self.sfreq
        return np.concatenate([*held, samples[run:]]), np.concatenate([restamped, timestamps[run:]])

    def end(self) -> tuple[np.ndarray, np.ndarray]:
        """Stop settling without a stamped sample (e.g. the clock offset is unknown): :meth:`flush`."""
        self.settling = False
        return self.flush()

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """The held samples (float32 [m, n_channels], may be m = 0) stamped back from when the last arrived.

        For a connection that stalls, is lost or stops before a stamped sample arrived.
        """
        if not self._held:
            return np.empty((0, 0), np.float32), np.empty(0, np.float64)
        samples = np.concatenate(self._held)
        timestamps = self._held_at - np.arange(len(samples) - 1, -1, -1) / self.sfreq
        self._held, self._held_count = [], 0
        return samples, timestamps
