"""Re-publish acquired EEG and markers as LSL streams.

With a :class:`LslPublisher` as one of a source's chunk sinks, LabRecorder and every other LSL
tool see a BrainFlow headset (or a replayed file) like any LSL device: one float32 EEG stream
with channel labels and units in its description, and one string marker stream. Samples keep the
timestamps the source gave them (local LSL clock seconds), so recordings made elsewhere line up.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pylsl

from bci_dream.core.types import Chunk, StreamInfo

log = logging.getLogger(__name__)


class LslPublisher:
    """Two LSL outlets (EEG + markers) fed from chunks; callable, so usable as a chunk sink.

    Args:
        info: description of the acquired stream (channel names, rate, units, type).
        name: EEG outlet name; default ``f"{info.name} (bci-dream)"``. The marker outlet is
            named ``f"{info.name} markers (bci-dream)"`` (or ``f"{name} markers"`` if ``name`` is given).
        source_id: EEG outlet source_id; default ``f"bci-dream:{info.source_id or info.name}"``.
            A stable source_id lets LSL clients reconnect when the app restarts. The marker outlet
            gets ``source_id + ":markers"``.
        chunk_size: transmission granularity in samples (0: one network chunk per push).

    Thread safety: :meth:`push` and :meth:`close` may be called from different threads.
    """

    def __init__(
        self,
        info: StreamInfo,
        name: str | None = None,
        source_id: str | None = None,
        chunk_size: int = 0,
    ) -> None:
        self.info = info
        self.name = name or f"{info.name} (bci-dream)"
        self.marker_name = f"{name} markers" if name else f"{info.name} markers (bci-dream)"
        self.source_id = source_id or f"bci-dream:{info.source_id or info.name}"
        self._lock = threading.Lock()

        eeg_info = pylsl.StreamInfo(
            self.name,
            info.stream_type or "EEG",
            info.n_channels,
            float(info.sfreq) if info.sfreq > 0 else pylsl.IRREGULAR_RATE,
            pylsl.cf_float32,
            self.source_id,
        )
        desc = eeg_info.desc()
        channels = desc.append_child("channels")
        for label in info.ch_names:
            ch = channels.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", info.units)
            ch.append_child_value("type", "EEG")
        acquisition = desc.append_child("acquisition")
        acquisition.append_child_value("manufacturer", "bci-dream")
        acquisition.append_child_value("model", info.name)
        if info.source_id:
            acquisition.append_child_value("serial_number", info.source_id)

        marker_info = pylsl.StreamInfo(
            self.marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{self.source_id}:markers"
        )
        marker_info.desc().append_child("acquisition").append_child_value("manufacturer", "bci-dream")

        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(eeg_info, chunk_size=chunk_size)
        self._marker_outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(marker_info)
        self._n_channels = info.n_channels
        self._per_sample_timestamps = True  # pylsl >= 1.16.1 pushes a timestamp per sample
        log.info("publishing %r and %r on LSL (source_id %r)", self.name, self.marker_name, self.source_id)

    @property
    def closed(self) -> bool:
        return self._outlet is None

    def push(self, chunk: Chunk) -> None:
        """Push ``chunk.samples`` (float32 [n, channels]) with ``chunk.timestamps`` (float64 [n],
        LSL clock seconds), then each marker with its own timestamp. Does nothing once closed."""
        with self._lock:
            if self._outlet is None or self._marker_outlet is None:
                return
            n = len(chunk)
            if n:
                samples = np.ascontiguousarray(chunk.samples, dtype=np.float32)
                if samples.ndim != 2 or samples.shape[1] != self._n_channels:
                    raise ValueError(
                        f"chunk of shape {samples.shape} does not fit the {self._n_channels}-channel outlet {self.name!r}"
                    )
                timestamps = np.asarray(chunk.timestamps, dtype=np.float64).reshape(-1)
                self._push_samples(self._outlet, samples, timestamps)
            for marker in chunk.markers:
                self._marker_outlet.push_sample([marker.text], float(marker.timestamp))

    __call__ = push

    def _push_samples(self, outlet: pylsl.StreamOutlet, samples: np.ndarray, timestamps: np.ndarray) -> None:
        if samples.shape[0] == 1:
            outlet.push_chunk(samples, float(timestamps[0]))
            return
        if self._per_sample_timestamps:
            try:
                # pylsl tries c_double(timestamp) first and takes a sequence that fails that as one
                # timestamp per sample (a one-element array would pass as a float: handled above).
                outlet.push_chunk(samples, timestamps.tolist())
                return
            except TypeError:  # older pylsl: one timestamp per chunk only
                self._per_sample_timestamps = False
                log.debug("pylsl cannot push per-sample timestamps; pushing sample by sample")
        last = samples.shape[0] - 1
        for i in range(samples.shape[0]):
            outlet.push_sample(samples[i], float(timestamps[i]), pushthrough=i == last)

    def have_consumers(self) -> bool:
        """True while some inlet is connected to the EEG outlet."""
        with self._lock:
            return self._outlet is not None and self._outlet.have_consumers()

    def close(self) -> None:
        """Destroy both outlets (clients see the streams vanish). Idempotent."""
        with self._lock:
            outlet, marker_outlet = self._outlet, self._marker_outlet
            self._outlet = self._marker_outlet = None
        del outlet, marker_outlet  # last references: pylsl destroys the liblsl outlets
        log.info("stopped publishing %r", self.name)

    def __enter__(self) -> LslPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
