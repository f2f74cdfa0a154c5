"""Replay a recorded ``.xdf`` session as if it were live, at real-time pace or faster."""

from __future__ import annotations

import logging
import os

import numpy as np

from bci_dream.acquisition.source import Source
from bci_dream.acquisition.types import Chunk, Marker, SourceState, StreamInfo
from bci_dream.io.xdf import XdfSession, read_xdf

log = logging.getLogger(__name__)


class XdfReplaySource(Source):
    """Emits the EEG and marker streams of an ``.xdf`` file in chunks, markers at their true times.

    Timestamps are moved into the current LSL clock: a sample recorded at file time ``t`` is
    emitted with ``t0 + (t - t_first) / speed`` (``speed`` 1 when it is 0), where ``t0`` is the
    clock when the replay started; each loop continues where the last one ended.

    Args:
        path: the recording.
        speed: 1 = real time, 2 = twice as fast, 0 = as fast as the consumers take it.
        loop: start again at the end instead of stopping.
        stream: name or type of the EEG stream to replay (see :func:`bci_dream.io.xdf.read_xdf`).
        chunk_seconds: how much signal each real-time chunk holds.
        fast_chunk: samples per chunk at speed 0.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        speed: float = 1.0,
        loop: bool = False,
        stream: str | None = None,
        chunk_seconds: float = 0.02,
        fast_chunk: int = 1024,
        session: XdfSession | None = None,
    ) -> None:
        super().__init__(f"replay:{os.path.basename(os.fspath(path))}")
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, not {speed}")
        self.path = path
        self.speed = float(speed)
        self.loop = loop
        self.stream = stream
        self.chunk_seconds = chunk_seconds
        self.fast_chunk = fast_chunk
        self.session = session
        self.loops_done = 0
        #: Add this to an emitted timestamp to get the file's timestamp (first loop, speed 1 or 0).
        self.time_offset = 0.0
        self._markers: list[Marker] = []
        self._marker_times = np.empty(0)

    def open(self) -> StreamInfo:
        if self.session is None:
            self.session = read_xdf(self.path, self.stream)
        eeg = self.session.eeg
        markers = [Marker(float(t), text, m.name) for m in self.session.markers
                   for t, text in zip(m.timestamps, m.texts)]
        markers.sort(key=lambda m: m.timestamp)
        self._markers = markers
        self._marker_times = np.array([m.timestamp for m in markers], np.float64)
        self._info = StreamInfo(name=eeg.name, ch_names=eeg.ch_names, sfreq=eeg.sfreq, units=eeg.units,
                                source_id=eeg.source_id or os.fspath(self.path), stream_type=eeg.stream_type or "EEG")
        return self._info

    @property
    def duration(self) -> float:
        """Seconds of signal in one pass, including one sample period at the end."""
        eeg = self.session.eeg
        return float(eeg.timestamps[-1] - eeg.timestamps[0]) + 1.0 / eeg.sfreq

    def _run(self) -> None:
        from pylsl import local_clock

        eeg = self.session.eeg
        ts = eeg.timestamps
        n = ts.shape[0]
        sched = np.maximum.accumulate(ts)  # sorted even where raw timestamps step back
        t_first = float(ts[0])
        rate = self.speed or 1.0
        start_clock = local_clock()
        self._set_state(SourceState.STREAMING)
        loop_shift = 0.0  # file seconds added by finished loops
        while True:
            self.time_offset = t_first - start_clock
            i = 0
            m = 0
            while i < n:
                if self._stop_event.is_set():
                    return
                if self.speed > 0:
                    file_now = t_first + (local_clock() - start_clock) * rate - loop_shift
                    # a chunk leaves once chunk_seconds of signal are due (the last one when its end is due)
                    due = min(sched[i] + self.chunk_seconds * rate, sched[-1])
                    if file_now < due:
                        self._stop_event.wait(max((due - file_now) / rate, 0.0005))
                        continue
                    j = int(np.searchsorted(sched, file_now, side="right"))
                else:
                    j = min(i + self.fast_chunk, n)
                # markers up to the last sample of this chunk (all remaining ones with the last chunk)
                t_limit = ts[j - 1] if j < n else np.inf
                m_end = int(np.searchsorted(self._marker_times, t_limit, side="right"))
                stamps = (ts[i:j] - t_first + loop_shift) / rate + start_clock
                markers = [Marker((mk.timestamp - t_first + loop_shift) / rate + start_clock, mk.text, mk.stream)
                           for mk in self._markers[m:m_end]]
                self._emit(Chunk(eeg.data[i:j], stamps, markers))
                i, m = j, m_end
            self.loops_done += 1
            if not self.loop:
                log.info("%s: replay finished", self.name)
                return
            loop_shift += self.duration
