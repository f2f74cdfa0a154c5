"""Incremental, crash-safe writer of XDF 1.0 files, as read by ``pyxdf.load_xdf`` and written by LabRecorder.

File layout (https://github.com/sccn/xdf/wiki/Specifications), all numbers little-endian::

    "XDF:"  then chunks:  [NumLengthBytes u8][Length 1/4/8 bytes][Tag u16][Content]

``Length`` counts the tag and the content.  Tags: 1 FileHeader (XML), 2 StreamHeader ([StreamId u32] XML),
3 Samples ([StreamId u32] [NumSamples varlen] per sample [8][f64 timestamp][values]), 4 ClockOffset
([StreamId u32][f64 collection time][f64 offset]), 5 Boundary (16-byte UUID), 6 StreamFooter
([StreamId u32] XML).

Crash safety: each chunk is assembled in memory and handed to the operating system in one ``write`` on an
unbuffered file, so a process killed at any point (SIGKILL included) leaves a file made of whole chunks
(a write torn by the kernel itself is only possible for a fatal signal arriving inside the system call,
and a failed write, e.g. disk full, is cut back to the last whole chunk).  ``os.fsync`` runs at most
about once per ``fsync_interval_s`` so data also survives a power cut up to about that age.  Boundary
chunks are written about every ``boundary_interval_s`` of wall time so a reader can resynchronise after
damage.  Streams whose footers are missing (killed recording) are read fine by pyxdf.

Differences from LabRecorder, on purpose: every sample carries an explicit timestamp (LabRecorder omits
timestamps that can be deduced from the nominal rate, and also writes ``0.0`` as "deduce"), so
timestamps read back bit-exact; boundaries are written by the writing thread, before the next chunk,
rather than by a timer thread; footer numbers are written with the shortest exact representation.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import escape as _xml_escape

import numpy as np

from bci_dream.core.errors import ChunkError, RecordingError
from bci_dream.io.xdf_reader import whole_chunks_size

logger = logging.getLogger(__name__)

__all__ = ["XdfWriter", "trim_to_whole_chunks", "CHANNEL_FORMATS", "BOUNDARY_UUID"]

# XDF chunk tags.
_TAG_FILE_HEADER = 1
_TAG_STREAM_HEADER = 2
_TAG_SAMPLES = 3
_TAG_CLOCK_OFFSET = 4
_TAG_BOUNDARY = 5
_TAG_STREAM_FOOTER = 6

#: The 16-byte signature of a Boundary chunk, as written by LabRecorder and searched for by readers.
BOUNDARY_UUID = bytes(
    [0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4]
)

#: XDF channel formats and the little-endian numpy dtype of one value (``None`` for strings).
CHANNEL_FORMATS: dict[str, np.dtype | None] = {
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "string": None,
}

# Characters XML 1.0 does not allow; pyxdf cannot parse a header containing them.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _varlen_int(value: int) -> bytes:
    """XDF variable-length integer: a byte 1, 4 or 8 giving the width, then the value (unsigned, LE)."""
    if value < 0:
        raise ValueError(f"variable-length integer must be >= 0, got {value}")
    if value < 256:
        return bytes((1, value))
    if value <= 0xFFFFFFFF:
        return b"\x04" + struct.pack("<I", value)
    return b"\x08" + struct.pack("<Q", value)


def _chunk(tag: int, content: bytes, stream_id: int | None = None) -> bytes:
    """A whole chunk: ``[Length varlen][Tag u16]([StreamId u32])[Content]``."""
    head = struct.pack("<H", tag)
    if stream_id is not None:
        head += struct.pack("<I", stream_id)
    return _varlen_int(len(head) + len(content)) + head + content


def _xml_text(value: object) -> str:
    """XML-escaped element text; characters XML 1.0 forbids are replaced with U+FFFD."""
    text = str(value)
    if _XML_INVALID.search(text):
        logger.warning("replacing characters not allowed in XML in %r", text)
        text = _XML_INVALID.sub("\ufffd", text)
    return _xml_escape(text)


def _lsl_number(value: float) -> str:
    """A float as LSL's ``as_xml`` prints it (16 significant digits), unless that would lose bits."""
    text = "%#.16g" % value
    return text if float(text) == value else repr(float(value))


