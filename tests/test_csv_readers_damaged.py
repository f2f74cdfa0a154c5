"""Damaged Muse and BrainFlow CSV files, made from the real shared recordings: what is kept, what is dropped,
and the one line that says so. No library warning may reach the user (warnings are errors here)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bci_dream.core.errors import RecordingError
from bci_dream.io.readers import read_recording
from bci_dream.io.recording import Recording

MUSE = "muse-lsl/N170/data_2017-09-13-15.30.01.csv"
BRAINFLOW = "brainflow/test_data.csv"

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def muse_lines(shared_data) -> list[str]:
    """The real muselsl file's lines (header first), without line ends."""
    return (shared_data / MUSE).read_text().splitlines()


@pytest.fixture(scope="module")
def muse_ref(shared_data) -> Recording:
    return read_recording(shared_data / MUSE)


@pytest.fixture(scope="module")
def bf_lines(shared_data) -> list[str]:
    return (shared_data / BRAINFLOW).read_text().splitlines()


@pytest.fixture(scope="module")
def bf_ref(shared_data) -> Recording:
    return read_recording(shared_data / BRAINFLOW)


def _write(tmp_path: Path, name: str, lines: list[str], end: str = "\n") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + end)
    return path


def _one_line(caplog, level: int, text: str) -> str:
    """The single log record at ``level`` that contains ``text``; it must be one line."""
    found = [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]
    assert len(found) == 1, [r.getMessage() for r in caplog.records]
    assert "\n" not in found[0]
    return found[0]


