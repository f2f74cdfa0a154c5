"""Acquire EEG (and optionally markers) from any Lab Streaming Layer stream.

:class:`LslSource` resolves one numeric LSL stream by name, type and/or source_id, opens an inlet
on it and, on its acquisition thread, pulls chunks into a preallocated numpy buffer and emits them
as :class:`~bci_dream.core.types.Chunk` objects whose timestamps are in the local
``pylsl.local_clock()`` domain. An optional string marker stream is read in the same loop.

Timestamp post-processing (the choice, documented):

* ``proc_clocksync``: timestamps are mapped from the sender's clock to ours; the app keeps every
  timestamp in the local LSL clock domain.
* ``proc_dejitter``: network and OS jitter is smoothed away for regular-rate streams, so the
  timestamps of consecutive samples are ``1/sfreq`` apart. liblsl's dejitterer regresses
  timestamps on the count of samples received and does not notice a gap in the data; after a stall
  its estimates would lag real time by the length of the gap for minutes. And on every new
  connection liblsl stamps the samples left of a chunk that was on its way from nothing
  (:mod:`bci_dream.acquisition.lsl_stamps`); a dejitterer started on those is off for minutes.
  This source therefore turns dejittering off whenever a connection starts or the stream stalls,
  re-stamps such samples from the first one the sender stamped, and turns it on again from there
  (see :meth:`LslSource._begin_settling`).
* ``proc_monotonize`` is *not* used: it clamps a timestamp that goes backwards to the previous one,
  which would turn a clock reset or a replaced outlet into a run of identical timestamps and hide
  it. Samples are addressed by absolute index downstream, not by timestamp, so a backwards jump is
  harmless there and stays visible (it is logged). Override :attr:`LslSource.processing_flags` on
  the class or instance to change this.
* ``proc_threadsafe`` is not needed: an inlet is read by one thread only.

Connection losses: the inlet is opened with ``recover=True``, so liblsl silently reconnects to a
stream with the same source_id (and name, type, channel count) when it comes back; meanwhile the
source reports ``STALLED``. A stream without a source_id cannot be recovered by liblsl; then a pull
raises ``LostError``, the source reports ``RECONNECTING`` and resolves the stream again itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pylsl

from bci_dream.acquisition.lsl_stamps import StampSettler
from bci_dream.acquisition.source import Source
from bci_dream.core.errors import DeviceError, StreamNotFoundError
from bci_dream.core.types import Chunk, Marker, SourceState, StreamInfo

log = logging.getLogger(__name__)


def _pylsl_attr(name: str) -> Any:
    """Find a pylsl name that moved between releases (top level in 1.16, ``pylsl.util`` in 1.18)."""
    for module_name in ("", ".util", ".pylsl"):
        try:
            module = __import__(f"pylsl{module_name}", fromlist=[name])
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(f"pylsl has no {name}")


LostError: type[Exception] = _pylsl_attr("LostError")
LslTimeoutError: type[Exception] = _pylsl_attr("TimeoutError")
# The ctypes handle to liblsl (``pylsl.lib.lib`` in 1.18, ``pylsl.pylsl.lib`` in 1.16), used only
# to reset the dejitterer; without it, timestamps after a pause converge back slowly.
_liblsl: Any = None
for _module in ("pylsl.lib", "pylsl.pylsl"):
    try:
        _liblsl = getattr(__import__(_module, fromlist=["lib"]), "lib", None)
    except ImportError:
        continue
    if _liblsl is not None and hasattr(_liblsl, "lsl_set_postprocessing"):
        break
    _liblsl = None

#: numpy dtype of each numeric LSL channel format (``pylsl.cf_*``); strings have none.
_NUMPY_DTYPES: dict[int, type[np.generic]] = {
    pylsl.cf_float32: np.float32,
    pylsl.cf_double64: np.float64,
    pylsl.cf_int32: np.int32,
    pylsl.cf_int16: np.int16,
    pylsl.cf_int8: np.int8,
    pylsl.cf_int64: np.int64,
}

#: Seconds a thread of :meth:`LslSource.open` waits, after the first stream that matches answered, for a second one of
#: the same query (two outlets of one name: which is used is said); the stream does not wait for it.
DUPLICATE_WAIT_S = 2.0
#: Seconds a pull waits for the first sample; bounds how long :meth:`Source.stop` takes.
POLL_INTERVAL = 0.05
#: Seconds between the acquisition thread's pulls. Window readers pull too, on their own thread, before each window
#: (:meth:`LslSource.drain` through ``Windower.refresh``), so a window holds every sample that reached the inlet by
#: then while the thread wakes 20 times a second instead of once per outlet chunk (100 times at 10-ms chunks): the
#: recorder, the LSL re-publisher, the quality check and the GUI's traces see samples up to this much later.
#: 0: pull as soon as a sample arrives (no drain). Measured in benchmarks/README.md (lsl_consumers, lsl_latency).
PULL_INTERVAL = 0.05
#: Longest wait of the acquisition thread while readers drain more often than :data:`PULL_INTERVAL` (the thread then
#: has nothing to pull; when they stop, what they do not read reaches the buffers at most this much later, once).
MAX_DRAINED_WAIT = 0.5
#: Seconds between attempts to find a marker stream that was lost (each blocks the loop this long).
_MARKER_RETRY_INTERVAL = 2.0
_MARKER_RESOLVE_TIMEOUT = 0.05
#: Seconds one resolve attempt waits while re-finding a lost, unrecoverable EEG stream.
_RECONNECT_RESOLVE_TIMEOUT = 0.5


def xpath_literal(value: str) -> str:
    """Quote ``value`` as an XPath 1.0 string literal (XPath has no escapes: use ``concat``)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    parts = value.split("'")
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in parts) + ")"