def _exact_number(value: float) -> str:
    """Shortest text that reads back as exactly ``value``."""
    return repr(float(value))


def _per_channel(
    what: str, values: Sequence[str] | str | None, channel_count: int, stream: str
) -> list[str] | None:
    """Expand a per-channel metadata argument: ``None``, one string for all channels, or one per channel."""
    if values is None:
        return None
    if isinstance(values, str):
        return [values] * channel_count
    out = [str(v) for v in values]
    if len(out) != channel_count:
        raise RecordingError(
            f"cannot add stream '{stream}': {len(out)} channel {what} given for {channel_count} channels"
        )
    return out


@dataclass
class _Stream:
    """Per-stream state: format and the statistics that go into the footer."""
    stream_id: int
    name: str
    channel_count: int
    channel_format: str
    dtype: np.dtype | None
    nominal_srate: float
    sample_count: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    clock_offsets: list[tuple[float, float]] = field(default_factory=list)


class XdfWriter:
    """Write an XDF file chunk by chunk while recording; readable by pyxdf at any moment, even if killed.

    Usage::

        with XdfWriter("session.xdf") as w:
            eeg = w.add_stream("Cyton", "EEG", 8, 250.0, channel_labels=labels, channel_units="microvolts")
            mk = w.add_stream("Markers", "Markers", 1, 0.0, channel_format="string")
            w.write_samples(eeg, samples, timestamps)   # samples [n, 8], timestamps [n] in seconds
            w.write_strings(mk, ["stimulus 3"], [t])

    All methods are thread-safe.  Errors about the file raise :class:`RecordingError`; data that does not
    fit its stream raises :class:`ChunkError`.  Both have a one-line message.

    Args:
        path: file to create; an existing file is replaced.  Its folder must exist and be writable.
        boundary_interval_s: wall-clock seconds between Boundary chunks (LabRecorder: 10 s).
        fsync_interval_s: at most one ``os.fsync`` per this many seconds of wall time (0: after every
            chunk).  Every chunk is written to the operating system immediately regardless.
    """
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        boundary_interval_s: float = 10.0,
        fsync_interval_s: float = 1.0,
    ) -> None:
        self._path = Path(path)
        self._boundary_interval_s = float(boundary_interval_s)
        self._fsync_interval_s = float(fsync_interval_s)
        self._lock = threading.RLock()
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1
        self._closed = False
        self._failed: str | None = None
        self._good_size = 0  # bytes of whole chunks written so far

        folder = self._path.parent
        if folder.exists() and not folder.is_dir():
            raise RecordingError(f"cannot create recording {self._path}: {folder} is a file, not a folder; give "
                                 "another path")
        if not folder.is_dir():
            raise RecordingError(
                f"cannot create recording {self._path}: folder {folder} does not exist; create it first"
            )
        if self._path.is_dir():
            raise RecordingError(f"cannot create recording {self._path}: it is a folder, give a file name")
        if self._path.exists():
            logger.warning("replacing existing file %s", self._path)
        try:
            # Unbuffered: every write() goes straight to the operating system.
            self._file = open(self._path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        except PermissionError as e:
            raise RecordingError(
                f"cannot create recording {self._path}: folder {folder} is not writable ({e.strerror})"
            ) from None
        except OSError as e:
            raise RecordingError(f"cannot create recording {self._path}: {e.strerror or e}") from None

        now = time.monotonic()
        self._last_boundary = now
        self._last_fsync = now
        created = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
        header = (
            '<?xml version="1.0"?><info><version>1.0</version>'
            f"<datetime>{_xml_text(created)}</datetime></info>"
        ).encode()
        try:
            with self._lock:
                self._write(b"XDF:" + _chunk(_TAG_FILE_HEADER, header), boundary=False)
        except RecordingError:
            self._closed = True
            self._file.close()
            raise
        logger.info("recording to %s", self._path)

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> Path:
        """The file being written."""
        return self._path

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def sample_count(self, stream_id: int) -> int:
        """Samples written so far to a stream."""
        with self._lock:
            return self._stream(stream_id).sample_count

    # ------------------------------------------------------------------ streams

    def add_stream(
        self,
        name: str,
        stream_type: str,
        channel_count: int,
        nominal_srate: float,
        channel_format: str = "float32",
        source_id: str = "",
        channel_labels: Sequence[str] | None = None,
        channel_units: Sequence[str] | str | None = None,
        channel_types: Sequence[str] | str | None = None,
        hostname: str = "",
        created_at: float = 0.0,
    ) -> int:
        """Declare a stream and write its StreamHeader chunk (the XML LSL's ``stream_info.as_xml`` gives).

        Args:
            name: stream name, e.g. ``"Cyton"``.
            stream_type: content type, e.g. ``"EEG"``, ``"Markers"``.
            channel_count: channels per sample, >= 1.
            nominal_srate: samples per second; 0 for irregular streams such as markers.
            channel_format: one of ``float32, double64, int8, int16, int32, int64, string``.
            source_id: LSL source id, may be empty.
            channel_labels: one label per channel, or None.
            channel_units: one unit per channel, one unit for all (e.g. ``"microvolts"``), or None.
            channel_types: one type per channel, one type for all (e.g. ``"EEG"``), or None.
            hostname: machine the stream came from.
            created_at: LSL clock time (s) the stream was created.

        Returns:
            The stream id (1, 2, ...) to pass to the ``write_*`` methods.
        """
        if channel_format not in CHANNEL_FORMATS:
            raise RecordingError(
                f"cannot add stream '{name}': channel format '{channel_format}' is not one of "
                + ", ".join(CHANNEL_FORMATS)
            )
        if int(channel_count) != channel_count or channel_count < 1:
            raise RecordingError(
                f"cannot add stream '{name}': channel count must be >= 1, got {channel_count}"
            )
        channel_count = int(channel_count)
        nominal_srate = float(nominal_srate)
        if not math.isfinite(nominal_srate) or nominal_srate < 0:
            raise RecordingError(
                f"cannot add stream '{name}': nominal rate must be a finite number >= 0, got {nominal_srate}"
            )
        labels = _per_channel("labels", channel_labels, channel_count, name)
        units = _per_channel("units", channel_units, channel_count, name)
        types = _per_channel("types", channel_types, channel_count, name)

        with self._lock:
            self._check_open()
            stream_id = self._next_stream_id
            xml = self._stream_header_xml(
                name, stream_type, channel_count, nominal_srate, channel_format, source_id,
                labels, units, types, hostname, float(created_at),
            )
            self._write(_chunk(_TAG_STREAM_HEADER, xml, stream_id))
            self._next_stream_id += 1
            self._streams[stream_id] = _Stream(
                stream_id, name, channel_count, channel_format, CHANNEL_FORMATS[channel_format], nominal_srate
            )
        logger.info(
            "stream %d: '%s' (%s), %d x %s at %g Hz", stream_id, name, stream_type, channel_count,
            channel_format, nominal_srate,
        )
        return stream_id

    @staticmethod
    def _stream_header_xml(
        name: str,
        stream_type: str,
        channel_count: int,
        nominal_srate: float,
        channel_format: str,
        source_id: str,
        labels: list[str] | None,
        units: list[str] | None,
        types: list[str] | None,
        hostname: str,
        created_at: float,
    ) -> bytes:
        """StreamHeader XML laid out as liblsl's ``as_xml`` (the text LabRecorder stores), UTF-8."""
        t = _xml_text
        lines = [
            '<?xml version="1.0"?>',
            "<info>",
            f"\t<name>{t(name)}</name>",
            f"\t<type>{t(stream_type)}</type>",
            f"\t<channel_count>{channel_count}</channel_count>",
            f"\t<channel_format>{channel_format}</channel_format>",
            f"\t<source_id>{t(source_id)}</source_id>",
            f"\t<nominal_srate>{_lsl_number(nominal_srate)}</nominal_srate>",
            "\t<version>1.100000000000000</version>",
            f"\t<created_at>{_lsl_number(created_at)}</created_at>",
            f"\t<uid>{uuid.uuid4()}</uid>",
            "\t<session_id>default</session_id>",
            f"\t<hostname>{t(hostname)}</hostname>",
        ]
        if labels is None and units is None and types is None:
            lines.append("\t<desc />")
        else:
            lines += ["\t<desc>", "\t\t<channels>"]
            for ch in range(channel_count):
                lines.append("\t\t\t<channel>")
                for tag, values in (("label", labels), ("unit", units), ("type", types)):
                    if values is not None:
                        lines.append(f"\t\t\t\t<{tag}>{t(values[ch])}</{tag}>")
                lines.append("\t\t\t</channel>")
            lines += ["\t\t</channels>", "\t</desc>"]
        lines.append("</info>")
        return ("\n".join(lines) + "\n").encode("utf-8")

    # ------------------------------------------------------------------ data

    def write_samples(self, stream_id: int, samples: np.ndarray, timestamps: np.ndarray) -> None:
        """Write one Samples chunk of a numeric stream.

        Args:
            stream_id: id from :meth:`add_stream`.
            samples: array [n, channels] (a 1-D array [n] is accepted for one channel), in the stream's
                units.  Converted to the stream's format: float to float freely; to an integer format only
                if every value is representable exactly (else :class:`ChunkError`).
            timestamps: float64 array [n], LSL clock seconds of each sample; stored exactly.

        An empty chunk (n = 0) writes nothing.
        """
        stream = self._stream(stream_id)
        if stream.dtype is None:
            raise ChunkError(f"stream {stream_id} '{stream.name}' holds strings; use write_strings")
        values = np.asarray(samples)
        if values.ndim == 1 and stream.channel_count == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != stream.channel_count:
            raise ChunkError(
                f"stream {stream_id} '{stream.name}' has {stream.channel_count} channels, "
                f"got samples of shape {values.shape} (want [n, {stream.channel_count}])"
            )
        n = values.shape[0]
        stamps = self._timestamps(stream, timestamps, n)
        if n == 0:
            return
        if values.dtype.kind not in "biuf":
            raise ChunkError(
                f"stream {stream_id} '{stream.name}': samples must be numeric, got dtype {values.dtype}"
            )
        with np.errstate(invalid="ignore", over="ignore"):
            converted = values.astype(stream.dtype)
            exact = (
                stream.dtype.kind != "i"
                or values.dtype == stream.dtype
                or np.array_equal(converted.astype(values.dtype), values)
            )
        if not exact:
            raise ChunkError(
                f"stream {stream_id} '{stream.name}' is {stream.channel_format}: samples of dtype "
                f"{values.dtype} have values it cannot hold exactly"
            )
        record = np.dtype(
            [("ts_bytes", "u1"), ("ts", "<f8"), ("values", stream.dtype, (stream.channel_count,))]
        )
        packed = np.empty(n, dtype=record)
        packed["ts_bytes"] = 8
        packed["ts"] = stamps
        packed["values"] = converted
        content = b"\x04" + struct.pack("<I", n) + packed.tobytes()
        self._write_data(stream, _chunk(_TAG_SAMPLES, content, stream_id), stamps)

    def write_strings(
        self,
        stream_id: int,
        values: Sequence[str] | Sequence[Sequence[str]],
        timestamps: Sequence[float] | np.ndarray,
    ) -> None:
        """Write one Samples chunk of a string stream (markers, events).

        Args:
            stream_id: id from :meth:`add_stream` of a ``"string"`` stream.
            values: n samples; each a ``str`` (one-channel streams) or a sequence of ``channels`` strings.
                Stored as UTF-8.
            timestamps: n LSL clock times in seconds.

        An empty chunk (n = 0) writes nothing.
        """
        stream = self._stream(stream_id)
        if stream.dtype is not None:
            raise ChunkError(
                f"stream {stream_id} '{stream.name}' is {stream.channel_format}; use write_samples"
            )
        if isinstance(values, str):
            raise ChunkError(f"stream {stream_id} '{stream.name}': give a list of samples, not one string")
        rows: list[list[str]] = []
        for sample in values:
            row = [sample] if isinstance(sample, str) else list(sample)
            if len(row) != stream.channel_count or not all(isinstance(v, str) for v in row):
                raise ChunkError(
                    f"stream {stream_id} '{stream.name}' has {stream.channel_count} string channels, "
                    f"got sample {sample!r}"
                )
            rows.append(row)
        n = len(rows)
        stamps = self._timestamps(stream, timestamps, n)
        if n == 0:
            return
        parts = [b"\x04", struct.pack("<I", n)]
        for ts, row in zip(stamps.tolist(), rows):
            parts.append(b"\x08" + struct.pack("<d", ts))
            for text in row:
                raw = text.encode("utf-8", errors="surrogatepass")
                parts.append(_varlen_int(len(raw)))
                parts.append(raw)
        self._write_data(stream, _chunk(_TAG_SAMPLES, b"".join(parts), stream_id), stamps)

    def write_clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        """Write a ClockOffset chunk (tag 4); also listed in the stream's footer.

        Args:
            stream_id: id from :meth:`add_stream`.
            collection_time: seconds, when the offset was measured, in the stream's clock (LabRecorder
                writes ``local_clock() - offset``).
            offset: seconds to add to the stream's timestamps to get the recording machine's clock
                (``inlet.time_correction()``).
        """
        stream = self._stream(stream_id)
        chunk = _chunk(_TAG_CLOCK_OFFSET, struct.pack("<dd", collection_time, offset), stream_id)
        with self._lock:
            self._check_open()
            self._write(chunk)
            stream.clock_offsets.append((float(collection_time), float(offset)))

    def write_boundary(self) -> None:
        """Write a Boundary chunk (tag 5) now; readers resynchronise on it after damaged data."""
        with self._lock:
            self._check_open()
            self._write(_chunk(_TAG_BOUNDARY, BOUNDARY_UUID), boundary=False)
            self._last_boundary = time.monotonic()

    def flush(self) -> None:
        """Force written chunks to disk now (``os.fsync``)."""
        with self._lock:
            self._check_open()
            self._fsync()

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Write a StreamFooter per stream, fsync and close the file.  Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._failed is None:
                    for stream in self._streams.values():
                        self._write(_chunk(_TAG_STREAM_FOOTER, self._footer_xml(stream), stream.stream_id))
                    self._fsync()
            finally:
                self._closed = True
                try:
                    self._file.close()
                except OSError as e:  # pragma: no cover - close after a failed disk
                    logger.error("closing %s failed: %s", self._path, e)
        logger.info(
            "closed %s (%s)", self._path,
            ", ".join(f"'{s.name}': {s.sample_count} samples" for s in self._streams.values())
            or "no streams",
        )

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _footer_xml(stream: _Stream) -> bytes:
        """StreamFooter XML as LabRecorder writes it."""
        first = stream.first_timestamp if stream.first_timestamp is not None else 0.0
        last = stream.last_timestamp if stream.last_timestamp is not None else 0.0
        offsets = "".join(
            f"<offset><time>{_exact_number(t)}</time><value>{_exact_number(v)}</value></offset>"
            for t, v in stream.clock_offsets
        )
        return (
            '<?xml version="1.0"?><info>'
            f"<first_timestamp>{_exact_number(first)}</first_timestamp>"
            f"<last_timestamp>{_exact_number(last)}</last_timestamp>"
            f"<sample_count>{stream.sample_count}</sample_count>"
            f"<clock_offsets>{offsets}</clock_offsets></info>"
        ).encode()

    # ------------------------------------------------------------------ internals

    def _stream(self, stream_id: int) -> _Stream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise ChunkError(
                f"no stream {stream_id} in {self._path.name}; add_stream returned {sorted(self._streams)}"
            ) from None

    @staticmethod
    def _timestamps(stream: _Stream, timestamps: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
        """Timestamps as float64 [n], all finite."""
        try:
            stamps = np.asarray(timestamps, dtype=np.float64)
        except (TypeError, ValueError):
            raise ChunkError(f"stream '{stream.name}': timestamps must be numbers") from None
        if stamps.shape != (n,):
            raise ChunkError(f"stream '{stream.name}': {n} samples but timestamps of shape {stamps.shape}")
        if not np.all(np.isfinite(stamps)):
            raise ChunkError(f"stream '{stream.name}': timestamps must be finite")
        return stamps

    def _check_open(self) -> None:
        if self._closed:
            raise RecordingError(f"recording {self._path} is closed")
        if self._failed is not None:
            raise RecordingError(f"recording {self._path} stopped after a write error: {self._failed}")

    def _write_data(self, stream: _Stream, chunk: bytes, stamps: np.ndarray) -> None:
        """Write a Samples chunk and update the stream's footer statistics."""
        with self._lock:
            self._check_open()
            self._write(chunk)
            if stream.first_timestamp is None:
                stream.first_timestamp = float(stamps[0])
            stream.last_timestamp = float(stamps[-1])
            stream.sample_count += len(stamps)

    def _write(self, data: bytes, *, boundary: bool = True) -> None:
        """Write whole chunks with one system call (looping only on a short write); hold the lock.

        A Boundary chunk is put in front when ``boundary_interval_s`` has passed since the last one.  On
        failure the file is cut back to its last whole chunk and the writer refuses further writes.
        """
        now = time.monotonic()
        if boundary and now - self._last_boundary >= self._boundary_interval_s:
            data = _chunk(_TAG_BOUNDARY, BOUNDARY_UUID) + data
            self._last_boundary = now
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                if written is None:  # pragma: no cover - only for non-blocking files
                    written = 0
                view = view[written:]
            self._file.flush()
        except OSError as e:
            self._failed = e.strerror or str(e)
            logger.error("writing %s failed: %s", self._path, self._failed)
            try:
                os.ftruncate(self._file.fileno(), self._good_size)
                self._file.seek(self._good_size)
            except OSError:
                logger.exception("could not cut %s back to its last whole chunk", self._path)
            raise RecordingError(f"writing recording {self._path} failed: {self._failed}") from None
        self._good_size += len(data)
        if now - self._last_fsync >= self._fsync_interval_s:
            self._fsync()

    def _fsync(self) -> None:
        try:
            os.fsync(self._file.fileno())
        except OSError as e:
            logger.warning("fsync of %s failed: %s", self._path, e)
        self._last_fsync = time.monotonic()


def trim_to_whole_chunks(path: str | os.PathLike[str]) -> int:
    """Cut a damaged XDF file back to its last whole chunk; return the number of bytes removed.

    Only needed after a torn write (power cut, a kill inside the ``write`` system call): pyxdf fails on a
    file that ends inside a header, tag or ClockOffset chunk, and returns a wrong last sample for one
    that ends inside the last sample's values.  Files written by :class:`XdfWriter` and then killed
    normally end on a chunk boundary and are left as they are.  The chunk lengths are followed from the
    start; the file is cut where a length is invalid or runs past the end.
    """
    file_path = Path(path)
    try:
        good, size = whole_chunks_size(file_path)
        if good == 0:
            raise RecordingError(f"{file_path} is not an XDF file (no 'XDF:' at its start)")
        if good < size:
            os.truncate(file_path, good)
            logger.warning("cut %s from %d to %d bytes (last whole chunk)", file_path, size, good)
        return size - good
    except OSError as e:
        raise RecordingError(f"cannot repair {file_path}: {e.strerror or e}") from None