def _no_warnings(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _error(path: Path, match: str) -> str:
    with pytest.raises(RecordingError, match=match) as info:
        read_recording(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _onsets(rec: Recording) -> list[tuple[float, str]]:
    return [(m.timestamp, m.text) for m in rec.markers]


# --- Muse (muselsl) -------------------------------------------------------------------------------------------

def test_muse_unix_milliseconds_become_seconds(tmp_path, muse_lines, muse_ref, caplog):
    rows = [f"{float(ln.split(',', 1)[0]) * 1000:.0f}," + ln.split(",", 1)[1] for ln in muse_lines[1:]]
    caplog.set_level(logging.INFO, logger="bci_dream")
    rec = read_recording(_write(tmp_path, "muse_ms.csv", muse_lines[:1] + rows))
    assert rec.sfreq == 256.0 and rec.n_samples == muse_ref.n_samples == 30732
    np.testing.assert_allclose(rec.times, muse_ref.times, atol=1e-6)
    np.testing.assert_array_equal(rec.data, muse_ref.data)
    assert [t for t, _ in _onsets(rec)] == pytest.approx([t for t, _ in _onsets(muse_ref)], abs=1e-6)
    assert [s for _, s in _onsets(rec)] == [s for _, s in _onsets(muse_ref)] and len(rec.markers) == 197
    assert rec.info["timestamp_unit"] == "ms"
    assert "256 Hz" in _one_line(caplog, logging.INFO, "milliseconds")
    _no_warnings(caplog)


def test_muse_timestamps_in_no_plausible_unit(tmp_path, muse_lines):
    rows = [f"{float(ln.split(',', 1)[0]) * 1e6:.0f}," + ln.split(",", 1)[1] for ln in muse_lines[1:2000]]
    _error(_write(tmp_path, "muse_us.csv", muse_lines[:1] + rows), "neither an EEG sampling rate")


def test_muse_truncated_last_row_is_dropped(tmp_path, muse_lines, muse_ref, caplog):
    caplog.set_level(logging.INFO, logger="bci_dream")
    path = _write(tmp_path, "muse_trunc.csv", muse_lines[:5000] + [muse_lines[5000][:10]], end="")
    rec = read_recording(path)
    assert rec.n_samples == 4999 and rec.sfreq == 256.0
    np.testing.assert_array_equal(rec.data, muse_ref.data[:4999])
    np.testing.assert_array_equal(rec.times, muse_ref.times[:4999])
    assert _onsets(rec) == [m for m in _onsets(muse_ref) if m[0] <= muse_ref.times[4998]]
    message = _one_line(caplog, logging.WARNING, "dropped 1 row(s)")
    assert "muse_trunc.csv" in message and "7 fields" in message


def test_muse_blank_cells_kept_as_nan_and_bad_timestamps_dropped(tmp_path, muse_lines, muse_ref, caplog):
    lines = list(muse_lines)
    for i in range(2001, 2101):  # 100 samples with blank / non-numeric EEG cells, timestamps intact
        lines[i] = lines[i].split(",")[0] + ",nan,,x,  ,1.0,0"
    lines[3001] = "oops," + lines[3001].split(",", 1)[1]  # a timestamp that is not a number
    lines[3002] = "," + lines[3002].split(",", 1)[1]  # a blank timestamp
    caplog.set_level(logging.INFO, logger="bci_dream")
    rec = read_recording(_write(tmp_path, "muse_nans.csv", lines))
    keep = np.ones(muse_ref.n_samples, bool)
    keep[[3000, 3001]] = False
    assert rec.n_samples == muse_ref.n_samples - 2 and rec.sfreq == 256.0
    np.testing.assert_array_equal(rec.times, muse_ref.times[keep])
    nan_rows = np.isnan(rec.data).any(axis=1)
    assert np.flatnonzero(nan_rows).tolist() == list(range(2000, 2100))
    assert np.isnan(rec.data[2000:2100]).all()
    np.testing.assert_array_equal(rec.data[~nan_rows], muse_ref.data[keep][~nan_rows])
    dropped_times = set(muse_ref.times[[3000, 3001]].tolist())
    assert _onsets(rec) == [m for m in _onsets(muse_ref) if m[0] not in dropped_times]
    assert "100 row(s)" in _one_line(caplog, logging.WARNING, "NaN")
    assert "kept the other 30730" in _one_line(caplog, logging.WARNING, "dropped 2 row(s) whose timestamp")


def test_muse_header_only_says_no_samples(tmp_path, muse_lines, caplog):
    caplog.set_level(logging.INFO, logger="bci_dream")
    _error(_write(tmp_path, "muse_header.csv", muse_lines[:1]), "holds no samples")
    _no_warnings(caplog)


def test_muse_nothing_usable_is_one_error(tmp_path, muse_lines):
    cut = [ln[:10] for ln in muse_lines[1:50]]  # every row truncated
    _error(_write(tmp_path, "muse_cut.csv", muse_lines[:1] + cut), "the file is damaged")
    blank = [ln.split(",")[0] + ",,,,,," for ln in muse_lines[1:50]]
    _error(_write(tmp_path, "muse_blank.csv", muse_lines[:1] + blank), "no readable samples")


# --- Muse (Mind Monitor) --------------------------------------------------------------------------------------

MIND_MONITOR_HEADER = ("TimeStamp,Delta_TP9,Delta_AF7,Delta_AF8,Delta_TP10,RAW_TP9,RAW_AF7,RAW_AF8,RAW_TP10,AUX_RIGHT,"
                       "Accelerometer_X,HeadBandOn,Battery,Elements")


def _mind_monitor(muse_lines: list[str], n: int) -> tuple[list[str], list[tuple[float, str]]]:
    """The real recording's first ``n`` samples in Mind Monitor's layout (date-times, ms resolution), its markers
    as ``/Marker/N`` element rows (no RAW values) and one blink; returns the lines and the expected markers
    (seconds since the first row, text)."""
    start = datetime(2023, 1, 1, 10, 0, 0)
    t0 = float(muse_lines[1].split(",")[0])
    lines, expected = [MIND_MONITOR_HEADER], []
    for i, ln in enumerate(muse_lines[1:n + 1]):
        t, tp9, af7, af8, tp10, aux, marker = ln.split(",")
        stamp = start + timedelta(seconds=round(float(t) - t0, 3))
        text = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        lines.append(f"{text},0.5,0.4,0.3,0.2,{tp9},{af7},{af8},{tp10},{aux},0.01,1,80,")
        if float(marker):
            lines.append(f"{text},,,,,,,,,,,,,/Marker/{float(marker):g}")
            expected.append(((stamp - start).total_seconds(), f"{float(marker):g}"))
        if i == 100:
            lines.append(f"{text},,,,,,,,,,,,,/muse/elements/blink")
            expected.append(((stamp - start).total_seconds(), "/muse/elements/blink"))
    return lines, sorted(expected)


def test_mind_monitor_export_is_read(tmp_path, muse_lines, muse_ref, caplog):
    lines, expected = _mind_monitor(muse_lines, 5000)
    caplog.set_level(logging.INFO, logger="bci_dream")
    rec = read_recording(_write(tmp_path, "mindMonitor_2023-01-01.csv", lines))
    assert rec.source_format == "mind-monitor-csv"
    assert rec.ch_names == ("TP9", "AF7", "AF8", "TP10") and rec.sfreq == 256.0
    np.testing.assert_array_equal(rec.data, muse_ref.data[:5000])
    np.testing.assert_allclose(rec.times, muse_ref.times[:5000] - muse_ref.times[0], atol=6e-4)
    assert rec.times[0] == 0.0 and rec.info["start"] == "2023-01-01 10:00:00.000"
    assert [t for t, _ in _onsets(rec)] == pytest.approx([t for t, _ in expected], abs=1e-9)
    assert [s for _, s in _onsets(rec)] == [s for _, s in expected]
    assert sum(s in ("1", "2") for _, s in expected) == 32
    _no_warnings(caplog)


def test_mind_monitor_without_raw_eeg_is_one_error(tmp_path, muse_lines):
    lines, _ = _mind_monitor(muse_lines, 300)
    every_second = lines[:1] + lines[1::256]  # 'Recording Interval: 1 second'
    _error(_write(tmp_path, "mm_1s.csv", every_second), "Recording Interval")
    no_raw = [",".join(c for j, c in enumerate(ln.split(",")) if j not in (5, 6, 7, 8)) for ln in lines]
    _error(_write(tmp_path, "mm_bands.csv", no_raw), "without RAW_ EEG columns")


# --- BrainFlow ------------------------------------------------------------------------------------------------

def test_brainflow_truncated_last_row_is_dropped(tmp_path, bf_lines, bf_ref, caplog):
    caplog.set_level(logging.INFO, logger="bci_dream")
    path = _write(tmp_path, "bf_trunc.csv", bf_lines[:1000] + [bf_lines[1000][: len(bf_lines[1000]) // 3]], end="")
    rec = read_recording(path)
    assert rec.n_samples == 1000 and rec.sfreq == 250.0 and rec.n_channels == 16
    np.testing.assert_array_equal(rec.data, bf_ref.data[:1000])
    np.testing.assert_array_equal(rec.times, bf_ref.times[:1000])
    assert rec.info["dropped_rows"] == 1
    assert "32 fields" in _one_line(caplog, logging.WARNING, "dropped 1 row(s)")


def test_brainflow_blank_cells_and_bad_timestamps(tmp_path, bf_lines, bf_ref, caplog):
    lines = [ln.split("\t") for ln in bf_lines]
    for i in range(10, 20):
        lines[i][3] = ""  # a blank EEG cell (row 3 is EEG channel 3)
    lines[50][30] = "n/a"  # the timestamp row
    lines[51][30] = ""
    caplog.set_level(logging.INFO, logger="bci_dream")
    rec = read_recording(_write(tmp_path, "bf_nans.csv", ["\t".join(r) for r in lines]))
    keep = np.ones(bf_ref.n_samples, bool)
    keep[[50, 51]] = False
    assert rec.n_samples == bf_ref.n_samples - 2 and rec.sfreq == 250.0
    np.testing.assert_array_equal(rec.times, bf_ref.times[keep])
    assert np.isnan(rec.data[10:20, 2]).all() and np.isfinite(np.delete(rec.data, range(10, 20), axis=0)).all()
    np.testing.assert_array_equal(np.nan_to_num(rec.data[:, 3:]), bf_ref.data[keep][:, 3:])
    assert "10 row(s)" in _one_line(caplog, logging.WARNING, "NaN")
    assert "kept the other 2500" in _one_line(caplog, logging.WARNING, "dropped 2 row(s) whose timestamp")


def test_brainflow_nothing_usable_is_one_error(tmp_path, bf_lines):
    garbage = ["\t".join("x" * 32) for _ in range(5)]
    path = _write(tmp_path, "bf_garbage.csv", [bf_lines[0][:8]] + garbage)
    from bci_dream.io.brainflow_csv import read_brainflow_csv  # (the sniffer would not call this a BrainFlow file)

    with pytest.raises(RecordingError, match="no readable samples") as info:
        read_brainflow_csv(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_muse_csv_with_semicolons_or_a_time_column_reads_as_the_original(tmp_path, muse_lines, muse_ref, caplog):
    """A spreadsheet's re-save (``;`` between columns) and a first column called ``time`` read the same samples."""
    semicolons = _write(tmp_path, "semicolons.csv", [line.replace(",", ";") for line in muse_lines])
    renamed = _write(tmp_path, "time.csv", ["time" + muse_lines[0][len("timestamps"):], *muse_lines[1:]])
    for path in (semicolons, renamed):
        rec = read_recording(path)
        np.testing.assert_array_equal(rec.data, muse_ref.data)
        assert rec.sfreq == muse_ref.sfreq and len(rec.markers) == len(muse_ref.markers)
    _no_warnings(caplog)