def build_predicate(name: str | None = None, stream_type: str | None = None, source_id: str | None = None) -> str:
    """XPath predicate matching every given property, e.g. ``name='X' and type='EEG'``.

    Empty strings and ``None`` are left out. Raises ``ValueError`` if nothing is given.
    """
    terms = [
        f"{prop}={xpath_literal(value)}"
        for prop, value in (("name", name), ("type", stream_type), ("source_id", source_id))
        if value
    ]
    if not terms:
        raise ValueError("give at least one of stream name, type or source_id")
    return " and ".join(terms)


def _describe_query(name: str | None, stream_type: str | None, source_id: str | None) -> str:
    """The query in words, as the user typed it: ``name='X' and type='EEG'``."""
    terms = [
        f"{prop}={value!r}"
        for prop, value in (("name", name), ("type", stream_type), ("source_id", source_id))
        if value
    ]
    return " and ".join(terms)


def _channel_descriptions(info: pylsl.StreamInfo, n_channels: int) -> tuple[list[str], list[str]]:
    """Labels and units of ``desc/channels/channel`` (empty strings where missing), length ``n_channels``."""
    labels = [""] * n_channels
    units = [""] * n_channels
    channel = info.desc().child("channels").child("channel")
    i = 0
    while not channel.empty() and i < n_channels:
        labels[i] = channel.child_value("label").strip()
        units[i] = channel.child_value("unit").strip()
        channel = channel.next_sibling("channel")
        i += 1
    return labels, units


def _marker_text(values: Sequence[Any]) -> str:
    """One marker sample (one value per channel) as text; numbers lose a ``.0``; channels join with ``,``."""
    texts = []
    for v in values:
        if isinstance(v, (bytes, bytearray)):
            texts.append(bytes(v).decode("utf-8", "replace"))
        elif isinstance(v, str):
            texts.append(v)
        elif isinstance(v, float) and v.is_integer():
            texts.append(str(int(v)))
        else:
            texts.append(str(v))
    return ",".join(texts)


