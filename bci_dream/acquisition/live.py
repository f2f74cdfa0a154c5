"""One live stream end to end: a source, its pipeline, and optionally an LSL re-publisher and a recorder."""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from pylsl import local_clock

from bci_dream.acquisition.brainflow_source import BrainFlowSource
from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.acquisition.lsl_publisher import LslPublisher
from bci_dream.acquisition.lsl_source import LslSource
from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.acquisition.recorder import RecordingSummary, SessionRecorder
from bci_dream.acquisition.source import Source
from bci_dream.core.errors import BciDreamError, DeviceError
from bci_dream.core.types import Chunk, Marker, SourceState, StreamInfo
from bci_dream.devices import DeviceProfile
from bci_dream.signal.channels import LEFT_OUT, ChannelNaming
from bci_dream.signal.montage import Montage
from bci_dream.signal.quality import ChannelQuality
from bci_dream.signal.windower import Windower

log = logging.getLogger(__name__)


def make_source(profile: DeviceProfile, params: dict[str, Any] | None = None, **options: Any) -> Source:
    """The source for ``profile``: BrainFlow boards or an LSL stream; ``options`` go to its constructor."""
    params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    if profile.source == "lsl":
        if options.pop("aux", None):
            raise DeviceError(f"--aux applies to BrainFlow boards; '{profile.name}' is an LSL stream (record its "
                              "other streams with LabRecorder, or stream them through a BrainFlow board)")
        profile.check_parameters(params)
        lsl = {**profile.lsl, **params}
        return LslSource(stream_name=lsl.get("stream_name"), stream_type=lsl.get("stream_type"),
                         source_id=lsl.get("source_id"), marker_stream=lsl.get("marker_stream"),
                         timeout=float(lsl.get("timeout", 5.0)), **options)
    return BrainFlowSource(profile, params, **options)


def warn_about_unmapped(info: StreamInfo) -> None:
    """Say in one line when none, or only some, of a stream's channels are 10-05 sites (the encoder sees only those)."""
    mapping = Montage.canonical().map(info.ch_names)
    left_out = [c for c in mapping.unmapped if not c.endswith(LEFT_OUT)]
    if mapping.n_mapped == 0:
        log.warning("%s: none of its channels (%s) is a 10-05 site, so the EEG model sees nothing; name them with "
                    "--channels NAMES, --channels-file FILE or --layout PROFILE (e.g. --layout cyton for the OpenBCI "
                    "GUI's LSL stream)", info.name, ", ".join(info.ch_names[:8]) + (" ..." if info.n_channels > 8 else ""))
    elif left_out:
        log.warning("%s: %d of %d channels are not 10-05 sites and are left out of the EEG model's input: %s",
                    info.name, len(left_out), info.n_channels, ", ".join(left_out[:12]) + (" ..." if len(left_out) > 12
                                                                                             else ""))


@dataclass(frozen=True)
class StreamStatus:
    """A snapshot for the status bar and ``bci-dream stream``.

    Attributes:
        state: the source's state.
        nominal_rate: the stream's declared rate in Hz.
        measured_rate: samples per second that arrived over the last few seconds.
        samples: samples received since the start.
        dropped: samples the device reported lost plus readers' overruns.
        latency_ms: how old the newest sample was when it arrived, in milliseconds.
        quality: per-channel quality, updated every second.
        recording: seconds recorded so far, or None when not recording.
        effective_rate: samples per second of stream time since the start (None before two samples).
        gaps, gap_seconds, longest_gap_s: steps between samples longer than 3 periods and 100 ms (see
            :data:`bci_dream.core.defaults.GAP_PERIODS`): how many, how long in all and the longest.
    """
    state: SourceState
    nominal_rate: float
    measured_rate: float
    samples: int
    dropped: int
    latency_ms: float | None
    nonfinite: int
    timestamps_backwards: int
    timestamp_jumps: int
    quality: list[ChannelQuality]
    recording: float | None
    effective_rate: float | None = None
    gaps: int = 0
    gap_seconds: float = 0.0
    longest_gap_s: float = 0.0


