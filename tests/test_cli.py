"""The bci-dream command, run as a user runs it: real subprocesses, real files, one-line errors."""

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import pyxdf

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bci_dream.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bci-dream: error:")]
    assert len(errors) == 1, proc.stderr
    assert re.search(pattern, errors[0]), errors[0]


def test_devices_lists_every_profile():
    proc = run("devices")
    assert proc.returncode == 0
    for name in ("synthetic", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s", "playback", "lsl"):
        assert any(line.startswith(name + " ") for line in proc.stdout.splitlines()), name
    assert "--serial-port" in proc.stdout


def test_wheel_ships_the_device_profiles(tmp_path):
    hatchling_wheel = pytest.importorskip("hatchling.builders.wheel")
    builder = hatchling_wheel.WheelBuilder(str(REPO))
    wheel = next(builder.build(directory=str(tmp_path), versions=["standard"]))
    names = zipfile.ZipFile(wheel).namelist()
    for profile in (REPO / "devices").glob("*.toml"):
        assert f"bci_dream/_data/devices/{profile.name}" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert "bci_dream/acquisition/lsl_api.cfg" in names  # (liblsl's quiet settings)


def test_stream_prints_status_every_second():
    proc = run("stream", "--device", "synthetic", "--seconds", "3.5")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "rate" in line]
    assert len(lines) == 3
    assert "streaming" in lines[-1] and "/250 Hz" in lines[-1] and "dropped 0" in lines[-1]
    assert "latency" in lines[-1] and "quality" in lines[-1]


