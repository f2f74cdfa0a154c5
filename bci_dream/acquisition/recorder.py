"""Record a session to ``.xdf`` while it streams: raw EEG, markers, and the app's own events.

Chunks are queued by the source thread and written by the recorder's own thread, so a slow disk
never holds up acquisition. Every chunk goes to disk as a whole XDF chunk and is flushed at once, so
a process killed mid-recording leaves a file that pyxdf reads up to its last second.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pylsl import local_clock

from bci_dream.core.errors import BciDreamError, RecordingError
from bci_dream.core.types import Chunk, Marker, StreamInfo
from bci_dream.io.xdf_writer import XdfWriter

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class RecordingSummary:
    path: Path
    samples: int
    markers: int
    events: int
    seconds: float
    aux_samples: int = 0


class SessionRecorder:
    """Writes one stream's chunks, markers and app events to ``path``.

    Args:
        path: the ``.xdf`` file to create (an existing file is not overwritten unless ``overwrite``).
        info: the EEG stream's description (channel names, rate, units).
        overwrite: replace an existing file.
        aux: streams recorded beside the EEG (a board's accelerometer, PPG, analog inputs), each a stream of the
            file with its own rate and timestamps; their chunks come through :meth:`push_aux`.

    Use it as a chunk listener: ``pipeline.add_listener(recorder.push)``; call :meth:`event` for
    app events (connected, stalled, generation started, ...), and :meth:`stop` to finish the file.
    """

    def __init__(self, path: str | os.PathLike, info: StreamInfo, *, overwrite: bool = False,
                 aux: Sequence[StreamInfo] = ()) -> None:
        self.path = Path(path)
        if not str(path).strip() or self.path.is_dir():
            raise RecordingError(f"{str(path)!r} is {'a folder' if str(path).strip() else 'empty'}: give the file to "
                                 "record to, like session.xdf")
        if self.path.exists() and not overwrite:
            raise RecordingError(f"{self.path} already exists; choose another file name or remove it first")
        if self.path.suffix.lower() != ".xdf":
            raise RecordingError(f"recordings are written as .xdf; name the file like {self.path.with_suffix('.xdf')}")
        self.info = info
        self._writer = XdfWriter(self.path)
        host = socket.gethostname()
        self._eeg_id = self._writer.add_stream(
            name=info.name, stream_type=info.stream_type or "EEG", channel_count=info.n_channels,
            nominal_srate=info.sfreq, channel_format="float32", source_id=info.source_id,
            channel_labels=list(info.ch_names), channel_units=info.units, channel_types="EEG", hostname=host)
        self._marker_id = self._writer.add_stream(
            name=f"{info.name} markers", stream_type="Markers", channel_count=1, nominal_srate=0.0,
            channel_format="string", source_id=f"{info.source_id}:markers", hostname=host)
        self._event_id = self._writer.add_stream(
            name="bci-dream events", stream_type="Events", channel_count=1, nominal_srate=0.0,
            channel_format="string", source_id="bci-dream:events", hostname=host)
        self._aux_ids = [self._writer.add_stream(
            name=a.name, stream_type=a.stream_type, channel_count=a.n_channels, nominal_srate=a.sfreq,
            channel_format="float32", source_id=a.source_id, channel_labels=list(a.ch_names), channel_units=a.units,
            channel_types=a.stream_type, hostname=host) for a in aux]
        self.aux_samples = 0
        self._queue: queue.Queue = queue.Queue()
        self.samples = 0
        self.markers = 0
        self.events = 0
        self.error: BciDreamError | None = None
        self._started_at = local_clock()
        self._stopped_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"recorder:{self.path.name}", daemon=True)
        self._thread.start()
        log.info("recording to %s", self.path)

    @property
    def elapsed(self) -> float:
        """Seconds since the recording started."""
        return (self._stopped_at or local_clock()) - self._started_at

    def push(self, chunk: Chunk) -> None:
        """Queue a chunk for writing (called on the source thread; returns at once)."""
        self._queue.put(chunk)

    def push_aux(self, index: int, chunk: Chunk) -> None:
        """Queue a chunk of aux stream ``index`` (the order of ``aux``) for writing; returns at once."""
        self._queue.put((index, chunk))

    def event(self, text: str, timestamp: float | None = None) -> None:
        """Record an app event, e.g. ``"device stalled"``, at ``timestamp`` (now by default)."""
        self._queue.put(Marker(local_clock() if timestamp is None else timestamp, text, "events"))

    def _run(self) -> None:
        last_offset = 0.0
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self.error is not None:
                continue  # keep draining so producers never block; the file stays as it was
            try:
                if isinstance(item, Chunk):
                    self._write_chunk(item)
                elif isinstance(item, tuple):
                    index, chunk = item
                    if len(chunk):
                        self._writer.write_samples(self._aux_ids[index], chunk.samples, chunk.timestamps)
                        self.aux_samples += len(chunk)
                else:
                    self._writer.write_strings(self._event_id, [item.text], [item.timestamp])
                    self.events += 1
                now = local_clock()
                if now - last_offset > 5.0:  # all streams share the local clock: offset 0
                    for sid in (self._eeg_id, self._marker_id, self._event_id, *self._aux_ids):
                        self._writer.write_clock_offset(sid, now, 0.0)
                    last_offset = now
            except (OSError, BciDreamError) as e:
                self.error = RecordingError(f"recording to {self.path} stopped: {e}; what was written so far is kept")
                log.error("%s", self.error)

    def _write_chunk(self, chunk: Chunk) -> None:
        if len(chunk):
            self._writer.write_samples(self._eeg_id, chunk.samples, chunk.timestamps)
            self.samples += len(chunk)
        if chunk.markers:
            self._writer.write_strings(self._marker_id, [m.text for m in chunk.markers],
                                       [m.timestamp for m in chunk.markers])
            self.markers += len(chunk.markers)

    def stop(self, timeout: float = 10.0) -> RecordingSummary:
        """Write what is queued, add the footers, close the file, and say what was recorded."""
        if self._stopped_at is None:
            self._stopped_at = local_clock()
            self._queue.put(_STOP)
            self._thread.join(timeout)
            try:
                self._writer.close()
            except (OSError, BciDreamError) as e:
                log.error("closing %s failed: %s; the data written so far is kept", self.path, e)
            log.info("recorded %d samples, %d markers to %s", self.samples, self.markers, self.path)
        return RecordingSummary(self.path, self.samples, self.markers, self.events, self.elapsed, self.aux_samples)
