"""The desktop app, offscreen (pytest-qt), on BrainFlow's real synthetic board and real recordings.

The diffusion model is the tiny random-weight one on the CPU (no GPU here).
"""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6 import QtCore  # noqa: E402

from bci_dream.gui.main_window import AppOptions, MainWindow  # noqa: E402
from bci_dream.gui.trace_panel import TracePanel  # noqa: E402
from bci_dream.runtime.engine import Frame, FrameRecord  # noqa: E402


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    windows = []

    def make(**options) -> MainWindow:
        options.setdefault("model", "tiny")
        options.setdefault("gpu", "cpu")
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        window = MainWindow(AppOptions(**options), settings=settings)
        qtbot.addWidget(window)
        window.resize(1200, 700)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


def test_window_opens_on_the_synthetic_board_traces_move_and_images_arrive(make_window, qtbot):
    window = make_window(device="synthetic")
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    qtbot.waitUntil(lambda: window.traces.frames_drawn > 5, timeout=10000)
    first = window.live.pipeline.raw.total_written
    drawn = window.traces.frames_drawn
    qtbot.wait(1000)
    assert window.live.pipeline.raw.total_written > first and window.traces.frames_drawn > drawn
    qtbot.waitUntil(lambda: window.frames_received >= 2, timeout=60000)
    assert window.images.images_shown >= 2 and window.images.current.size == (256, 256)
    assert "untrained preview model" in window.images.label.text()
    qtbot.wait(STATUS_WAIT_MS)
    assert window.state_label.text() == "streaming" and "images/s" in window.image_label.text()
    from bci_dream.gui.spectrum_panel import FMAX, FMIN, SpectrumPanel

    spectrum = window.panel(SpectrumPanel)  # (the synthetic board's spectrum, from its raw ring buffer)
    n_channels = window.live.pipeline.info.n_channels  # (16: two channels to each of the 8 colours' curves)
    assert len(spectrum.curves) == 8 and len(spectrum.curves[0].getData()[0]) == 2 * len(spectrum.freqs)
    assert spectrum.psd.shape == (n_channels, len(spectrum.freqs)) and len(spectrum.freqs) > 50
    freqs, log_power = spectrum.channel_curve(15)
    np.testing.assert_allclose(log_power, np.log10(np.maximum(spectrum.psd[15], 1e-12)))
    assert spectrum.freqs[0] >= FMIN and spectrum.freqs[-1] <= FMAX and np.isfinite(spectrum.psd).all()
    assert not window.errors


STATUS_WAIT_MS = 700


def test_the_app_generates_on_the_ip_adapter_route_of_its_model(make_window, qtbot):
    """'bci-dream app --model tiny-sdxl-ip': the model's own route (its untrained preview, built locally)."""
    window = make_window(device="synthetic", model="tiny-sdxl-ip")
    qtbot.waitUntil(lambda: window.frames_received >= 2, timeout=90000)
    assert window.engine.route.route == "ip-adapter" and window.images.images_shown >= 2
    assert "route ip-adapter · empty prompt" in window.model_label.text() and not window.errors
    from bci_dream.gui.settings_dialog import Settings, SettingsDialog

    new = Settings(route="ip-adapter", ip_adapter_scale=0.5, bank_k=3, bank_temperature=0.2)
    assert SettingsDialog(new).settings() == new  # the route's fields show and come back
    window.apply_settings(new)  # a new strength: the diffusion model is loaded again with it
    qtbot.waitUntil(lambda: window.engine is not None and window.generator.ip_adapter_scale == 0.5, timeout=90000)
    assert window.engine.route.k == 3
    window.creative_panel.prompt.setText("a red cat")  # the creative panel's prompt goes beside the image embedding
    window.creative_panel.prompt.returnPressed.emit()
    qtbot.waitUntil(lambda: window.creative.prompt == "a red cat", timeout=30000)
    qtbot.waitUntil(lambda: "100% 'a red cat'" in window.creative_panel.weights.text(), timeout=30000)
    assert not window.errors


