"""BrainFlow headsets (OpenBCI, Muse, synthetic and playback boards) as a :class:`Source`."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bci_dream.acquisition.source import Source
from bci_dream.core.errors import DeviceError, RecordingError
from bci_dream.core.types import Chunk, Marker, SourceState, StreamInfo
from bci_dream.devices import AUX_KINDS, DeviceProfile, aux_labels, check_aux_kinds, impedance_unavailable
from bci_dream.io.readers import sniff_format

log = logging.getLogger(__name__)

#: Seconds of data BrainFlow's own ring buffer holds between two reads (we read every few milliseconds; a board
#: that is not read for longer counts as stalled long before). BrainFlow's default of 450,000 samples is 30 minutes
#: at 250 Hz: allocated at once and touched page by page as it fills, it made the process grow by some 230 MB an
#: hour for its first half hour (found with benchmarks/memory_soak.py).
BOARD_BUFFER_SECONDS = 60.0
#: ... and never fewer samples than this.
MIN_BOARD_BUFFER_SAMPLES = 10_000


_board_shim = None


def _brainflow():
    """brainflow.board_shim, imported on first use (loading the native library takes ~100 ms)."""
    global _board_shim
    if _board_shim is None:
        with warnings.catch_warnings():
            # brainflow 5.23 finds its native library through the deprecated pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from brainflow import board_shim
        board_shim.BoardShim.disable_board_logger()  # it prints JSON to stderr; we log ourselves
        _board_shim = board_shim
    return _board_shim


def board_id_from_name(name: str) -> int:
    """BrainFlow ``BoardIds`` value of ``name`` (``"CYTON_BOARD"``) or of a number given as text."""
    ids = _brainflow().BoardIds
    try:
        return int(name)
    except ValueError:
        pass
    try:
        return ids[name.upper()].value
    except KeyError:
        raise DeviceError(f"BrainFlow has no board called '{name}'; use a BoardIds name such as CYTON_BOARD") from None


def list_serial_ports() -> list[str]:
    """Serial ports present on this machine (for messages and the GUI's device picker)."""
    try:
        from serial.tools import list_ports
    except ImportError:  # pyserial is a dependency, but the message must not depend on it
        return []
    return sorted(p.device for p in list_ports.comports())


@dataclass(frozen=True)
class _AuxRows:
    """Where one aux kind is in the board's data: its preset, its rows and that preset's timestamp row."""

    kind: str
    preset: int
    rows: tuple[int, ...]
    timestamp_row: int
    info: StreamInfo


class BrainFlowSource(Source):
    """Streams the EEG rows of a BrainFlow board, and the aux rows (accelerometer, PPG, analog inputs) asked for.

    Timestamps: BrainFlow stamps samples with the wall clock (``time.time()``); they are moved to
    the LSL clock with an offset measured at connection and refreshed every few seconds.

    Aux kinds (:data:`bci_dream.devices.AUX_KINDS`) are looked up in the board's presets (the EEG preset first:
    a Cyton's accelerometer and analog rows share its samples; a Muse's accelerometer is in its auxiliary preset
    at 52 Hz, its PPG in the ancillary one at 64 Hz) and delivered as streams of their own (:attr:`aux_infos`).

    Args:
        profile: the headset's profile (board, preset, channel names).
        params: connection parameters named as in :data:`bci_dream.devices.CONNECTION_PARAMETERS`.
        poll_interval: seconds between reads of BrainFlow's buffer.
        reconnect: reconnect with back-off after a stall longer than ``reconnect_after`` seconds.
        aux: aux kinds to deliver (None: the profile's ``[aux] record``).
    """

    def __init__(
        self,
        profile: DeviceProfile,
        params: dict[str, Any] | None = None,
        *,
        poll_interval: float = 0.02,
        stall_timeout: float = 2.0,
        reconnect: bool = True,
        reconnect_after: float = 3.0,
        max_backoff: float = 30.0,
        playback_loop: bool = False,
        aux: Sequence[str] | None = None,
    ) -> None:
        super().__init__(profile.name)
        self.profile = profile
        self.params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        profile.check_parameters(self.params)
        self.poll_interval = poll_interval
        self.stall_timeout = stall_timeout
        self.reconnect = reconnect
        self.reconnect_after = reconnect_after
        self.max_backoff = max_backoff
        self.playback_loop = playback_loop
        self.board_id = board_id_from_name(profile.board)
        self.board: Any = None
        self._eeg_rows: list[int] = []
        self._ts_row = -1
        self._marker_row: int | None = None
        self._counter_row: int | None = None
        self._last_counter: int | None = None
        self._clock_offset = 0.0
        self._offset_measured_at = 0.0
        self.reconnects = 0
        self._preset = 0
        self.aux_kinds = check_aux_kinds(profile.aux if aux is None else aux)
        self._aux: list[_AuxRows] = []
        self._resistance_rows: list[int] = []
        self._resistance: np.ndarray | None = None  # (the latest values while in a Ganglion's impedance mode)
        self._resistance_lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------------

    def _input_params(self):
        bf = _brainflow()
        p = bf.BrainFlowInputParams()
        for key, value in self.params.items():
            if key == "master_board":
                p.master_board = board_id_from_name(str(value))
            elif key in ("ip_port", "timeout"):
                setattr(p, key, int(value))
            elif key == "file":
                p.file = os.fspath(value)
            else:
                setattr(p, key, str(value))
        if self.board_id == bf.BoardIds.PLAYBACK_FILE_BOARD.value and "master_board" not in self.params:
            p.master_board = board_id_from_name(self.profile.master_board or "SYNTHETIC_BOARD")
        return p

    def _check_inputs(self, params) -> None:
        port = self.params.get("serial_port")
        if port and sys.platform != "win32" and not os.path.exists(port):
            ports = ", ".join(list_serial_ports()) or "none found"
            raise DeviceError(f"serial port {port} does not exist; plug in the dongle or pass another "
                              f"--serial-port (ports on this machine: {ports})")
        file = self.params.get("file")
        if file is not None and not os.path.isfile(file):
            raise DeviceError(f"playback file {file} does not exist; pass a BrainFlow CSV with --file")
        if file is not None:
            try:
                kind = sniff_format(file)
            except RecordingError as e:
                raise DeviceError(f"playback file {file}: {e}") from e
            if kind != "brainflow":  # (BrainFlow's playback board would stream nothing from it, and say nothing)
                raise DeviceError(f"playback file {file} is not a BrainFlow CSV (it reads as {kind}); the playback "
                                  f"board plays only BrainFlow's own files: replay it with 'bci-dream replay {file}'")

    def _describe(self, params) -> StreamInfo:
        bf = _brainflow()
        descr_board = self.board_id
        if self.board_id in (bf.BoardIds.PLAYBACK_FILE_BOARD.value, bf.BoardIds.STREAMING_BOARD.value):
            descr_board = params.master_board
        self._preset = bf.BrainFlowPresets[self.profile.preset].value
        descr = bf.BoardShim.get_board_descr(descr_board, self._preset)
        self._eeg_rows = list(descr.get("eeg_channels", []))
        self._ts_row = int(descr["timestamp_channel"])
        self._marker_row = descr.get("marker_channel")
        self._resistance_rows = list(descr.get("resistance_channels", []))
        counter = descr.get("package_num_channel")
        self._counter_row = counter if self.profile.package_counter_modulo else None
        sfreq = float(descr["sampling_rate"])
        names = tuple(self.profile.channels)
        if not names and descr.get("eeg_names"):
            names = tuple(str(descr["eeg_names"]).split(","))
        if not names:
            names = tuple(f"EEG{i + 1}" for i in range(len(self._eeg_rows)))
        if len(names) != len(self._eeg_rows):
            raise DeviceError(
                f"profile '{self.profile.name}' lists {len(names)} channels but the board delivers "
                f"{len(self._eeg_rows)} EEG channels; fix 'channels' in {self.profile.path}")
        if self.profile.sampling_rate and abs(self.profile.sampling_rate - sfreq) > 1e-6:
            log.warning("profile '%s' says %g Hz but BrainFlow says %g Hz; using BrainFlow's",
                        self.profile.name, self.profile.sampling_rate, sfreq)
        serial = self.params.get("serial_number") or self.params.get("mac_address") \
            or self.params.get("serial_port") or self.params.get("file") or ""
        info = StreamInfo(name=str(descr.get("name", self.profile.name)), ch_names=names, sfreq=sfreq,
                          units=self.profile.units, source_id=f"brainflow:{self.profile.board}:{serial}",
                          stream_type="EEG")
        self._aux = [self._find_aux(kind, descr_board, info) for kind in self.aux_kinds]
        taken = set(names)
        for aux in self._aux:
            clash = taken & set(aux.info.ch_names)
            if clash:
                raise DeviceError(f"aux channel {sorted(clash)[0]} of {aux.kind} has the name of another channel; "
                                  f"rename it under [aux.channels] in {self.profile.path}")
            taken |= set(aux.info.ch_names)
        return info

    def _find_aux(self, kind: str, board: int, eeg: StreamInfo) -> _AuxRows:
        """The preset and rows of ``kind`` on ``board``; :class:`DeviceError` naming the kinds it has if none."""
        bf = _brainflow()
        # Only the presets the board has: asking BrainFlow (5.23) for one it lacks breaks later sessions of that board.
        presets = [self._preset] + sorted(p for p in bf.BoardShim.get_board_presets(board) if p != self._preset)
        found: dict[str, None] = {}
        for preset in presets:
            descr = bf.BoardShim.get_board_descr(board, preset)
            found.update(dict.fromkeys(k.removesuffix("_channels") for k in descr
                                       if k.removesuffix("_channels") in AUX_KINDS))
            rows = descr.get(f"{kind}_channels")
            if rows:
                labels = aux_labels(kind, len(rows), self.profile.aux_channels.get(kind, ()))
                info = StreamInfo(name=f"{eeg.name} {kind}", ch_names=labels, sfreq=float(descr["sampling_rate"]),
                                  units="", source_id=f"{eeg.source_id}:{kind}", stream_type=AUX_KINDS[kind])
                return _AuxRows(kind, preset, tuple(int(r) for r in rows), int(descr["timestamp_channel"]), info)
        has = ", ".join(found) or "none"
        raise DeviceError(f"{self.profile.description or self.profile.name} has no {kind} channels (aux kinds it "
                          f"has: {has}); change --aux or [aux] record in the profile")

    @property
    def aux_infos(self) -> tuple[StreamInfo, ...]:
        return tuple(a.info for a in self._aux)

    # -- impedance ------------------------------------------------------------------------------------

    @property
    def impedance_method(self) -> str:  # type: ignore[override]
        """The profile's impedance method, when its board can use it (see :func:`impedance_unavailable`)."""
        return "" if self.impedance_unavailable else self.profile.impedance

    @property
    def impedance_unavailable(self) -> str:
        return impedance_unavailable(self.profile)

    def configure(self, command: str) -> None:
        """Send ``command`` to the board (BrainFlow's ``config_board``) while it streams; :class:`DeviceError` if
        the board is not connected or refuses it."""
        board = self.board
        if board is None:
            raise DeviceError(f"{self.name} is not connected; connect it first")
        bf = _brainflow()
        try:
            board.config_board(command)
        except bf.BrainFlowError as e:
            raise DeviceError(f"{self.profile.description or self.name} refused the command {command!r}: {e}; "
                              "check that it is on and in range") from e

    def set_resistance_capture(self, on: bool) -> None:
        """Keep the board's ``resistance_channels`` values while ``on`` (a Ganglion in impedance mode delivers them
        there, not EEG); its sample counter is not counted for drops meanwhile (those packets are numbered apart)."""
        with self._resistance_lock:
            self._resistance = np.full(len(self._resistance_rows), np.nan) if on else None
        self._last_counter = None

    def resistance_values(self) -> np.ndarray:
        """The latest ``resistance_channels`` values seen while capturing (NaN: none yet), as BrainFlow gives them."""
        with self._resistance_lock:
            return np.full(len(self._resistance_rows), np.nan) if self._resistance is None else self._resistance.copy()

    def _connect(self) -> None:
        bf = _brainflow()
        params = self._input_params()
        board = bf.BoardShim(self.board_id, params)
        try:
            board.prepare_session()
            if self.board_id == bf.BoardIds.PLAYBACK_FILE_BOARD.value and self.playback_loop:
                board.config_board("loopback_true")
            for kind in self.aux_kinds:
                for command in self.profile.aux_commands.get(kind, ()):
                    log.info("%s: %s on: config_board(%r)", self.name, kind, command)
                    board.config_board(command)
            board.start_stream(self._board_buffer_samples())
        except bf.BrainFlowError as e:
            try:
                if board.is_prepared():
                    board.release_session()
            except bf.BrainFlowError:
                pass
            raise DeviceError(self._explain(e)) from e
        self.board = board
        self._measure_clock_offset()

    def _board_buffer_samples(self) -> int:
        rate = self._info.sfreq if self._info is not None else self.profile.sampling_rate
        return max(MIN_BOARD_BUFFER_SAMPLES, int(BOARD_BUFFER_SECONDS * (rate or 250.0)))

    def _explain(self, error) -> str:
        code = getattr(error, "exit_code", None)
        bf = _brainflow()
        try:
            reason = bf.BrainFlowExitCodes(code).name.lower().replace("_", " ")
        except ValueError:
            reason = str(error)
        hints = {
            bf.BrainFlowExitCodes.UNABLE_TO_OPEN_PORT_ERROR.value: "check --serial-port and that no other program uses it",
            bf.BrainFlowExitCodes.BOARD_NOT_READY_ERROR.value: "switch the headset on and bring it closer",
            bf.BrainFlowExitCodes.BOARD_NOT_CREATED_ERROR.value: "check the connection parameters",
            bf.BrainFlowExitCodes.INVALID_ARGUMENTS_ERROR.value: "check the connection parameters",
        }
        hint = hints.get(code, "check that the headset is on, charged and in range")
        return f"cannot open {self.profile.description or self.profile.name}: {reason}; {hint}"

    def open(self) -> StreamInfo:
        self._set_state(SourceState.CONNECTING)
        try:
            params = self._input_params()
            self._check_inputs(params)
            self._info = self._describe(params)
            self._connect()
        except DeviceError as e:
            self.error = e
            self._set_state(SourceState.FAILED, str(e))
            raise
        return self._info

    def _measure_clock_offset(self) -> None:
        from pylsl import local_clock

        # Take the tightest of a few readings of the two clocks.
        best = None
        for _ in range(5):
            a = local_clock()
            wall = time.time()
            b = local_clock()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) / 2 - wall)
        self._clock_offset = best[1]
        self._offset_measured_at = time.monotonic()

    def _release(self) -> None:
        board, self.board = self.board, None
        if board is None:
            return
        bf = _brainflow()
        try:
            board.stop_stream()
        except bf.BrainFlowError:
            pass
        try:
            board.release_session()
        except bf.BrainFlowError as e:
            log.debug("release_session: %s", e)

    @property
    def _is_playback(self) -> bool:
        return self.board_id == _brainflow().BoardIds.PLAYBACK_FILE_BOARD.value

    # -- acquisition loop -------------------------------------------------------------------------

    def _read(self) -> int:
        """Read what BrainFlow has buffered and emit it; return the number of samples."""
        data = self.board.get_board_data(preset=self._preset)
        n = data.shape[1]
        if n == 0:
            return 0
        samples = np.ascontiguousarray(data[self._eeg_rows].T, dtype=np.float32)
        timestamps = data[self._ts_row] + self._clock_offset
        markers: list[Marker] = []
        if self._marker_row is not None:
            for i in np.flatnonzero(data[self._marker_row]):
                markers.append(Marker(float(timestamps[i]), f"{data[self._marker_row, i]:g}", "brainflow"))
        if self._resistance is not None:
            self._keep_resistance(data)
        elif self._counter_row is not None:
            self._count_dropped(data[self._counter_row])
        self._emit(Chunk(samples, timestamps, markers))
        for index, aux in enumerate(self._aux):
            rows = data if aux.preset == self._preset else self.board.get_board_data(preset=aux.preset)
            if rows.shape[1]:
                self._emit_aux(index, Chunk(np.ascontiguousarray(rows[list(aux.rows)].T, dtype=np.float32),
                                            rows[aux.timestamp_row] + self._clock_offset))
        return n

    def _keep_resistance(self, data: np.ndarray) -> None:
        rows = data[self._resistance_rows]
        with self._resistance_lock:
            if self._resistance is None:
                return
            for r in range(rows.shape[0]):
                measured = np.flatnonzero(rows[r] > 0)
                if measured.size:
                    self._resistance[r] = rows[r, measured[-1]]

    def _count_dropped(self, counter: np.ndarray) -> None:
        modulo = self.profile.package_counter_modulo or 256
        values = counter.astype(np.int64)
        if self._last_counter is not None:
            values = np.concatenate([[self._last_counter], values])
        steps = np.diff(values) % modulo
        self.dropped_samples += int(np.sum(np.maximum(steps - 1, 0)))
        self._last_counter = int(values[-1])

    def _run(self) -> None:
        if self.board is None:
            self._connect()
        self._set_state(SourceState.STREAMING)
        last_data = time.monotonic()
        while not self._stop_event.is_set():
            try:
                n = self._read()
            except _brainflow().BrainFlowError as e:
                log.warning("%s: read failed: %s", self.name, e)
                n = 0
            now = time.monotonic()
            if n:
                last_data = now
                if self._state == SourceState.STALLED:
                    self._set_state(SourceState.STREAMING, "samples flow again")
                if now - self._offset_measured_at > 5.0:
                    self._measure_clock_offset()
            else:
                silent = now - last_data
                if silent > self.stall_timeout and self._state == SourceState.STREAMING:
                    if self._is_playback and not self.playback_loop:
                        log.info("%s: end of the playback file", self.name)
                        return
                    self._set_state(SourceState.STALLED, f"no samples for {silent:.1f} s")
                if self.reconnect and silent > self.stall_timeout + self.reconnect_after:
                    if not self._reconnect_with_backoff():
                        return
                    last_data = time.monotonic()
            self._stop_event.wait(self.poll_interval)

    def _reconnect_with_backoff(self) -> bool:
        """Release the board and open it again, waiting 1, 2, 4, ... s between tries; False if stopped."""
        try:
            self._read()  # keep anything that arrived before the board went quiet
        except Exception:
            pass
        self._release()
        delay = 1.0
        while not self._stop_event.is_set():
            self._set_state(SourceState.RECONNECTING, f"next try in {delay:.0f} s")
            try:
                self._connect()
            except DeviceError as e:
                log.warning("%s: reconnect failed: %s", self.name, e)
                if self._stop_event.wait(delay):
                    return False
                delay = min(delay * 2, self.max_backoff)
                continue
            self.reconnects += 1
            self._last_counter = None
            self._set_state(SourceState.STREAMING, "reconnected")
            return True
        return False

    def _close(self) -> None:
        if self.board is not None:
            try:
                self._read()
            except Exception:
                pass
        self._release()

    def insert_marker(self, value: float) -> None:
        """Put a numeric marker into the board's stream (BrainFlow markers are numbers)."""
        if self.board is not None:
            self.board.insert_marker(float(value))
