"""Replay a recorded session as if it were live, at real-time pace or faster: an ``.xdf`` with all its streams, or
any recording bci-dream reads (EDF, BDF, FIF, BrainVision, OpenBCI text, Muse and BrainFlow CSV ...)."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from bci_dream.acquisition.source import Source
from bci_dream.core.types import Chunk, Marker, SourceState, StreamInfo
from bci_dream.io.readers import read_session
from bci_dream.io.xdf_reader import XdfSession

log = logging.getLogger(__name__)


class XdfReplaySource(Source):
    """Emits the EEG and marker streams of a recording (:func:`~bci_dream.io.readers.read_session`) in chunks,
    markers at their true times.

    Timestamps are moved into the current LSL clock: a sample recorded at file time ``t`` is
    emitted with ``t0 + (t - t_first) / speed`` (``speed`` 1 when it is 0), where ``t0`` is the
    clock when the replay started; each loop continues where the last one ended.

    Args:
        path: the recording.
        speed: 1 = real time, 2 = twice as fast, 0 = as fast as the consumers take it.
        loop: start again at the end instead of stopping.
        stream: name or type of the EEG stream to replay (see :func:`bci_dream.io.xdf_reader.read_xdf`).
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
        self._control = threading.Lock()
        self._paused = False
        self._seek_to: float | None = None
        self._reanchor = False
        self._position = 0.0

    @property
    def impedance_unavailable(self) -> str:
        return "a replayed recording has no electrodes to measure; the signal check stands in for it"

    def open(self) -> StreamInfo:
        if self.session is None:
            self.session = read_session(self.path, stream=self.stream)
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

    # -- playback controls (any thread) ------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def position(self) -> float:
        """Seconds from the start of the file of the next sample to be emitted."""
        return self._position

    def pause(self) -> None:
        """Stop emitting until :meth:`resume`; the stream's clock goes on, so nothing is stamped in the past."""
        with self._control:
            self._paused = True

    def resume(self) -> None:
        with self._control:
            self._paused = False
            self._reanchor = True

    def seek(self, seconds: float) -> None:
        """Go on from ``seconds`` into the file (clamped to the file); timestamps stay increasing."""
        with self._control:
            self._seek_to = min(max(float(seconds), 0.0), self.duration if self.session is not None else 0.0)
            self._reanchor = True

    def set_speed(self, speed: float) -> None:
        """Change the pace (1 = real time, 0 = as fast as possible) from the next chunk on."""
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, not {speed}")
        with self._control:
            self.speed = float(speed)
            self._reanchor = True

    def _run(self) -> None:
        from pylsl import local_clock

        eeg = self.session.eeg
        ts = eeg.timestamps
        n = ts.shape[0]
        sched = np.maximum.accumulate(ts)  # sorted even where raw timestamps step back
        t_first = float(ts[0])
        period = 1.0 / eeg.sfreq
        self._set_state(SourceState.STREAMING)
        # Emitted stamp of file time t: anchor_clock + (t - anchor_file) / rate; pacing follows the real clock
        # from pace_clock. The anchor moves on a loop, a seek, a pause or a speed change, never backwards:
        # stamps keep increasing across all of them (and stay ahead of the clock after a pass at speed 0).
        anchor_clock, anchor_file = local_clock(), t_first
        pace_clock = anchor_clock
        next_stamp = anchor_clock
        self.time_offset = anchor_file - anchor_clock
        resumed = False
        while True:
            i = m = 0
            while i < n:
                if self._stop_event.is_set():
                    return
                with self._control:
                    paused, seek_to, reanchor = self._paused, self._seek_to, self._reanchor
                    self._seek_to, self._reanchor = None, False
                    speed = self.speed
                rate = speed or 1.0
                if seek_to is not None:
                    i = int(np.searchsorted(sched, t_first + seek_to, side="left"))
                    m = int(np.searchsorted(self._marker_times, ts[min(i, n - 1)], side="left"))
                    if i >= n:
                        break
                if reanchor or seek_to is not None:
                    resumed = True
                    pace_clock = local_clock()
                    anchor_clock = max(pace_clock, next_stamp)
                    anchor_file = float(sched[i])
                self._position = float(sched[i] - t_first)
                if paused:
                    self._stop_event.wait(0.02)
                    with self._control:
                        self._reanchor = True
                    continue
                if speed > 0:
                    file_now = anchor_file + (local_clock() - pace_clock) * rate
                    # a chunk leaves once chunk_seconds of signal are due (the last one when its end is due)
                    due = min(sched[i] + self.chunk_seconds * rate, sched[-1])
                    if file_now < due:
                        self._stop_event.wait(min(max((due - file_now) / rate, 0.0005), 0.05))
                        continue
                    j = max(int(np.searchsorted(sched, file_now, side="right")), i + 1)
                else:
                    j = min(i + self.fast_chunk, n)
                # markers up to the last sample of this chunk (all remaining ones with the last chunk)
                t_limit = ts[j - 1] if j < n else np.inf
                m_end = int(np.searchsorted(self._marker_times, t_limit, side="right"))
                stamps = (ts[i:j] - anchor_file) / rate + anchor_clock
                markers = [Marker((mk.timestamp - anchor_file) / rate + anchor_clock, mk.text, mk.stream)
                           for mk in self._markers[m:m_end]]
                self._emit(Chunk(eeg.data[i:j], stamps, markers, resumed))
                resumed = False
                next_stamp = float((sched[j - 1] - anchor_file) / rate + anchor_clock) + period / rate
                i, m = j, m_end
            self.loops_done += 1
            if not self.loop:
                self._position = self.duration
                log.info("%s: replay finished", self.name)
                return
            # the next pass follows on seamlessly
            anchor_file, anchor_clock = t_first, next_stamp
            pace_clock = min(local_clock(), next_stamp)
