"""What happens to every chunk a source delivers, on the source's own thread.

validate → count → ring buffer (raw) → causal filters → ring buffer (filtered, µV) → markers →
listeners (LSL publisher, recorder) → once a second, per-channel signal quality.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.core import defaults
from bci_dream.core.errors import ChunkError
from bci_dream.core.ring_buffer import MarkerBuffer, RingBuffer
from bci_dream.core.types import Chunk, StreamInfo
from bci_dream.signal.filters import OnlineFilter, design_filter
from bci_dream.signal.gaps import gap_threshold_s
from bci_dream.signal.quality import ChannelQuality, assess_quality

log = logging.getLogger(__name__)

ChunkListener = Callable[[Chunk], None]

#: A timestamp step larger than this many sample periods (and at least 1 s) counts as a jump.
JUMP_PERIODS = 50
#: A stream whose effective rate is below this share of its nominal rate lost samples on the way.
LOW_RATE_SHARE = 0.9


@dataclass
class StreamStats:
    """Running counts, for the status bar and ``bci-dream stream``.

    ``timestamps_backwards`` and ``timestamp_jumps`` count steps between consecutive samples that go
    back in time or skip ahead by more than ``max(1 s, 50 sample periods)``.
    """

    samples: int = 0
    chunks: int = 0
    markers: int = 0
    nonfinite_values: int = 0
    timestamps_backwards: int = 0
    timestamp_jumps: int = 0
    rejected_chunks: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    last_arrival: float | None = None  # local_clock() when the newest chunk arrived
    gaps: int = 0
    gap_seconds: float = 0.0
    longest_gap_s: float = 0.0

    @property
    def effective_rate(self) -> float | None:
        """Samples per second of stream time (first to last timestamp), or None before two samples."""
        if self.first_timestamp is None or self.last_timestamp is None or self.samples < 2:
            return None
        span = self.last_timestamp - self.first_timestamp
        return (self.samples - 1) / span if span > 0 else None

    def gaps_text(self) -> str:
        """``"3 gaps, 0.41 s in all, longest 0.2 s"`` (empty without gaps)."""
        if not self.gaps:
            return ""
        return (f"{self.gaps} gap{'s' if self.gaps != 1 else ''}, {self.gap_seconds:.3g} s in all, longest "
                f"{self.longest_gap_s:.3g} s")


class StreamPipeline:
    """Buffers, filters and fans out the chunks of one EEG stream.

    Args:
        info: the stream's description (channel count, rate, units).
        buffer_seconds: how much history the raw and filtered ring buffers keep.
        filters: online filter settings; ``FilterSettings(None, None)`` keeps the signal as is.
        rail_uv: amplitude where the amplifier saturates, for the quality check (None if unknown).
        quality_interval: seconds between quality updates.
        clock: time function in LSL seconds (``pylsl.local_clock``).
    """

    def __init__(
        self,
        info: StreamInfo,
        *,
        buffer_seconds: float = 60.0,
        filters: FilterSettings = FilterSettings(),
        rail_uv: float | None = None,
        quality_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        n_ch = info.n_channels
        capacity = max(int(round(buffer_seconds * (info.sfreq or 1000.0))), 1)
        self.raw = RingBuffer(capacity, n_ch)
        #: Filtered signal in microvolts.
        self.filtered = RingBuffer(capacity, n_ch)
        self.markers = MarkerBuffer()
        self.filter_settings = filters
        sos = None
        if info.sfreq:
            try:
                sos = design_filter(info.sfreq, bandpass=filters.bandpass, notch=filters.notch)
            except ValueError as e:  # e.g. a 1 Hz stream cannot take a 1-45 Hz band-pass
                log.warning("%s: no online filter at %g Hz (%s)", info.name, info.sfreq, e)
        self._filter = OnlineFilter(sos, n_ch) if sos is not None and len(sos) else None
        self._to_uv = np.float32(info.to_microvolts)
        self.rail_uv = rail_uv
        self.line_freq = filters.notch or defaults.NOTCH_HZ
        self.quality_interval = quality_interval
        self.quality: list[ChannelQuality] = []
        self._next_quality_index = int(info.sfreq * quality_interval) if info.sfreq else 0
        self.stats = StreamStats()
        self._listeners: list[ChunkListener] = []
        self._clock = clock
        self._new_data = threading.Condition()
        self._warned: set[str] = set()

    def add_listener(self, listener: ChunkListener) -> None:
        """Also hand every validated raw chunk to ``listener`` (called on the source thread)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: ChunkListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def push(self, chunk: Chunk) -> None:
        """Take one chunk from the source. Raises :class:`ChunkError` if it does not fit the stream."""
        try:
            chunk = chunk.validated(self.info.n_channels)
        except ChunkError:
            self.stats.rejected_chunks += 1
            raise
        n = len(chunk)
        stats = self.stats
        if n:
            self._check_timestamps(chunk.timestamps, chunk.resumed)
            self.raw.write(chunk.samples, chunk.timestamps)
            filtered = self._filtered_microvolts(chunk.samples)
            self.filtered.write(filtered, chunk.timestamps)
            stats.samples += n
            stats.chunks += 1
            if stats.first_timestamp is None:
                stats.first_timestamp = float(chunk.timestamps[0])
            stats.last_timestamp = float(chunk.timestamps[-1])
            stats.last_arrival = self._clock()
        if chunk.markers:
            self.markers.extend(chunk.markers)
            stats.markers += len(chunk.markers)
        for listener in list(self._listeners):
            try:
                listener(chunk)
            except Exception:
                log.exception("a chunk listener failed; it is removed")
                self.remove_listener(listener)
        if n and self.raw.total_written >= self._next_quality_index > 0:
            self._update_quality()
        with self._new_data:
            self._new_data.notify_all()

    def _filtered_microvolts(self, samples: np.ndarray) -> np.ndarray:
        x = samples * self._to_uv if self._to_uv != 1 else samples
        if self._filter is not None:
            out = self._filter.process(x)
            bad = self._filter.last_nonfinite
        else:
            finite = np.isfinite(x)
            bad = int(x.size - np.count_nonzero(finite))
            out = np.where(finite, x, np.float32(0)) if bad else x
        if bad:
            self.stats.nonfinite_values += bad
            self._warn_once("nonfinite", f"{self.info.name}: {bad} NaN or infinite values in a chunk; "
                            "they are recorded as received and replaced in the filtered signal "
                            "(check the electrode contacts and the device driver)")
        return np.asarray(out, dtype=np.float32)

    def _check_timestamps(self, ts: np.ndarray, resumed: bool = False) -> None:
        prev = self.stats.last_timestamp
        period = 1.0 / self.info.sfreq if self.info.sfreq else 0.01
        jump = max(1.0, JUMP_PERIODS * period)
        first = ts[0] - prev if prev is not None else 0.0
        if resumed:
            first = min(first, period)  # (a gap after a pause or seek is expected; a step back is not)
        steps = np.diff(ts) if ts.shape[0] > 1 else None
        lo = first if steps is None else min(first, steps.min())
        hi = first if steps is None else max(first, steps.max())
        gap = gap_threshold_s(self.info.sfreq) if self.info.sfreq else defaults.GAP_MIN_S
        if lo >= 0 and hi <= gap:  # the usual case, checked with two reductions
            return
        all_steps = np.array([first]) if steps is None else np.concatenate([[first], steps])
        gaps = all_steps[all_steps > gap]
        if gaps.size:
            self.stats.gaps += int(gaps.size)
            self.stats.gap_seconds += float((gaps - period).sum())
            self.stats.longest_gap_s = max(self.stats.longest_gap_s, float(gaps.max() - period))
        if lo >= 0 and hi <= jump:
            return
        backwards = int(np.count_nonzero(all_steps < 0))
        jumps = int(np.count_nonzero(all_steps > jump))
        if backwards:
            self.stats.timestamps_backwards += backwards
            self._warn_once("backwards", f"{self.info.name}: timestamps run backwards; samples are kept in "
                            "arrival order (enable dejittering or check the device clock)")
        if jumps:
            self.stats.timestamp_jumps += jumps
            self._warn_once("jump", f"{self.info.name}: timestamps jump ahead by "
                            f"{float(all_steps.max()):.4g} s; samples were lost or the device clock was reset")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _update_quality(self) -> None:
        n = int(self.info.sfreq * self.quality_interval)
        raw = self.raw.latest(n).data * self._to_uv
        filtered = self.filtered.latest(n).data
        self.quality = assess_quality(raw, filtered, self.info.sfreq, self.info.ch_names,
                                      line_freq=self.line_freq, rail_uv=self.rail_uv)
        self._next_quality_index = self.raw.total_written + n

    def wait_for_samples(self, after_index: int, timeout: float) -> int:
        """Block until more than ``after_index`` samples were written or ``timeout`` s passed.

        Returns ``raw.total_written``. Never called on the GUI thread.
        """
        with self._new_data:
            self._new_data.wait_for(lambda: self.raw.total_written > after_index, timeout)
        return self.raw.total_written

    def seconds_since_last_chunk(self) -> float | None:
        """Seconds since the newest chunk arrived, or None before the first."""
        t = self.stats.last_arrival
        return None if t is None else self._clock() - t