def test_record_then_replay(tmp_path):
    out = tmp_path / "rec.xdf"
    proc = run("record", "--device", "synthetic", "-o", str(out), "--seconds", "2.5")
    assert proc.returncode == 0, proc.stderr
    streams, _ = pyxdf.load_xdf(str(out))
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    n = eeg["time_series"].shape[0]
    assert n > 400
    proc = run("replay", str(out), "--speed", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"replayed {n} samples" in proc.stdout and "lost 0, duplicated 0" in proc.stdout


def test_replay_real_recording_at_speed(shared_data):
    proc = run("replay", str(shared_data / "bci-essentials/ssvep_example.xdf"), "--speed", "40")
    assert proc.returncode == 0, proc.stderr
    assert "'DSI7' 8 channels" in proc.stdout
    assert "replayed 33002 samples and 258 markers" in proc.stdout


@pytest.mark.parametrize("args,pattern", [
    (["stream", "--device", "nope"], r"unknown device 'nope'; known devices: .*synthetic"),
    (["stream", "--device", "cyton", "--serial-port", "/dev/ttyDOESNOTEXIST"], r"serial port /dev/ttyDOESNOTEXIST does not exist"),
    (["stream", "--device", "cyton"], r"device 'cyton' needs --serial-port"),
    (["stream", "--device", "playback", "--file", "/nonexistent.csv"], r"does not exist"),
    (["stream", "--device", "lsl", "--stream-name", "no-such-stream-xyz", "--timeout", "1"], r"no LSL stream .*no-such-stream-xyz"),
    (["replay", "/nonexistent/file.xdf"], r"does not exist"),
])
def test_bad_input_gives_one_clear_line(args, pattern):
    assert_one_line_error(run(*args), pattern)


def test_bad_recordings_give_one_clear_line(tmp_path, shared_data):
    junk = tmp_path / "junk.xdf"
    junk.write_text("not an xdf file")
    assert_one_line_error(run("replay", str(junk)), "is not an XDF file")
    assert_one_line_error(run("replay", str(shared_data / "bci4als/empty_eeg_stream.xdf")), "holds no samples")
    existing = tmp_path / "exists.xdf"
    existing.write_bytes(b"precious")
    assert_one_line_error(run("record", "--device", "synthetic", "-o", str(existing), "--seconds", "1"),
                          "already exists")
    assert existing.read_bytes() == b"precious"
    assert_one_line_error(run("record", "--device", "synthetic", "-o", str(tmp_path), "--seconds", "1"),
                          "is a folder: give the file to record to")
    assert_one_line_error(run("record", "--device", "synthetic", "-o", str(existing / "r.xdf"), "--seconds", "1"),
                          "exists.xdf is a file, not a folder")


def test_every_shared_recording_replays_without_a_traceback(shared_data):
    for path in sorted(shared_data.rglob("*.xdf")):
        proc = run("replay", str(path), "--speed", "0")
        assert "Traceback" not in proc.stderr, path
        if proc.returncode == 1:
            assert_one_line_error(proc, r"\S")
        else:
            assert proc.returncode == 0, (path, proc.stderr)


def test_nan_and_timestamp_jumps_are_reported_and_give_exit_status_3(tmp_path):
    import numpy as np

    from bci_dream.io.xdf_writer import XdfWriter

    path = tmp_path / "bad.xdf"
    n = 2500
    data = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    data[100:110, 2] = np.nan
    data[200, 1] = np.inf
    ts = np.arange(n) / 250.0
    ts[1500:] += 5.0  # the amplifier dropped out for 5 s
    with XdfWriter(path) as w:
        sid = w.add_stream("EEG", "EEG", 4, 250.0, channel_labels=["Fz", "Cz", "Pz", "Oz"])
        w.write_samples(sid, data, ts)
    proc = run("replay", str(path), "--speed", "0")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "11 NaN or infinite values" in proc.stderr and "1 timestamp jumps" in proc.stderr
    assert f"replayed {n} samples" in proc.stdout


def test_an_output_path_the_system_refuses_is_one_line_and_leaves_nothing_behind(tmp_path, shared_data):
    """An output that is a folder (or under a file) is refused by the system itself: one line naming the path and
    what to do, exit status 1, no temporary file left (make-pairs writes its manifest atomically)."""
    muse = shared_data / "muse-lsl"
    (tmp_path / "pairs").mkdir()
    args = ["make-pairs", str(muse / "N170/data_2017-09-13-15.30.01.csv"), "--class",
            f"1={muse / 'stim_face_house/houses'}", "--round-robin", "-o"]
    assert_one_line_error(run(*args, str(tmp_path / "pairs")), r"Is a directory: .*pairs; choose another path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]


def test_a_second_ctrl_c_while_closing_is_held():
    """While the recording closes, SIGINT is ignored (a second Ctrl-C would cut the file's footers off); the
    handler is back afterwards."""
    import os
    import signal

    from bci_dream.commands.common import interrupts_held

    before = signal.getsignal(signal.SIGINT)
    with interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)  # (no KeyboardInterrupt)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before


def test_liblsl_keeps_its_log_lines_to_itself_unless_the_user_configured_it(tmp_path, monkeypatch):
    """liblsl's own INFO lines do not reach the terminal; a user's lsl_api.cfg (network settings) is left in force."""
    from bci_dream.acquisition.lsl_config import QUIET_CONFIG, quiet_liblsl

    proc = run("stream", "--device", "lsl", "--stream-name", "no-such-stream-quiet", "--timeout", "1")
    assert proc.returncode == 1 and "INFO|" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LSLAPICFG", raising=False)
    (tmp_path / "lsl_api.cfg").write_text("[lab]\nKnownPeers = {10.0.0.2}\n")
    assert not quiet_liblsl() and "LSLAPICFG" not in os.environ
    (tmp_path / "lsl_api.cfg").unlink()
    monkeypatch.setenv("HOME", str(tmp_path))  # (no ~/lsl_api/lsl_api.cfg either)
    if not Path("/etc/lsl_api/lsl_api.cfg").is_file():
        assert quiet_liblsl() and os.environ["LSLAPICFG"] == str(QUIET_CONFIG) and QUIET_CONFIG.is_file()