class LiveStream:
    """Wires a :class:`Source` to a :class:`StreamPipeline`, an LSL publisher and a recorder.

    Args:
        source: an unopened source.
        filters: online filter settings (the profile's defaults when built by the CLI).
        rail_uv: amplifier rail for the quality check.
        publish: re-publish the EEG and markers as LSL outlets.
        buffer_seconds: history kept in the ring buffers.
    """
    def __init__(self, source: Source, *, filters: FilterSettings = FilterSettings(), rail_uv: float | None = None,
                 publish: bool = False, buffer_seconds: float = 60.0, naming: ChannelNaming | None = None) -> None:
        self.source = source
        self.naming = naming
        self._info: StreamInfo | None = None
        self.filters = filters
        self.rail_uv = rail_uv
        self.publish = publish
        self.buffer_seconds = buffer_seconds
        self.pipeline: StreamPipeline | None = None
        self.publisher = None
        self.recorder: SessionRecorder | None = None
        self.chunk_error: BciDreamError | None = None
        self.started_at: float | None = None  # time.monotonic() when acquisition started
        self._rate_history: collections.deque = collections.deque(maxlen=64)

    @property
    def info(self) -> StreamInfo:
        """The stream as the rest of the app sees it: the source's, with the channels named by ``naming``."""
        return self._info if self._info is not None else self.source.info

    def open(self) -> StreamInfo:
        """Connect the source and build the pipeline; raises ``BciDreamError`` with a one-line reason."""
        info = self.source.open()
        if self.naming is not None:
            info = dataclasses.replace(info, ch_names=self.naming.apply(info.ch_names))
            log.info("%s: %s", info.name, self.naming.describe())
        self._info = info
        warn_about_unmapped(info)
        self.pipeline = StreamPipeline(info, buffer_seconds=self.buffer_seconds, filters=self.filters,
                                       rail_uv=self.rail_uv, clock=local_clock)
        if self.publish:
            self.publisher = LslPublisher(info)
            self.pipeline.add_listener(self.publisher.push)
        self.source.add_state_listener(self._on_state)
        return info

    def start(self) -> None:
        """Start acquiring (opens the source first if needed)."""
        if self.pipeline is None:
            self.open()
        self._rate_history.append((local_clock(), self.pipeline.raw.total_written))
        self.started_at = time.monotonic()
        self.source.start(self._on_chunk, self._on_aux)

    def _on_chunk(self, chunk: Chunk) -> None:
        try:
            self.pipeline.push(chunk)
        except BciDreamError as e:
            # A chunk that does not fit the stream ends the stream: its data cannot be interpreted.
            self.chunk_error = e
            raise

    def _on_aux(self, index: int, chunk: Chunk) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.push_aux(index, chunk)

    @property
    def aux_infos(self) -> tuple[StreamInfo, ...]:
        """The source's streams beside the EEG (accelerometer, PPG, analog inputs): recorded, not filtered."""
        return self.source.aux_infos

    @property
    def all_channel_names(self) -> tuple[str, ...]:
        """The EEG channels' names and then every aux stream's (a photodiode's channel may be either)."""
        return self.info.ch_names + tuple(c for aux in self.aux_infos for c in aux.ch_names)

    def _on_state(self, state: SourceState, reason: str) -> None:
        if self.recorder is not None:
            self.recorder.event(f"device {state.value}" + (f": {reason}" if reason else ""))

    def start_recording(self, path: str | os.PathLike, *, overwrite: bool = False) -> SessionRecorder:
        """Record raw EEG, markers and app events to ``path`` until :meth:`stop_recording`."""
        if self.pipeline is None:
            self.open()
        if self.recorder is not None:
            raise BciDreamError(f"already recording to {self.recorder.path}")
        recorder = SessionRecorder(path, self.info, overwrite=overwrite, aux=self.aux_infos)
        recorder.event(f"recording started: {self.info.name}")
        self.recorder = recorder
        self.pipeline.add_listener(recorder.push)
        return recorder

    def mark(self, text: str, timestamp: float | None = None, stream: str = "bci-dream") -> Marker:
        """Add a marker of the app's own (e.g. a stimulus onset) at ``timestamp`` (LSL clock s; now by default).

        Safe from any thread (the GUI's, at the moment a frame is shown): it goes to the marker buffer (the
        traces draw it), the recording's marker stream and the LSL marker outlet, without touching the
        source thread's sample path.
        """
        if self.pipeline is None:
            raise BciDreamError("open the stream before adding markers")
        marker = Marker(local_clock() if timestamp is None else float(timestamp), str(text), stream)
        self.pipeline.markers.extend([marker])
        chunk = Chunk.empty(self.info.n_channels, [marker])
        if self.recorder is not None:
            self.recorder.push(chunk)
        if self.publisher is not None:
            self.publisher.push(chunk)
        return marker

    def stop_recording(self) -> RecordingSummary | None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return None
        self.pipeline.remove_listener(recorder.push)
        recorder.event("recording stopped")
        return recorder.stop()

    def stop(self) -> RecordingSummary | None:
        """Stop the source, finish any recording and close the outlets."""
        self.source.stop()
        summary = self.stop_recording()
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        return summary

    def windower(self, **options: Any) -> Windower:
        """A :class:`~bci_dream.signal.windower.Windower` over the filtered signal (µV).

        ``options`` go to its constructor: ``window_s``, ``hop_s``, ``target_sfreq``, ``montage``; ``ch_names``
        names the channels for the windows only (a checkpoint's naming, say), instead of the stream's labels.
        Before each read it has the source deliver what it holds (:meth:`Source.drain`), so a window is current
        whatever the source's pull interval.
        """
        if self.pipeline is None:
            self.open()
        ch_names = options.pop("ch_names", None) or self.info.ch_names
        return Windower(self.pipeline.filtered, self.info.sfreq, ch_names, refresh=self.source.drain, **options)

    def status(self) -> StreamStatus:
        """A snapshot of the stream's health (cheap; call it about once a second)."""
        p = self.pipeline
        now = local_clock()
        total = p.raw.total_written
        self._rate_history.append((now, total))
        while len(self._rate_history) > 2 and now - self._rate_history[0][0] > 3.0:
            self._rate_history.popleft()
        t0, n0 = self._rate_history[0]
        rate = (total - n0) / (now - t0) if now > t0 else 0.0
        stats = p.stats
        latency = None
        if stats.last_arrival is not None and stats.last_timestamp is not None:
            latency = (stats.last_arrival - stats.last_timestamp) * 1000.0
        return StreamStatus(
            state=self.source.state, nominal_rate=self.info.sfreq, measured_rate=rate, samples=stats.samples,
            dropped=self.source.dropped_samples, latency_ms=latency, nonfinite=stats.nonfinite_values,
            timestamps_backwards=stats.timestamps_backwards, timestamp_jumps=stats.timestamp_jumps,
            quality=list(p.quality), recording=self.recorder.elapsed if self.recorder else None,
            effective_rate=stats.effective_rate, gaps=stats.gaps, gap_seconds=stats.gap_seconds,
            longest_gap_s=stats.longest_gap_s)
