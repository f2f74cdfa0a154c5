"""XdfWriter against the real reader pyxdf: formats, metadata, interleaving, a recording killed by SIGKILL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import struct
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

pyxdf = pytest.importorskip("pyxdf")

from bci_dream.core.errors import ChunkError, RecordingError  # noqa: E402
from bci_dream.io import xdf_writer  # noqa: E402
from bci_dream.io.xdf_writer import BOUNDARY_UUID, XdfWriter, trim_to_whole_chunks  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> tuple[dict[str, dict], dict]:
    """Streams by name, and the file header, exactly as stored (no clock sync, no dejittering)."""
    streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}, header


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bit patterns of an array, so NaN, -0.0 and denormals compare exactly."""
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def channels(stream: dict, key: str) -> list[str]:
    return [ch[key][0] for ch in stream["info"]["desc"][0]["channels"][0]["channel"]]


# ---------------------------------------------------------------------------------------- formats


NUMERIC = {
    "float32": np.float32,
    "double64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
}


def numeric_data(fmt: str, n: int, n_channels: int, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(NUMERIC[fmt])
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=(n, n_channels), dtype=dtype, endpoint=True)
        data[0, 0], data[0, -1] = info.min, info.max
        return data
    data = (rng.standard_normal((n, n_channels)) * 1e3).astype(dtype)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype).tiny / 4, np.finfo(dtype).max], dtype)
    data.flat[: len(special)] = special
    return data