class LslSource(Source):
    """A :class:`Source` reading one numeric LSL stream, plus an optional marker stream.

    Args:
        stream_name: LSL stream name to match (exactly), or ``None``.
        stream_type: LSL content type to match, ``"EEG"`` by default, or ``None``.
        source_id: LSL source_id to match, or ``None``.
        marker_stream: name of a marker stream (string or numeric) to read alongside, or ``None``.
        timeout: seconds to wait for each stream while resolving and connecting in :meth:`open`.
        max_buffer_s: seconds of data the inlet buffers while the app does not pull (older data is
            dropped by liblsl).
        units: unit of the samples if the stream's description does not declare one (the stream's
            own ``desc/channels/channel/unit`` wins); ``"uV"`` if neither says.
        pull_interval: seconds between the acquisition thread's pulls (:data:`PULL_INTERVAL`; 0: pull as soon as
            anything arrives); readers pull between them with :meth:`drain`.

    Chunks have ``samples`` float32 [n, n_channels] in the stream's units (converted from the
    stream's channel format) and ``timestamps`` float64 [n] in local LSL clock seconds. Markers are
    attached to the chunk pulled in the same loop iteration, or sent alone in ``Chunk.empty``.
    """

    #: liblsl post-processing of the EEG inlet's timestamps (see the module docstring).
    processing_flags: int = pylsl.proc_clocksync | pylsl.proc_dejitter
    #: Post-processing of the marker inlet: irregular streams cannot be dejittered.
    marker_processing_flags: int = pylsl.proc_clocksync

    def __init__(
        self,
        stream_name: str | None = None,
        stream_type: str | None = "EEG",
        source_id: str | None = None,
        marker_stream: str | None = None,
        timeout: float = 5.0,
        max_buffer_s: int = 60,
        units: str | None = None,
        pull_interval: float = PULL_INTERVAL,
    ) -> None:
        super().__init__(name=f"LSL {_describe_query(stream_name, stream_type, source_id) or 'stream'}")
        self.pull_interval = max(0.0, float(pull_interval))
        self.stream_name = stream_name or None
        self.stream_type = stream_type or None
        self.source_id = source_id or None
        self.marker_stream = marker_stream or None
        self.timeout = float(timeout)
        self.max_buffer_s = int(max_buffer_s)
        self.units = units
        self._inlet: pylsl.StreamInlet | None = None
        self._marker_inlet: pylsl.StreamInlet | None = None
        self._dtype: type[np.generic] = np.float32
        self._n_channels = 0
        self._marker_retry_at = 0.0
        self._last_timestamp = -np.inf
        # One pull at a time, by the acquisition thread or by a reader's drain().
        self._pull_lock = threading.Lock()
        self._pull_buffer = np.zeros((0, 0), np.float32)
        self._settler: StampSettler | None = None
        self._pulled_at = self._last_data = self._drained_at = 0.0
        self._drain_error: Exception | None = None

    # ------------------------------------------------------------------ opening

    @property
    def query(self) -> str:
        """The stream query in words, e.g. ``name='X' and type='EEG'``."""
        return _describe_query(self.stream_name, self.stream_type, self.source_id)

    @property
    def impedance_unavailable(self) -> str:
        return ("an LSL stream carries no impedance measurement: measure it in the amplifier's own software; the "
                "signal check stands in for it here")

    def _look_for_duplicates(self, predicate: str, chosen) -> None:
        try:
            found = pylsl.resolve_bypred(predicate, minimum=2, timeout=DUPLICATE_WAIT_S)
        except Exception:  # (only a warning was at stake)
            log.debug("looking for a second LSL stream failed", exc_info=True)
            return
        if len(found) > 1:
            self._say_duplicates(chosen, [chosen, *(s for s in found if s.uid() != chosen.uid())])

    def _say_duplicates(self, chosen, found: list) -> None:
        others = ", ".join(f"{s.name()!r} ({s.source_id() or 'no source_id'} on {s.hostname()})" for s in found[1:])
        log.warning("%d LSL streams match %s; using %r (source_id %r on %s), ignoring %s; give --source-id to choose",
                    len(found), self.query, chosen.name(), chosen.source_id(), chosen.hostname(), others)

    def open(self) -> StreamInfo:
        """Resolve the stream(s), open the inlet(s) and return the stream's description.

        Raises:
            StreamNotFoundError: nothing matched within ``timeout`` seconds.
            DeviceError: the stream is a string stream, has no nominal rate, or cannot be connected.
        """
        self._close()
        try:
            predicate = build_predicate(self.stream_name, self.stream_type, self.source_id)
        except ValueError:
            raise DeviceError(
                "no LSL stream query given; pass --stream-name, --stream-type or --source-id"
            ) from None
        self._set_state(SourceState.CONNECTING, f"resolving {self.query}")
        found = pylsl.resolve_bypred(predicate, minimum=1, timeout=self.timeout)
        if not found:
            raise StreamNotFoundError(
                f"no LSL stream with {self.query} found within {self.timeout:.1f} s; "
                "start the stream or check --stream-name/--stream-type/--source-id"
            )
        chosen = found[0]
        if len(found) > 1:
            self._say_duplicates(chosen, found)
        else:  # (resolve_bypred returns at the first answer: look for a second one without delaying the stream)
            threading.Thread(target=self._look_for_duplicates, args=(predicate, chosen), daemon=True,
                             name=f"lsl-duplicates:{self.name}").start()
        self._check_numeric(chosen)
        inlet, full = self._connect(chosen, self.timeout)
        self._inlet = inlet
        self._n_channels = full.channel_count()
        self._dtype = _NUMPY_DTYPES[full.channel_format()]

        labels, ch_units = _channel_descriptions(full, self._n_channels)
        ch_names = tuple(label or f"Ch{i + 1}" for i, label in enumerate(labels))
        if len(set(ch_names)) != len(ch_names):
            log.warning("%s: duplicate channel labels %s", self.name, ch_names)
        units = ch_units[0] if ch_units and ch_units[0] else (self.units or "uV")
        self._info = StreamInfo(
            name=full.name(),
            ch_names=ch_names,
            sfreq=float(full.nominal_srate()),
            units=units,
            source_id=full.source_id(),
            stream_type=full.type(),
        )
        log.info(
            "%s: connected to %r (%d channels at %g Hz, %s, source_id %r on %s)",
            self.name, full.name(), self._n_channels, full.nominal_srate(), units, full.source_id(), full.hostname(),
        )
        if self.marker_stream:
            self._marker_inlet = self._open_marker_inlet(self.timeout)
            if self._marker_inlet is None:
                self._close()
                raise StreamNotFoundError(
                    f"no LSL marker stream named {self.marker_stream!r} found within {self.timeout:.1f} s; "
                    "start it or check --marker-stream"
                )
        return self._info

    def _check_numeric(self, info: pylsl.StreamInfo) -> None:
        """Raise :class:`DeviceError` unless ``info`` is a numeric stream with a nominal rate."""
        if info.channel_format() not in _NUMPY_DTYPES:
            raise DeviceError(
                f"LSL stream {info.name()!r} ({info.type()}) carries strings, not samples; "
                "choose the EEG stream with --stream-name/--stream-type and pass markers with --marker-stream"
            )
        if info.nominal_srate() <= 0:
            raise DeviceError(
                f"LSL stream {info.name()!r} ({info.type()}) has no nominal sampling rate (irregular); "
                "EEG needs a regular stream - choose another with --stream-name/--stream-type/--source-id"
            )
        if info.channel_count() < 1:
            raise DeviceError(f"LSL stream {info.name()!r} has no channels")

    def _connect(self, resolved: pylsl.StreamInfo, timeout: float) -> tuple[pylsl.StreamInlet, pylsl.StreamInfo]:
        """Open an EEG inlet on ``resolved``; return it and the full description (with ``desc``)."""
        inlet = pylsl.StreamInlet(
            resolved,
            max_buflen=max(1, self.max_buffer_s),
            max_chunklen=0,
            recover=True,
            processing_flags=self.processing_flags,
        )
        try:
            full = inlet.info(timeout=timeout)
            inlet.open_stream(timeout=timeout)
        except (LslTimeoutError, LostError) as e:
            self._close_inlet(inlet)
            raise DeviceError(
                f"found LSL stream {resolved.name()!r} on {resolved.hostname()} but could not connect to it "
                f"within {timeout:.1f} s ({e}); check the network and firewall"
            ) from None
        return inlet, full

    def _open_marker_inlet(self, timeout: float) -> pylsl.StreamInlet | None:
        """Resolve the marker stream and open an inlet on it; ``None`` if not found within ``timeout``."""
        assert self.marker_stream is not None
        found = pylsl.resolve_bypred(build_predicate(name=self.marker_stream), minimum=1, timeout=timeout)
        if not found:
            return None
        chosen = found[0]
        if len(found) > 1:
            log.warning(
                "%d LSL streams are named %r; reading markers from the one with source_id %r on %s",
                len(found), self.marker_stream, chosen.source_id(), chosen.hostname(),
            )
        inlet = pylsl.StreamInlet(chosen, max_buflen=360, recover=True, processing_flags=self.marker_processing_flags)
        try:
            inlet.open_stream(timeout=max(timeout, 0.5))
        except (LslTimeoutError, LostError) as e:
            log.warning("%s: could not connect to marker stream %r: %s", self.name, self.marker_stream, e)
            self._close_inlet(inlet)
            return None
        log.info("%s: reading markers from %r (%s)", self.name, chosen.name(), chosen.type())
        return inlet

    # ------------------------------------------------------------------ acquisition loop

    def _run(self) -> None:
        if self._inlet is None:  # started again after stop(): open anew
            self.open()
        info = self.info
        # At most one second (bounded) per pull; liblsl writes straight into this C-contiguous buffer.
        max_samples = int(min(max(32, round(info.sfreq)), 65536))
        self._pull_buffer = np.zeros((max_samples, info.n_channels), dtype=self._dtype)
        self._settler = settler = StampSettler(info.sfreq, self.name)
        self._begin_settling(settler)
        self._last_data = self._pulled_at = time.monotonic()
        self._drained_at = -np.inf
        self._last_timestamp = -np.inf
        self._drain_error = None
        self._set_state(SourceState.CONNECTING, "waiting for samples")

        drained_checks = 0  # wake-ups in a row that found a reader's drain had pulled within the interval
        while not self._stop_event.is_set():
            if self._inlet is None:
                if not self._reconnect():
                    break
                self._begin_settling(settler)
                self._last_data = time.monotonic()
                continue
            if self.pull_interval > 0:
                now = time.monotonic()
                if now < self._pulled_at + self.pull_interval:  # (this thread's own last pull)
                    if self._stop_event.wait(self._pulled_at + self.pull_interval - now):
                        break
                    continue
                # A reader's drain that brought samples stands for a pull, with half an interval's grace (a reader
                # draining about as often as this thread pulls would otherwise race it for every pull).
                wait = self._drained_at + 1.5 * self.pull_interval - now
                if wait > 0:
                    # A reader's drain() pulled since: it keeps the buffers current. Look in later each time such a
                    # reader is found (up to MAX_DRAINED_WAIT), and pull again once nobody has for an interval.
                    drained_checks += 1
                    extra = self.pull_interval * (2 ** min(drained_checks - 1, 8) - 1)
                    if self._stop_event.wait(min(wait + extra, max(wait, MAX_DRAINED_WAIT))):
                        break
                    continue
                drained_checks = 0
            with self._pull_lock:
                if self._drain_error is not None:
                    raise self._drain_error
                # (pulling at an interval, the pull takes what is there; else it waits for the first sample)
                self._pull_once(0.0 if self.pull_interval > 0 else POLL_INTERVAL)
                self._pulled_at = time.monotonic()
        with self._pull_lock:
            self._emit_held(settler)

    def drain(self) -> None:
        """Pull now, on the caller's thread, whatever the inlet holds (a window reader calls it before reading, so
        the acquisition thread can pull at :attr:`pull_interval` without the reader's windows waiting for it).

        Does nothing unless the source is running with a pull interval. A chunk the stream cannot take ends the
        acquisition, as on the acquisition thread (the error is raised there); the caller never sees it.
        """
        if self.pull_interval <= 0 or self._inlet is None or not self.running or self._stop_event.is_set():
            return
        with self._pull_lock:
            if self._inlet is None or self._drain_error is not None or self._stop_event.is_set():
                return
            try:
                if self._pull_once(0.0):  # (a drain that found nothing, right after a pull, stands for none)
                    self._drained_at = time.monotonic()
            except Exception as e:  # noqa: BLE001 - raised again on the acquisition thread, which reports it
                self._drain_error = e

    def _pull_once(self, timeout: float) -> int:
        """One pull of the EEG (waiting up to ``timeout`` s for the first sample) and of the markers, emitted;
        notices a lost stream and a stall; returns the samples pulled. Called with the pull lock held."""
        info, settler, buffer = self.info, self._settler, self._pull_buffer
        n_channels = info.n_channels
        try:
            n, timestamps = self._pull(self._inlet, buffer, timeout)
        except LostError:
            self._set_state(SourceState.RECONNECTING, f"stream {info.name!r} lost; waiting for it to return")
            self._emit_held(settler)
            self._close_inlet(self._inlet)
            self._inlet = None
            return 0
        markers = self._pull_markers()
        now = time.monotonic()
        if n:
            self._last_data = now
            if self._state != SourceState.STREAMING:
                self._set_state(SourceState.STREAMING)
            # A copy: the sink keeps references to the chunk while this buffer is reused.
            samples = buffer[:n].astype(np.float32)
            if timestamps[0] < self._last_timestamp and not settler.settling:
                log.warning(
                    "%s: timestamps went back by %.3f s (clock reset or a new outlet)",
                    self.name, self._last_timestamp - timestamps[0],
                )
                self._begin_settling(settler)
            if settler.settling:
                samples, timestamps = self._settle(settler, samples, timestamps)
            if len(samples):
                self._emit_samples(samples, timestamps, markers)
            elif markers:
                self._emit(Chunk.empty(n_channels, markers))
            return n
        if markers:
            self._emit(Chunk.empty(n_channels, markers))
        silent = now - self._last_data
        if silent > self.stall_timeout and self._state in (SourceState.STREAMING, SourceState.CONNECTING):
            self._set_state(SourceState.STALLED, f"no samples for {self.stall_timeout:.1f} s")
            # liblsl's dejitterer does not notice the gap, and a connection liblsl restores
            # meanwhile starts with samples stamped from nothing: settle again.
            self._emit_held(settler)
            self._begin_settling(settler)
        return 0

    def _pull(self, inlet: pylsl.StreamInlet, buffer: np.ndarray, timeout: float = POLL_INTERVAL
              ) -> tuple[int, np.ndarray]:
        """Pull up to ``len(buffer)`` samples into ``buffer``; return their count and timestamps float64 [n].

        Waits up to ``timeout`` s for the first sample, then takes whatever else is already there without
        waiting (liblsl's fixed-buffer pull would otherwise wait for a full buffer).
        """
        if timeout <= 0:  # (nothing to wait for: one pull takes what is there)
            _, stamps = inlet.pull_chunk(timeout=0.0, max_samples=buffer.shape[0], dest_obj=buffer)
            return len(stamps), np.asarray(stamps, np.float64)
        _, first = inlet.pull_chunk(timeout=timeout, max_samples=1, dest_obj=buffer)
        if len(first) == 0:
            return 0, np.empty(0, np.float64)
        if buffer.shape[0] == 1:
            return 1, np.asarray(first, np.float64)
        _, rest = inlet.pull_chunk(timeout=0.0, max_samples=buffer.shape[0] - 1, dest_obj=buffer[1:])
        timestamps = np.empty(1 + len(rest), np.float64)
        timestamps[0] = first[0]
        timestamps[1:] = rest
        return int(timestamps.shape[0]), timestamps

    def _pull_markers(self) -> list[Marker]:
        """Markers that arrived since the last call (never waits); re-finds a lost marker stream."""
        if not self.marker_stream:
            return []
        if self._marker_inlet is None:
            now = time.monotonic()
            if now < self._marker_retry_at:
                return []
            self._marker_retry_at = now + _MARKER_RETRY_INTERVAL
            self._marker_inlet = self._open_marker_inlet(_MARKER_RESOLVE_TIMEOUT)
            if self._marker_inlet is None:
                return []
            log.info("%s: marker stream %r is back", self.name, self.marker_stream)
        try:
            values, timestamps = self._marker_inlet.pull_chunk(timeout=0.0, max_samples=1024)
        except LostError:
            log.warning("%s: marker stream %r lost; looking for it every %.0f s",
                        self.name, self.marker_stream, _MARKER_RETRY_INTERVAL)
            self._close_inlet(self._marker_inlet)
            self._marker_inlet = None
            self._marker_retry_at = time.monotonic() + _MARKER_RETRY_INTERVAL
            return []
        return [
            Marker(float(ts), _marker_text(sample), stream=self.marker_stream)
            for sample, ts in zip(values, timestamps)
        ]

    def _reconnect(self) -> bool:
        """Resolve the lost (unrecoverable) stream again until found or stopped; True once connected."""
        assert self._info is not None
        predicate = build_predicate(self.stream_name, self.stream_type, self.source_id)
        while not self._stop_event.is_set():
            found = pylsl.resolve_bypred(predicate, minimum=1, timeout=_RECONNECT_RESOLVE_TIMEOUT)
            for candidate in found:
                if (
                    candidate.channel_count() != self._n_channels
                    or _NUMPY_DTYPES.get(candidate.channel_format()) is not self._dtype
                    or candidate.nominal_srate() != self._info.sfreq
                ):
                    log.warning(
                        "%s: ignoring %r: %d channels of format %d at %g Hz, not as before",
                        self.name, candidate.name(), candidate.channel_count(),
                        candidate.channel_format(), candidate.nominal_srate(),
                    )
                    continue
                try:
                    self._inlet, _ = self._connect(candidate, 1.0)
                except DeviceError as e:
                    log.warning("%s: %s", self.name, e)
                    continue
                log.info("%s: stream %r found again", self.name, candidate.name())
                return True
        return False

    def _begin_settling(self, settler: StampSettler) -> None:
        """Check the next samples for timestamps counted from nothing (see :mod:`.lsl_stamps`),
        with liblsl's dejitterer off until a stamped sample arrives."""
        settler.begin()
        self._set_dejitter(False)

    def _settle(
        self, settler: StampSettler, samples: np.ndarray, timestamps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``settler.settle`` with the clock offset liblsl applied; dejittering back on once settled."""
        offset = self._clock_offset()
        if offset is None:
            held, held_ts = settler.end()
            if len(held):
                samples, timestamps = np.concatenate([held, samples]), np.concatenate([held_ts, timestamps])
        else:
            samples, timestamps = settler.settle(samples, timestamps, offset, pylsl.local_clock())
        if not settler.settling:
            self._set_dejitter(True)
        return samples, timestamps

    def _emit_samples(self, samples: np.ndarray, timestamps: np.ndarray, markers: list[Marker]) -> None:
        """Emit samples float32 [n, n_channels] (n > 0) stamped ``timestamps`` [n], with ``markers``."""
        self._last_timestamp = float(timestamps[-1])
        self._emit(Chunk(samples, timestamps, markers))

    def _emit_held(self, settler: StampSettler) -> None:
        """Emit the samples the settler still holds (stamped from when they arrived)."""
        samples, timestamps = settler.flush()
        if len(samples):
            self._emit_samples(samples, timestamps, [])

    def _clock_offset(self) -> float | None:
        """Seconds liblsl adds to the sender's timestamps (0 without clocksync); ``None`` if unknown."""
        if not self.processing_flags & pylsl.proc_clocksync:
            return 0.0
        if self._inlet is None:
            return None
        try:
            return float(self._inlet.time_correction(timeout=1.0))
        except (LslTimeoutError, LostError):
            return None

    def _set_dejitter(self, on: bool) -> None:
        """Turn liblsl's timestamp smoothing of the EEG inlet on or off (if :attr:`processing_flags` has it).

        liblsl restarts the dejitterer whenever this flag changes; it starts on the next sample pulled.
        """
        if self._inlet is None or _liblsl is None or not self.processing_flags & pylsl.proc_dejitter:
            return
        flags = self.processing_flags if on else self.processing_flags & ~pylsl.proc_dejitter
        try:
            _liblsl.lsl_set_postprocessing(self._inlet.obj, flags)
        except Exception:  # pragma: no cover - defensive; smoothing then recovers by itself, slowly
            log.debug("could not set the inlet's post-processing", exc_info=True)

    # ------------------------------------------------------------------ closing

    @staticmethod
    def _close_inlet(inlet: pylsl.StreamInlet | None) -> None:
        if inlet is None:
            return
        try:
            inlet.close_stream()
        except Exception:  # closing a broken inlet must not raise
            log.debug("close_stream failed", exc_info=True)

    def _close(self) -> None:
        """Close the inlets (before any outlet of this process goes; see DESIGN.md), never while a reader's drain
        is pulling from them."""
        with self._pull_lock:
            for attr in ("_marker_inlet", "_inlet"):
                inlet = getattr(self, attr)
                setattr(self, attr, None)
                self._close_inlet(inlet)
                del inlet  # the last reference: pylsl destroys the liblsl inlet now