def test_record_then_replay_through_the_controls(make_window, qtbot, tmp_path):
    import pyxdf

    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    path = tmp_path / "session.xdf"
    window.start_recording(path)
    assert window.record_action.isChecked()
    qtbot.wait(2000)
    qtbot.waitUntil(lambda: "REC" in window.record_label.text(), timeout=3000)
    summary = window.stop_recording()
    assert summary is not None and summary.samples > 250 and not window.record_action.isChecked()
    streams, _ = pyxdf.load_xdf(str(path))
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    assert len(eeg["time_stamps"]) == summary.samples

    window.open_replay(path, speed=1.0)
    qtbot.waitUntil(lambda: window.live is not None and window.options.replay == path
                    and window.live.pipeline.raw.total_written > 100, timeout=15000)
    replayed = window.live.pipeline.raw.latest(100).data
    assert np.isfinite(replayed).all() and replayed.std() > 0


@pytest.mark.parametrize("rel, n_channels", [("bci-essentials/ssvep_example.xdf", 8),
                                               ("mne-python/brainvision/tests/data/test.vhdr", 26)])
def test_a_real_recording_replays_with_its_markers(make_window, qtbot, shared_data, rel, n_channels):
    """An .xdf, and a recording in another lab's format (BrainVision): the traces run and its markers show."""
    window = make_window(replay=shared_data / rel, speed=8.0 if rel.endswith(".xdf") else 1.0, generate=False)
    qtbot.waitUntil(lambda: window.live is not None and window.live.pipeline.markers.total_written > 0,
                    timeout=30000)
    qtbot.waitUntil(lambda: len(window.traces.visible_markers()) > 0, timeout=5000)
    assert window.live.info.n_channels == n_channels and not window.errors


def test_an_unreadable_replay_and_a_checkpoint_for_another_model_are_said_in_one_line(make_window, qtbot,
                                                                                        tmp_path):
    bad = tmp_path / "broken.xdf"
    bad.write_bytes(b"not an xdf file at all")
    window = make_window(replay=bad, generate=False)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=10000)
    assert window.live is None and "\n" not in window.errors[0] and "broken.xdf" in window.errors[0]

    from bci_dream.models.checkpoint import save_checkpoint
    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset

    ckpt = tmp_path / "other"
    save_checkpoint(ckpt, EegModel(EegModelConfig(preset("tiny"), cross_attention_dim=768, clip_projection_dim=None)))
    window.options.replay = None
    window.connect_source()
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    window.start_generation()
    qtbot.waitUntil(lambda: window.engine is not None, timeout=60000)
    n_errors = len(window.errors)
    window.open_checkpoint(ckpt)  # (loaded on a worker thread)
    qtbot.waitUntil(lambda: len(window.errors) > n_errors, timeout=30000)
    assert "768" in window.errors[-1] and "1024" in window.errors[-1]
    assert window.options.checkpoint is None  # back to the model it had
    assert window.engine is not None  # still generating with the model it had


def test_settings_are_remembered(make_window, qtbot):
    window = make_window(device="synthetic", generate=False, connect=False)
    window.panel(TracePanel).span_box.setValue(4)
    window.panel(TracePanel).scale_box.setValue(250)
    window.close()
    again = make_window(device="synthetic", generate=False, connect=False)
    assert again.panel(TracePanel).span_box.value() == 4 and again.panel(TracePanel).scale_box.value() == 250
    assert again.traces.span_s == 4


def test_the_app_without_a_display_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli"], capture_output=True, text=True, timeout=60,
                          env=env, check=False)
    assert proc.returncode == 1 and "no display" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 60


LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
"""


def test_missing_qt_system_libraries_are_named_with_their_packages(monkeypatch):
    from bci_dream.gui import system_check

    assert system_check.not_found_in_ldd_output(LDD_OUTPUT) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(system_check, "missing_xcb_libraries", lambda: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    line = system_check.display_error()
    assert "libxcb-icccm.so.4" in line and "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in line
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert system_check.display_error() is None  # (a platform chosen on purpose is not second-guessed)


def test_a_display_qt_cannot_use_is_one_line_not_a_core_dump():
    """Real: a DISPLAY nothing listens on, Qt's own platform plugin; on a machine that lacks the xcb libraries
    (this one does) the line names them and their packages, elsewhere it says the display does not answer.
    Either way Qt is never asked, so it cannot abort the process."""
    from bci_dream.gui import system_check

    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DISPLAY"] = ":77"
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli", "app", "--no-generate"], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    missing = system_check.missing_xcb_libraries()
    expected = system_check.XCB_PACKAGES.get(missing[0], missing[0]) if missing else "does not answer"
    assert expected in proc.stderr and "cannot open the desktop app" in proc.stderr


def test_a_device_that_stalls_shows_it_and_recovers_while_recording(make_window, qtbot, tmp_path):
    from bci_dream.core.types import SourceState

    window = make_window(device="synthetic", generate=False,
                         source_options={"stall_timeout": 0.5, "reconnect_after": 0.3})
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    window.start_recording(tmp_path / "dropout.xdf")
    started = window.live.pipeline.raw.total_written
    qtbot.waitUntil(lambda: window.live.pipeline.raw.total_written > started + 250, timeout=10000)
    window.live.source.board.stop_stream()  # the "headset" goes quiet: BrainFlow's real board stops sending
    qtbot.waitUntil(lambda: SourceState.STALLED.value in window.state_history, timeout=5000)
    qtbot.waitUntil(lambda: window.live.source.reconnects == 1
                    and window.state_label.text() == SourceState.STREAMING.value, timeout=15000)
    n = window.live.pipeline.raw.total_written
    qtbot.waitUntil(lambda: window.live.pipeline.raw.total_written > n + 100, timeout=10000)
    summary = window.stop_recording()
    assert summary.samples >= n + 100 - started  # the recording went on across the dropout


def test_replay_controls_pause_seek_and_speed(make_window, qtbot, shared_data):
    window = make_window(replay=shared_data / "bci-essentials/ssvep_example.xdf", generate=False)
    qtbot.waitUntil(lambda: window.live is not None and window.live.pipeline.raw.total_written > 0, timeout=30000)
    qtbot.waitUntil(window.replay_bar.isVisible, timeout=2000)
    source = window.live.source
    window.pause_action.trigger()
    assert source.paused and window.pause_action.isChecked()
    window.seek(50.0)
    window.pause_action.trigger()
    assert not source.paused
    qtbot.waitUntil(lambda: source.position >= 50.0, timeout=5000)
    window.speed_box.setCurrentIndex(window.speed_box.findData(4.0))
    assert source.speed == 4.0
    qtbot.waitUntil(lambda: window.seek_slider.value() >= 500, timeout=2000)  # tenths of a second
    assert window.position_label.text().strip().endswith("/ 110.0 s")


def test_auto_scale_picks_a_1_2_5_value_from_the_signal(make_window, qtbot):
    from bci_dream.gui.traces import nice_scale

    assert [nice_scale(v) for v in (0.7, 1.0, 1.3, 3.0, 7.0, 180.0)] == [1.0, 1.0, 2.0, 5.0, 10.0, 200.0]
    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None and window.live.pipeline.raw.total_written > 300, timeout=15000)
    window.auto_scale()
    std = np.std(window.live.pipeline.filtered.latest(250).data, axis=0)
    assert window.panel(TracePanel).scale_box.value() == nice_scale(6 * float(np.median(std))) == window.traces.scale_uv


def test_a_serial_port_that_does_not_exist_is_said_and_the_app_stays_usable(make_window, qtbot):
    window = make_window(device="cyton", params={"serial_port": "/dev/ttyNOPE42"}, generate=False)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=20000)
    assert window.live is None and "/dev/ttyNOPE42" in window.errors[0] and "\n" not in window.errors[0]
    window.device_box.setCurrentIndex(window.device_box.findText("synthetic"))
    window.connect_device()
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)


def test_settings_apply_to_the_stream_and_the_engine_and_are_remembered(make_window, qtbot):
    from bci_dream.gui.settings_dialog import Settings, SettingsDialog

    window = make_window(device="synthetic")
    qtbot.waitUntil(lambda: window.engine is not None, timeout=60000)
    new = Settings(device_filters=False, bandpass_low=2.0, bandpass_high=30.0, notch=60.0, hop=0.5, seed=7,
                   similarity=0.9, interpolate=1)
    assert SettingsDialog(new).settings() == new  # the dialog shows and returns every field
    window.apply_settings(new)
    qtbot.waitUntil(lambda: window.engine is not None and window.live is not None
                    and window.live.pipeline.filter_settings.notch == 60.0, timeout=60000)
    assert window.live.pipeline.filter_settings.bandpass == (2.0, 30.0)
    assert window.engine.similarity_threshold == 0.9 and window.engine.interpolation_steps == 1
    assert window.generator.seed == 7
    assert Settings.load(window.settings) == new


def test_ctrl_c_closes_the_app(tmp_path):
    import signal

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "bci_dream.cli", "app", "--no-generate"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_a_signal_during_a_trace_refresh_closes_the_window_only_after_it(make_window, qtbot, monkeypatch):
    """Deterministic form of the race below: the Ctrl-C handler runs in the middle of a refresh of the traces
    (where Python may run it); the window is still whole until the refresh has returned, then it closes."""
    import signal

    from bci_dream.gui import app as gui_app

    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    handlers = {}
    monkeypatch.setattr(gui_app.signal, "signal", lambda sig, handler: handlers.setdefault(sig, handler))
    wake = gui_app.close_on_signals(window)
    window.show()
    seen = []
    original = window.traces.refresh

    def refresh_interrupted():
        handlers[signal.SIGINT](signal.SIGINT, None)
        seen.append((window.isVisible(), window.live is not None))
        original()

    monkeypatch.setattr(window.traces, "refresh", refresh_interrupted)
    window.trace_timer.timeout.disconnect()
    window.trace_timer.timeout.connect(lambda: window.traces.refresh())
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert seen and seen[0] == (True, True)  # (the refresh ran to its end with the stream still there)
    assert window.live is None
    wake.stop()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signals_in_the_middle_of_drawing_close_the_app_without_a_traceback(tmp_path, sig):
    """Ctrl-C and SIGTERM arrive while the traces are being drawn 60 times a second (a 64-channel replay at 500 Hz,
    heavy drawing); the window closes from the event loop, after the drawing, and nothing is printed."""
    import signal

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    xdf = tmp_path / "wide.xdf"
    from bci_dream.io.xdf_writer import XdfWriter

    rng = np.random.default_rng(0)
    with XdfWriter(xdf) as w:
        stream = w.add_stream("wide", "EEG", 64, 500.0, channel_labels=[f"E{i}" for i in range(64)])
        w.write_samples(stream, rng.standard_normal((500 * 60, 64)).astype(np.float32) * 20,
                        np.arange(500 * 60) / 500.0)
    for delay in (1.0, 1.37, 2.11):  # (after the window is open and drawing the replay)
        proc = subprocess.Popen([sys.executable, "-m", "bci_dream.cli", "-v", "app", "--no-generate", "--replay",
                                 str(xdf)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        try:
            for line in proc.stderr:  # (until the window is open)
                lines.append(line)
                if "the window is open" in line:
                    break
            assert proc.poll() is None, "".join(lines)
            time.sleep(delay)
            proc.send_signal(getattr(signal, sig))
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0 and "Traceback" not in err, "".join(lines) + err


def test_device_filters_come_from_the_profile_and_reconnecting_twice_leaves_one_stream(make_window, qtbot):
    import threading

    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    from bci_dream.devices import get_profile

    profile = get_profile("synthetic")
    assert window.live.pipeline.filter_settings.notch == profile.notch
    window.connect_source()
    window.connect_source()  # twice in a row: the first one's stream must not survive
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    qtbot.wait(1500)
    sources = [t for t in threading.enumerate() if t.name.startswith("source:")]
    assert len(sources) == 1, sources


def test_channels_the_model_never_sees_are_greyed_and_a_layout_names_them(make_window, qtbot, tmp_path):
    """A replay whose labels are Ch1..Ch8 (the OpenBCI GUI's LSL output of a Cyton): every trace is dim grey until
    the channels are named (``--layout cyton``), then none is."""
    from bci_dream.devices import get_profile
    from bci_dream.gui.traces import UNMAPPED_RGB
    from bci_dream.io.xdf_writer import XdfWriter
    from bci_dream.signal.channels import layout_naming

    path = tmp_path / "obci_eeg1.xdf"
    rng = np.random.default_rng(1)
    with XdfWriter(path) as w:
        sid = w.add_stream("obci_eeg1", "EEG", 8, 250.0, channel_labels=[f"Ch{i + 1}" for i in range(8)])
        w.write_samples(sid, rng.standard_normal((250 * 20, 8)).astype(np.float32) * 10, np.arange(250 * 20) / 250.0)
    window = make_window(replay=path, generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    assert window.traces.unmapped == {f"Ch{i + 1}" for i in range(8)}
    assert set(window.traces._channel_rgbs()) == {UNMAPPED_RGB}
    named = make_window(replay=path, generate=False, naming=layout_naming(get_profile("cyton")))
    qtbot.waitUntil(lambda: named.live is not None, timeout=15000)
    assert named.live.info.ch_names == get_profile("cyton").channels and named.traces.unmapped == set()


def test_creative_mode_in_the_window_osc_commands_change_it_and_the_show_window_follows(make_window, qtbot,
                                                                                        tmp_path):
    """The creative panel shows the live features and the blend; OSC on 127.0.0.1 (a python-osc server here) gets the
    features, and OSC commands move the window's controls; the full-screen show window (offscreen) gets every image;
    the frames go out on LSL."""
    import socket
    import threading

    import pylsl
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from pythonosc.udp_client import SimpleUDPClient

    got = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: got.append(address))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        listen = s.getsockname()[1]
    try:
        window = make_window(device="synthetic", osc=f"127.0.0.1:{server.server_address[1]}", osc_listen=listen,
                             lsl_frames=True, show_screen=0,
                             creative={"prompt": "a red cat", "eeg_influence": 0.5, "rules": ()})
        qtbot.waitUntil(lambda: window.frames_received >= 2 and window.creative is not None, timeout=90000)
        panel = window.creative_panel
        assert panel.prompt.text() == "a red cat" and panel.influence.value() == 50
        qtbot.waitUntil(lambda: panel.features_shown > 0 and panel.table.rowCount() > 5, timeout=10000)
        assert "z against the running session mean" in panel.reference.text()
        assert "blend: 100% 'a red cat'" in panel.weights.text()
        assert window.show_window is not None and window.show_window.isFullScreen()
        qtbot.waitUntil(lambda: window.show_window.frames_shown >= 1, timeout=30000)
        assert "/bci-dream/feature/alpha" in got and "/bci-dream/frame" in got
        inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", "bci-dream-frames", timeout=5)[0])
        sample, stamp = inlet.pull_sample(timeout=30)
        assert sample is not None and stamp >= sample[1]  # (frame index, t_end), stamped when the image was ready
        client = SimpleUDPClient("127.0.0.1", listen)
        client.send_message("/bci-dream/eeg_influence", 0.2)
        qtbot.waitUntil(lambda: window.creative.eeg_influence == pytest.approx(0.2) and panel.influence.value() == 20,
                        timeout=10000)
        panel.sham.setChecked(True)  # the sham switch: EEG from another time, said in every frame
        qtbot.waitUntil(lambda: window.engine is not None and "sham EEG (shifted)" in window.engine.labels,
                        timeout=30000)
        frames_before = window.frames_received
        qtbot.waitUntil(lambda: window.frames_received > frames_before, timeout=30000)
        client.send_message("/bci-dream/generate", 0)
        qtbot.waitUntil(lambda: window.engine is None, timeout=10000)
        panel.baseline_requested.emit(1.0)
        qtbot.waitUntil(lambda: window.monitor.tracker.baseline_state == "done", timeout=15000)
        qtbot.waitUntil(lambda: "z against the baseline" in panel.reference.text(), timeout=5000)
        assert not window.errors
        window.close_show()
        window.open_show(7)  # a screen that does not exist: one line naming those there are
        assert window.show_window is None and "there is no screen 7; screens: 0:" in window.errors[-1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_scene_sets_up_the_app_and_the_window_saves_it_back(make_window, qtbot, tmp_path):
    """'bci-dream app --scene gallery.toml': the scene's device, prompt, steering and show window, started
    unattended; Save scene… writes what runs, and it reads back the same."""
    from bci_dream.commands.app import apply_scene
    from bci_dream.runtime.scene import SceneError, load_scene

    scene_file = tmp_path / "gallery.toml"
    scene_file.write_text('[source]\ndevice = "synthetic"\nbandpass = [2, 40]\nnotch = 60\n\n'
                          '[model]\nmodel = "tiny"\ngpu = "cpu"\nseed = 4\n\n'
                          '[creative]\nprompt = "a lighthouse"\neeg_influence = 0.6\n'
                          'steer = ["alpha=calm ocean at dusk", "beta*2=busy city"]\n\n'
                          '[outputs]\nshow_screen = 0\n\n[auto]\nconnect = true\nstart = true\nreconnect = true\n')
    options = AppOptions()
    apply_scene(options, load_scene(scene_file))
    assert (options.device, options.model, options.seed, options.show_screen) == ("synthetic", "tiny", 4, 0)
    assert options.creative["prompt"] == "a lighthouse" and len(options.creative["rules"]) == 2
    assert options.auto_reconnect and options.generate
    assert (options.filters.bandpass, options.filters.notch) == ((2, 40), 60.0)
    window = make_window(**{k: getattr(options, k) for k in ("device", "model", "seed", "creative", "show_screen",
                                                             "auto_reconnect", "filters")})
    qtbot.waitUntil(lambda: window.frames_received >= 1 and window.creative is not None, timeout=90000)
    assert window.creative.prompt == "a lighthouse" and window.show_window is not None
    assert "steered by band power" in window.engine.labels
    saved = tmp_path / "saved.toml"
    window.save_scene(saved)
    again = load_scene(saved)
    assert again["creative"]["steer"] == ["alpha=calm ocean at dusk", "beta*2=busy city"]
    assert again["creative"]["prompt"] == "a lighthouse" and again["source"]["device"] == "synthetic"
    assert again["outputs"]["show_screen"] == 0 and again["auto"]["reconnect"] is True
    assert again["source"]["bandpass"] == [2, 40] and again["source"]["notch"] == 60
    assert window.settings.value("scene/last") == str(saved)  # ('--scene last' opens it)
    for text, said in (('[creative]\ncolour = "red"\n', "unknown key 'colour' in [creative]"),
                       ('[lights]\non = true\n', "unknown section [lights]"),
                       ('[creative]\neeg_influence = "lots"\n', "[creative] eeg_influence must be"),
                       ('[source]\nspeed = -3\n', "[source] speed must be 0 (as fast as possible) or more, not -3"),
                       ('[model]\nhop = 0\n', "[model] hop must be above 0 s, not 0"),
                       ('[model]\nsize = -5\n', "[model] size must be between 64 and 4096 pixels")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(SceneError, match=re.escape(said)):
            load_scene(bad)
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli", "app", "--scene", str(bad)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 1 and "size must be" in proc.stderr and "Traceback" not in proc.stderr


def test_stage_outputs_from_a_scene_that_this_system_lacks_are_one_line_and_the_app_runs(make_window, qtbot,
                                                                                       tmp_path):
    """A scene made on a Windows machine (Spout) opened on Linux: its outputs are named in one line, the images
    still come, and the scene saved back still holds the Spout sender."""
    from bci_dream.commands.app import apply_scene
    from bci_dream.runtime.scene import load_scene

    scene_file = tmp_path / "stage.toml"
    scene_file.write_text('[outputs]\nspout = "stage left"\nndi = "stage left"\nvirtual_camera = true\n')
    options = AppOptions()
    apply_scene(options, load_scene(scene_file))
    assert (options.spout, options.ndi, options.virtual_camera, options.syphon) == ("stage left", "stage left",
                                                                                     True, None)
    window = make_window(device="synthetic", spout=options.spout)
    qtbot.waitUntil(lambda: window.frames_received >= 1, timeout=90000)
    assert len(window.errors) == 1 and "outputs not started: Spout output is Windows-only" in window.errors[0]
    saved = tmp_path / "saved.toml"
    window.save_scene(saved)
    assert load_scene(saved)["outputs"]["spout"] == "stage left"


def test_an_unattended_app_keeps_trying_a_device_that_cannot_be_opened(make_window, qtbot):
    window = make_window(device="cyton", params={"serial_port": "/dev/ttyNOPE42"}, auto_reconnect=True,
                         reconnect_s=0.3)
    qtbot.waitUntil(lambda: window.reconnects >= 2, timeout=30000)
    assert not window.errors  # (said in the status bar and the log, not in dialogs nobody is there to close)


def test_key_presses_are_markers(make_window, qtbot):
    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    qtbot.keyClick(window, "3")
    qtbot.waitUntil(lambda: any(m.text == "key 3" for m in window.live.pipeline.markers.since(0)[0]), timeout=5000)
    window.creative_panel.prompt.setFocus()
    qtbot.keyClick(window.creative_panel.prompt, "7")  # (typed into the prompt box: a digit, not a marker)
    assert window.creative_panel.prompt.text() == "7"
    assert not any(m.text == "key 7" for m in window.live.pipeline.markers.since(0)[0])


def test_a_note_typed_in_the_box_is_on_the_traces_in_the_recording_and_on_lsl(make_window, qtbot, tmp_path):
    """Enter in the note box stamps the text now: a labelled line on the traces, a marker of the recording's
    ``notes`` stream read back with pyxdf, and a sample of the LSL marker outlet (--publish)."""
    import pylsl
    import pyxdf

    window = make_window(device="synthetic", generate=False, publish=True)
    qtbot.waitUntil(lambda: window.live is not None and window.live.publisher is not None, timeout=15000)
    found = pylsl.resolve_bypred(f"name='{window.live.publisher.marker_name}'", minimum=1, timeout=5.0)
    assert found, "the LSL marker outlet was not found"
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=5.0)
    path = tmp_path / "noted.xdf"
    window.start_recording(path)
    qtbot.wait(500)
    window.add_note("   ")  # (nothing)
    qtbot.keyClicks(window.note_box, "eyes closed now")
    qtbot.keyClick(window.note_box, QtCore.Qt.Key.Key_Return)
    assert window.note_box.text() == ""
    qtbot.waitUntil(lambda: any("eyes closed now" in text for _, text in window.traces.visible_markers()),
                    timeout=3000)
    sent, _ = inlet.pull_chunk(timeout=3.0)
    inlet.close_stream()
    qtbot.wait(300)
    window.stop_recording()
    streams, _ = pyxdf.load_xdf(str(path))
    texts = [str(v[0]) for s in streams if s["info"]["type"][0] != "EEG" for v in s["time_series"]]
    assert texts.count("note: eyes closed now") == 1
    assert any("note: eyes closed now" in str(v[0]) for v in sent)


def test_the_impedance_dialog_measures_an_emulated_cyton_and_marks_the_recording(make_window, qtbot, tmp_path,
                                                                                shared_data):
    """Impedance… on a Cyton (BrainFlow's real Cyton driver; the board itself emulated on a pseudo-terminal, its EEG a
    real recording): a kΩ and a rating per electrode, start and end markers in the recording, the board set back; on
    the synthetic board the dialog says it cannot measure."""
    import pyxdf
    from cyton_emulator import CytonEmulator

    from bci_dream.io.readers import read_recording

    rec = read_recording(shared_data / "openbci-gui" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")
    true_kohm = [3.0, 4.0, 25.0, 30.0, 70.0, 2.0, 20.0, 300.0]  # (ratings that hold within the error bound)
    with CytonEmulator(rec.data, true_kohm) as board:
        window = make_window(device="cyton", params={"serial_port": board.port}, generate=False)
        qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
        path = tmp_path / "impedance.xdf"
        window.start_recording(path)
        window.impedance_action.trigger()
        view = window.impedance_dialog.view
        assert window.impedance_dialog.isVisible() and view.can_measure and "10 kΩ" in view.thresholds_label.text()
        with qtbot.waitSignal(view.finished, timeout=40000) as finished:
            view.measure_button.click()
            qtbot.waitUntil(lambda: "measuring O1" in view.status_label.text(), timeout=20000)
        report = finished.args[0]
        assert report.complete and view.table.rowCount() == 8
        for row, true in enumerate(true_kohm):  # (within test_impedance.close_to's bound)
            assert abs(float(view.table.item(row, 1).text()) - true) <= 0.1 * true + 4.5
        assert [view.table.item(row, 2).text() for row in (0, 2, 4, 7)] == ["good", "fair", "poor", "poor"]
        assert "2 of 8 poor (P7, O2)" in view.status_label.text()
        assert board.wait_for_settings(32)[-2:] == ["x8060110X", "z800Z"] and board.gains == [24] * 8
        qtbot.wait(300)
        window.stop_recording()
        window.impedance_dialog.reject()
        window.close()
    streams, _ = pyxdf.load_xdf(str(path))
    texts = [str(v[0]) for s in streams if s["info"]["type"][0] != "EEG" for v in s["time_series"]]
    assert texts[0] == "impedance check: start" and texts[1].startswith("impedance check: end (impedance: Fp1 ")

    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    window.show_impedance()
    view = window.impedance_dialog.view
    assert not view.measure_button.isEnabled() and "generated, with no electrodes" in view.status_label.text()

    # (a window the engine held because a check drove the electrodes: see test_engine) the status bar says why
    window.bridge.frame.emit(None, Frame(None, FrameRecord(0, 0.0, 0, skipped=True, reason="driven")))
    assert "no images while the impedance check" in window.statusBar().currentMessage()


def test_the_theme_switches_live_and_is_remembered(make_window, qtbot):
    """Dark by default; the Dark action switches every plot, the traces and the widgets to the light theme at once,
    and the next window starts in the theme chosen last."""
    import pyqtgraph as pg
    from PySide6 import QtGui, QtWidgets

    window = make_window(device="synthetic", generate=False)
    qtbot.waitUntil(lambda: window.live is not None, timeout=15000)
    plots = window.findChildren(pg.PlotWidget)
    assert window.theme == "dark" and window.dark_action.isChecked() and len(plots) >= 4
    assert all(p.backgroundBrush().color().lightness() < 128 for p in plots)
    window.dark_action.trigger()
    assert window.theme == "light" and not window.dark_action.isChecked()
    assert all(p.backgroundBrush().color().lightness() > 128 for p in plots)
    app = QtWidgets.QApplication.instance()
    assert app.palette().color(QtGui.QPalette.ColorRole.Window).lightness() > 128
    assert max(window.traces._normal_rgb) < 100  # dark traces on the light background
    qtbot.wait(200)
    assert window.traces.trace_image().mean() > 128  # (mostly background: light)
    window.close()
    again = make_window(device="synthetic", generate=False, connect=False)
    assert again.theme == "light" and not again.dark_action.isChecked()
    assert all(p.backgroundBrush().color().lightness() > 128 for p in again.findChildren(pg.PlotWidget))
    again.set_theme("dark")
    assert app.palette().color(QtGui.QPalette.ColorRole.Window).lightness() < 128


def test_settings_edited_by_hand_and_a_stream_of_a_few_hertz_do_not_stop_the_window(make_window, qtbot, tmp_path):
    """A settings file with a geometry that is text and panel numbers that are not numbers opens with the defaults;
    a replayed stream of 2 Hz (a counter taken as EEG) runs every panel without an exception."""
    from bci_dream.gui.spectrum_panel import SpectrumPanel
    from bci_dream.io.xdf_writer import XdfWriter

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    settings.setValue("geometry", "notbytes")
    settings.setValue("Traces/span_s", "abc")
    settings.setValue("Traces/scale_uv", ["1", "2"])
    settings.setValue("Spectrum/seconds", "nan")
    settings.sync()
    xdf = tmp_path / "slow.xdf"
    with XdfWriter(xdf) as w:
        stream = w.add_stream("slow", "EEG", 8, 2.0, channel_labels=["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"])
        w.write_samples(stream, np.random.default_rng(0).standard_normal((120, 8)).astype(np.float32) * 20,
                        np.arange(120) / 2.0)
    window = make_window(replay=xdf, speed=4.0, generate=False)
    window.panel(SpectrumPanel)  # (the spectrum, spectrogram and head map are open by default or on demand)
    qtbot.waitUntil(lambda: window.live is not None and window.live.pipeline.raw.total_written > 30, timeout=20000)
    qtbot.wait(1500)  # (several refreshes of every panel)
    assert not window.errors and window.panel(TracePanel).traces.frames_drawn > 0