@pytest.mark.parametrize("fmt", list(NUMERIC))
def test_numeric_stream_round_trip(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "rec.xdf"
    data = numeric_data(fmt, 300, 5, rng)
    # Includes 0.0 (LabRecorder would write it as "deduce from rate"), negative and large times.
    stamps = np.concatenate([[0.0, -1.5], 123456.789 + np.arange(298) / 250.0 + rng.normal(0, 1e-4, 298)])
    labels = ["Fp1", "Fp2", "C3 <&>", "C4", "Oz"]
    with XdfWriter(path) as w:
        sid = w.add_stream(
            f"Amp {fmt} <&> \"µ\"", "EEG", 5, 250.0, channel_format=fmt, source_id="sn-42",
            channel_labels=labels, channel_units="microvolts", channel_types=["EEG"] * 4 + ["EOG"],
            hostname="lab-pc", created_at=1234.5,
        )
        assert sid == 1
        for start in range(0, 300, 37):
            w.write_samples(sid, data[start : start + 37], stamps[start : start + 37])
        w.write_samples(sid, data[:0], stamps[:0])  # empty: no-op
        assert w.sample_count(sid) == 300

    streams, header = load(path)
    s = streams[f"Amp {fmt} <&> \"µ\""]
    info = s["info"]
    assert info["type"] == ["EEG"]
    assert int(info["channel_count"][0]) == 5
    assert float(info["nominal_srate"][0]) == 250.0
    assert info["channel_format"] == [fmt]
    assert info["source_id"] == ["sn-42"]
    assert info["hostname"] == ["lab-pc"]
    assert float(info["created_at"][0]) == 1234.5
    assert channels(s, "label") == labels
    assert channels(s, "unit") == ["microvolts"] * 5
    assert channels(s, "type") == ["EEG"] * 4 + ["EOG"]

    assert s["time_series"].dtype == data.dtype
    assert s["time_series"].shape == (300, 5)
    np.testing.assert_array_equal(bits(s["time_series"]), bits(data))
    np.testing.assert_array_equal(bits(s["time_stamps"]), bits(stamps))

    footer = s["footer"]["info"]
    assert int(footer["sample_count"][0]) == 300
    assert float(footer["first_timestamp"][0]) == stamps[0]
    assert float(footer["last_timestamp"][0]) == stamps[-1]

    assert header["info"]["version"] == ["1.0"]
    assert dt.datetime.fromisoformat(header["info"]["datetime"][0]).tzinfo is not None


def test_int_stream_accepts_exact_values_only(tmp_path: Path) -> None:
    with XdfWriter(tmp_path / "rec.xdf") as w:
        sid = w.add_stream("Counts", "Misc", 2, 100.0, channel_format="int16")
        w.write_samples(sid, np.array([[1.0, -2.0]]), np.array([1.0]))  # float but integral: fine
        with pytest.raises(ChunkError, match="cannot hold exactly"):
            w.write_samples(sid, np.array([[1.5, 2.0]]), np.array([2.0]))
        with pytest.raises(ChunkError, match="cannot hold exactly"):
            w.write_samples(sid, np.array([[40000, 0]]), np.array([2.0]))
    streams, _ = load(tmp_path / "rec.xdf")
    np.testing.assert_array_equal(streams["Counts"]["time_series"], [[1, -2]])


def test_string_streams_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rec.xdf"
    one = ["stim 1", "", "ünïcødé ✓ 🧠", "<tag attr='x'>&amp;</tag>", "x" * 300, "new\nline\x00nul"]
    three = [["a", "b", "c"], ["", "é", "y" * 70000], ["1", "2", "3"]]
    with XdfWriter(path) as w:
        m1 = w.add_stream("Markers", "Markers", 1, 0.0, channel_format="string", source_id="mk")
        m3 = w.add_stream(
            "Events3", "Markers", 3, 0.0, channel_format="string", channel_labels=["a", "b", "c"]
        )
        w.write_strings(m1, one[:2], [0.5, 0.75])
        w.write_strings(m3, three, np.array([1.0, 2.0, 3.0]))
        w.write_strings(m1, [[v] for v in one[2:]], [1.0, 1.25, 1.5, 1.75])
        w.write_strings(m1, [], [])

    streams, _ = load(path)
    s1, s3 = streams["Markers"], streams["Events3"]
    assert s1["info"]["channel_format"] == ["string"]
    assert float(s1["info"]["nominal_srate"][0]) == 0.0
    assert s1["time_series"] == [[v] for v in one]
    assert s1["time_stamps"].tolist() == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert s3["time_series"] == three
    assert s3["time_stamps"].tolist() == [1.0, 2.0, 3.0]
    assert channels(s3, "label") == ["a", "b", "c"]
    assert int(s1["footer"]["info"]["sample_count"][0]) == 6
    assert int(s3["footer"]["info"]["sample_count"][0]) == 3


# ---------------------------------------------------------------------------------------- layout


def test_byte_layout_matches_labrecorder(tmp_path: Path) -> None:
    path = tmp_path / "rec.xdf"
    with XdfWriter(path) as w:
        sid = w.add_stream("S", "EEG", 2, 10.0)
        w.write_samples(sid, np.array([[1, 2], [3, 4]], np.float32), np.array([5.0, 5.1]))
        w.write_clock_offset(sid, 6.0, -0.25)
    data = path.read_bytes()
    assert data[:4] == b"XDF:"
    pos = 4
    chunks: list[tuple[int, bytes]] = []
    while pos < len(data):
        width = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
        body = data[pos + 1 + width : pos + 1 + width + length]
        chunks.append((struct.unpack("<H", body[:2])[0], body[2:]))
        pos += 1 + width + length
    assert pos == len(data)
    assert [tag for tag, _ in chunks] == [1, 2, 3, 4, 6]
    assert chunks[0][1].startswith(b'<?xml version="1.0"?><info><version>1.0</version><datetime>')
    samples = chunks[2][1]
    expected = (
        struct.pack("<I", 1) + b"\x04" + struct.pack("<I", 2)
        + b"\x08" + struct.pack("<d", 5.0) + struct.pack("<2f", 1, 2)
        + b"\x08" + struct.pack("<d", 5.1) + struct.pack("<2f", 3, 4)
    )
    assert samples == expected
    assert chunks[3][1] == struct.pack("<Idd", 1, 6.0, -0.25)
    footer = chunks[4][1][4:].decode()
    assert footer.startswith('<?xml version="1.0"?><info><first_timestamp>5.0</first_timestamp>')
    assert "<sample_count>2</sample_count>" in footer
    assert "<offset><time>6.0</time><value>-0.25</value></offset>" in footer


def test_boundary_chunks_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(xdf_writer, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    path = tmp_path / "rec.xdf"
    with XdfWriter(path, boundary_interval_s=10.0) as w:
        sid = w.add_stream("S", "EEG", 1, 1.0)
        for k in range(60):  # one chunk per simulated second
            w.write_samples(sid, np.array([[k]], np.float32), np.array([float(k)]))
            clock[0] += 1.0
        w.write_boundary()
    data = path.read_bytes()
    boundary = b"\x01\x12\x05\x00" + BOUNDARY_UUID
    assert data.count(BOUNDARY_UUID) == data.count(boundary) == 5 + 1  # at 10, 20, ... 50 s, then by hand
    streams, _ = load(path)
    np.testing.assert_array_equal(streams["S"]["time_series"][:, 0], np.arange(60))


def test_fsync_is_throttled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(xdf_writer.os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    w = XdfWriter(tmp_path / "rec.xdf", fsync_interval_s=60.0)
    sid = w.add_stream("S", "EEG", 4, 250.0)
    for k in range(200):
        w.write_samples(sid, np.full((5, 4), k, np.float32), np.arange(5) + 5.0 * k)
    assert len(calls) == 0
    w.close()
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------- interleaving


def test_many_interleaved_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "rec.xdf"
    eeg_parts: list[np.ndarray] = []
    eeg_times: list[np.ndarray] = []
    aux_parts: list[np.ndarray] = []
    aux_times: list[np.ndarray] = []
    offsets: list[tuple[float, float]] = []
    t_eeg = t_aux = 100.0
    with XdfWriter(path, boundary_interval_s=0.0) as w:  # a boundary before every chunk
        eeg = w.add_stream("EEG", "EEG", 8, 500.0, channel_labels=[f"E{i}" for i in range(8)])
        aux = w.add_stream("Aux", "Accelerometer", 3, 0.0, channel_format="double64")
        assert (eeg, aux) == (1, 2)
        for k in range(400):
            n = int(rng.integers(0, 25))
            if rng.random() < 0.5:
                x = rng.standard_normal((n, 8)).astype(np.float32)
                t = t_eeg + np.arange(n) / 500.0
                t_eeg += n / 500.0
                w.write_samples(eeg, x, t)
                eeg_parts.append(x)
                eeg_times.append(t)
            else:
                x = rng.standard_normal((n, 3))
                t = np.sort(t_aux + rng.random(n))
                t_aux += 1.0
                w.write_samples(aux, x, t)
                aux_parts.append(x)
                aux_times.append(t)
            if k % 40 == 0:
                offsets.append((50.0 + k, -0.001 * k))
                w.write_clock_offset(eeg, *offsets[-1])

    streams, _ = load(path)
    e, a = streams["EEG"], streams["Aux"]
    np.testing.assert_array_equal(e["time_series"], np.concatenate(eeg_parts))
    np.testing.assert_array_equal(e["time_stamps"], np.concatenate(eeg_times))
    np.testing.assert_array_equal(a["time_series"], np.concatenate(aux_parts))
    np.testing.assert_array_equal(a["time_stamps"], np.concatenate(aux_times))
    assert e["clock_times"] == [t for t, _ in offsets]
    assert e["clock_values"] == [v for _, v in offsets]
    assert a["clock_times"] == []
    assert int(e["footer"]["info"]["sample_count"][0]) == len(e["time_stamps"])
    assert int(a["footer"]["info"]["sample_count"][0]) == len(a["time_stamps"])
    footer_offsets = e["footer"]["info"]["clock_offsets"][0]["offset"]
    assert [(float(o["time"][0]), float(o["value"][0])) for o in footer_offsets] == offsets


def test_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "rec.xdf"
    n_threads, n_chunks = 4, 100
    with XdfWriter(path) as w:
        ids = [w.add_stream(f"S{i}", "EEG", 4, 100.0, channel_format="int32") for i in range(n_threads)]

        def run(i: int) -> None:
            for k in range(n_chunks):
                idx = np.arange(k * 5, k * 5 + 5)
                w.write_samples(ids[i], (idx[:, None] * 10 + i).repeat(4, axis=1), idx / 100.0)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    streams, _ = load(path)
    idx = np.arange(n_chunks * 5)
    for i in range(n_threads):
        expected = (idx[:, None] * 10 + i).repeat(4, axis=1)
        np.testing.assert_array_equal(streams[f"S{i}"]["time_series"], expected)


# ---------------------------------------------------------------------------------------- crash safety

CHILD = r"""
import sys, time
import numpy as np
from bci_dream.io.xdf_writer import XdfWriter

w = XdfWriter(sys.argv[1], boundary_interval_s=0.25, fsync_interval_s=0.2)
eeg = w.add_stream("KilledEEG", "EEG", 16, 250.0, channel_labels=[f"ch{i}" for i in range(16)],
                   channel_units="microvolts")
mk = w.add_stream("KilledMarkers", "Markers", 1, 0.0, channel_format="string")
offsets = np.arange(16) / 100.0
n = m = 0
while True:
    idx = np.arange(n, n + 10)
    w.write_samples(eeg, (idx[:, None] + offsets).astype(np.float32), idx / 250.0)
    n += 10
    if n % 50 == 0:
        w.write_strings(mk, [f"marker {m}"], [n / 250.0])
        m += 1
    print(n, m, flush=True)
    time.sleep(0.004)
"""


def expected_eeg(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    return (idx[:, None] + np.arange(16) / 100.0).astype(np.float32), idx / 250.0


def test_sigkill_mid_recording_leaves_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.xdf"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env,
    )
    watchdog = threading.Timer(30.0, proc.kill)
    watchdog.start()
    try:
        reported_n = reported_m = 0
        assert proc.stdout is not None
        while reported_n < 3 * 250:  # ~3 s of data at 250 Hz
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"recorder exited early with code {proc.wait()}: {err}")
            reported_n, reported_m = map(int, line.split())
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    assert trim_to_whole_chunks(path) == 0  # the kill left only whole chunks
    streams, _ = load(path)
    eeg, markers = streams["KilledEEG"], streams["KilledMarkers"]
    n = len(eeg["time_stamps"])
    assert n >= reported_n
    assert n % 10 == 0
    samples, stamps = expected_eeg(n)
    np.testing.assert_array_equal(bits(eeg["time_series"]), bits(samples))
    np.testing.assert_array_equal(eeg["time_stamps"], stamps)
    assert channels(eeg, "label") == [f"ch{i}" for i in range(16)]
    m = len(markers["time_stamps"])
    assert m >= reported_m
    assert markers["time_series"] == [[f"marker {k}"] for k in range(m)]
    np.testing.assert_array_equal(markers["time_stamps"], (np.arange(m) + 1) * 50 / 250.0)
    assert "footer" not in eeg and "footer" not in markers


def test_trim_repairs_a_torn_last_chunk(tmp_path: Path) -> None:
    path = tmp_path / "torn.xdf"
    with XdfWriter(path) as w:
        sid = w.add_stream("S", "EEG", 2, 10.0)
        w.write_samples(sid, np.ones((3, 2), np.float32), np.arange(3.0))
        w.write_clock_offset(sid, 1.0, 0.5)
    data = path.read_bytes()
    offset_chunk = b"\x01\x16\x04\x00" + struct.pack("<Idd", 1, 1.0, 0.5)
    cut = data.index(offset_chunk) + 10  # inside the ClockOffset chunk
    path.write_bytes(data[:cut])
    with pytest.raises(Exception):  # pyxdf itself cannot read a file torn inside a ClockOffset chunk
        load(path)
    assert trim_to_whole_chunks(path) == 10
    streams, _ = load(path)
    np.testing.assert_array_equal(streams["S"]["time_series"], np.ones((3, 2)))
    assert "footer" not in streams["S"]


# ---------------------------------------------------------------------------- errors and life cycle


def test_missing_folder_raises_recording_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(RecordingError) as e:
        XdfWriter(missing / "rec.xdf")
    message = str(e.value)
    assert "\n" not in message
    assert str(missing) in message and "does not exist" in message


def test_folder_as_path_raises_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="is a folder"):
        XdfWriter(tmp_path)


def test_unwritable_folder_raises_recording_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    # root ignores folder permissions; sysfs refuses new files even to root
    target = folder if not os.access(folder, os.W_OK) else Path("/sys")
    try:
        with pytest.raises(RecordingError, match="not writable") as e:
            XdfWriter(target / "rec.xdf")
        assert "\n" not in str(e.value)
    finally:
        folder.chmod(0o700)


def test_bad_chunks_raise_chunk_error(tmp_path: Path) -> None:
    with XdfWriter(tmp_path / "rec.xdf") as w:
        sid = w.add_stream("EEG", "EEG", 4, 250.0)
        mk = w.add_stream("Markers", "Markers", 1, 0.0, channel_format="string")
        with pytest.raises(ChunkError, match="has 4 channels") as e:
            w.write_samples(sid, np.zeros((10, 3), np.float32), np.zeros(10))
        assert "\n" not in str(e.value)
        with pytest.raises(ChunkError, match="timestamps"):
            w.write_samples(sid, np.zeros((10, 4), np.float32), np.zeros(9))
        with pytest.raises(ChunkError, match="finite"):
            w.write_samples(sid, np.zeros((1, 4), np.float32), np.array([np.nan]))
        with pytest.raises(ChunkError, match="write_strings"):
            w.write_samples(mk, np.zeros((1, 1)), np.zeros(1))
        with pytest.raises(ChunkError, match="write_samples"):
            w.write_strings(sid, ["x"], [1.0])
        with pytest.raises(ChunkError, match="1 string channels"):
            w.write_strings(mk, [["a", "b"]], [1.0])
        with pytest.raises(ChunkError, match="no stream 9"):
            w.write_samples(9, np.zeros((1, 4)), np.zeros(1))
        with pytest.raises(RecordingError, match="channel format"):
            w.add_stream("X", "EEG", 2, 100.0, channel_format="float16")
        with pytest.raises(RecordingError, match="3 channel labels given for 2 channels"):
            w.add_stream("X", "EEG", 2, 100.0, channel_labels=["a", "b", "c"])
    streams, _ = load(tmp_path / "rec.xdf")
    assert len(streams["EEG"]["time_stamps"]) == 0
    assert int(streams["EEG"]["footer"]["info"]["sample_count"][0]) == 0


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    path = tmp_path / "rec.xdf"
    w = XdfWriter(path)
    sid = w.add_stream("S", "EEG", 1, 1.0)
    w.write_samples(sid, np.ones((2, 1), np.float32), np.array([1.0, 2.0]))
    w.close()
    size = path.stat().st_size
    w.close()
    assert w.closed and path.stat().st_size == size
    with pytest.raises(RecordingError, match="closed"):
        w.write_samples(sid, np.ones((1, 1), np.float32), np.array([3.0]))
    streams, _ = load(path)
    assert streams["S"]["footer"]["info"]["last_timestamp"] == ["2.0"]


def test_failed_write_is_cut_back_to_whole_chunks(tmp_path: Path) -> None:
    path = tmp_path / "full.xdf"
    w = XdfWriter(path)
    sid = w.add_stream("S", "EEG", 2, 10.0)
    w.write_samples(sid, np.ones((3, 2), np.float32), np.arange(3.0))
    real_file = w._file

    class DiskFull:
        """Writes half of what it is given, then fails like a full disk."""

        def __getattr__(self, name: str) -> object:
            return getattr(real_file, name)

        def write(self, data: memoryview) -> int:
            real_file.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    w._file = DiskFull()  # type: ignore[assignment]
    with pytest.raises(RecordingError, match="No space left on device"):
        w.write_samples(sid, np.zeros((50, 2), np.float32), np.arange(3.0, 53.0))
    with pytest.raises(RecordingError, match="stopped after a write error"):
        w.write_samples(sid, np.zeros((1, 2), np.float32), np.array([60.0]))
    w._file = real_file
    w.close()
    assert trim_to_whole_chunks(path) == 0
    streams, _ = load(path)
    np.testing.assert_array_equal(streams["S"]["time_series"], np.ones((3, 2)))
