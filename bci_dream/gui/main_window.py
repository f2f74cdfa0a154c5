"""The main window: live traces on the left, generated images on the right, controls and a status bar.

Everything slow happens off the GUI thread: opening a device and loading models run on short-lived
worker threads, acquisition and generation on the streaming core's and the engine's own threads.
Results come back as Qt signals (queued to the GUI thread); the traces are read from the ring
buffer by a ~60 Hz timer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.gui.image_panel import ImagePanel
from bci_dream.gui.settings_dialog import Settings, SettingsDialog
from bci_dream.gui.traces import TraceView

log = logging.getLogger(__name__)

TRACE_INTERVAL_MS = 16
STATUS_INTERVAL_MS = 500


@dataclass
class AppOptions:
    """What the app starts with (from the command line; the rest from the remembered settings)."""

    device: str = "synthetic"
    params: dict[str, Any] = field(default_factory=dict)
    replay: Path | None = None
    speed: float = 1.0
    model: str = "auto"
    checkpoint: Path | None = None
    gpu: str = "auto"
    size: int | None = None
    seed: int = 0
    hop: float = 0.25
    similarity: float = 0.995
    compile: str | None = None
    connect: bool = True
    generate: bool = True
    source_options: dict[str, Any] = field(default_factory=dict)  # e.g. stall_timeout for BrainFlow sources


def nice_scale(uv: float) -> float:
    """The 1-2-5 value (µV) at or above ``uv``."""
    decade = 10.0 ** np.floor(np.log10(max(uv, 1e-3)))
    return float(next(m * decade for m in (1, 2, 5, 10) if m * decade >= uv))


class Bridge(QtCore.QObject):
    """Signals that carry results from worker threads to the GUI thread."""

    opened = QtCore.Signal(object)  # LiveStream
    models_ready = QtCore.Signal(object)  # (generator, eeg model, untrained)
    frame = QtCore.Signal(object)  # engine Frame
    state = QtCore.Signal(str, str)  # source state, reason
    failed = QtCore.Signal(str)


class MainWindow(QtWidgets.QMainWindow):
    """The bci-dream window. ``options`` say what to open first; settings are remembered in QSettings.

    Attributes (for tests and scripts): ``live`` (the open LiveStream or None), ``engine`` (the running
    Engine or None), ``traces``, ``images``, ``errors`` (every error line shown), ``frames_received``.
    """

    def __init__(self, options: AppOptions | None = None, settings: QtCore.QSettings | None = None) -> None:
        super().__init__()
        self.options = options or AppOptions()
        self.settings = settings or QtCore.QSettings("bci-dream", "bci-dream")
        self.prefs = self._initial_prefs()
        self.live = None
        self.engine = None
        self.generator = None
        self.eeg_model = None
        self.untrained = False
        self.errors: list[str] = []
        self.frames_received = 0
        self._frame_times: list[float] = []
        self._latencies: list[float] = []
        self._loading_models = False
        self._want_generation = self.options.generate
        self.bridge = Bridge()
        self.bridge.opened.connect(self._on_opened)
        self.bridge.models_ready.connect(self._on_models_ready)
        self.bridge.frame.connect(self._on_frame)
        self.bridge.failed.connect(self.show_error)
        self.bridge.state.connect(self._on_state)
        self.state_history: list[str] = []  # every device state shown, in order

        self.setWindowTitle("bci-dream")
        self.traces = TraceView()
        self.images = ImagePanel()
        self._build_controls()
        splitter = QtWidgets.QSplitter()
        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(self.view_controls)
        left_layout.addWidget(self.traces, 1)
        splitter.addWidget(left)
        splitter.addWidget(self.images)
        splitter.setSizes([700, 500])
        self.setCentralWidget(splitter)
        self._build_status_bar()
        self._restore_settings()

        self.trace_timer = QtCore.QTimer(self, interval=TRACE_INTERVAL_MS)
        self.trace_timer.timeout.connect(self.traces.refresh)
        self.trace_timer.start()
        self.status_timer = QtCore.QTimer(self, interval=STATUS_INTERVAL_MS)
        self.status_timer.timeout.connect(self.update_status)
        self.status_timer.start()
        if self.options.connect:
            QtCore.QTimer.singleShot(0, self.connect_source)

    def _initial_prefs(self) -> Settings:
        """The remembered settings, with what the command line gave explicitly on top."""
        prefs, given, default = Settings.load(self.settings), self.options, AppOptions()
        for name in ("hop", "similarity", "seed"):
            if getattr(given, name) != getattr(default, name):
                setattr(prefs, name, getattr(given, name))
        if given.size:
            prefs.size = given.size
        return prefs

    # -- building ---------------------------------------------------------------------------------

    def _action(self, text: str, slot, shortcut: str | None = None, checkable: bool = False) -> QtGui.QAction:
        action = QtGui.QAction(text, self, checkable=checkable)
        if shortcut:
            action.setShortcut(QtGui.QKeySequence(shortcut))
            action.setToolTip(f"{text} ({shortcut})")
        action.triggered.connect(slot)
        return action

    def _build_controls(self) -> None:
        from bci_dream.devices import list_profiles

        bar = self.addToolBar("session")
        bar.setObjectName("session")
        self.device_box = QtWidgets.QComboBox()
        for name, profile in sorted(list_profiles().items()):
            self.device_box.addItem(name, profile)
        self.device_box.currentIndexChanged.connect(self._on_device_chosen)
        self.connection_box = QtWidgets.QComboBox(editable=True)
        self.connection_box.setMinimumWidth(220)
        bar.addWidget(QtWidgets.QLabel(" device "))
        bar.addWidget(self.device_box)
        bar.addWidget(self.connection_box)
        self.connect_action = self._action("Connect", self.connect_device, "Ctrl+K")
        self.disconnect_action = self._action("Disconnect", self.disconnect_source, "Ctrl+D")
        self.generate_action = self._action("Generate", self.toggle_generation, "Space", checkable=True)
        self.record_action = self._action("Record…", self.toggle_recording, "Ctrl+R", checkable=True)
        self.open_replay_action = self._action("Open replay…", self.choose_replay, "Ctrl+O")
        self.open_checkpoint_action = self._action("Open checkpoint…", self.choose_checkpoint, "Ctrl+L")
        self.save_image_action = self._action("Save image…", self.choose_image_file, "Ctrl+S")
        self.auto_scale_action = self._action("Auto scale", self.auto_scale, "A")
        self.settings_action = self._action("Settings…", self.edit_settings, "Ctrl+,")
        for action in (self.connect_action, self.disconnect_action, self.generate_action, self.record_action,
                       self.open_replay_action, self.open_checkpoint_action, self.save_image_action,
                       self.auto_scale_action, self.settings_action):
            bar.addAction(action)
        self._build_replay_bar()
        self.view_controls = QtWidgets.QHBoxLayout()
        self.span_box = QtWidgets.QDoubleSpinBox(minimum=2, maximum=20, singleStep=1, suffix=" s", value=10)
        self.span_box.valueChanged.connect(self.traces.set_span)
        self.scale_box = QtWidgets.QDoubleSpinBox(minimum=0.5, maximum=1_000_000, singleStep=10, suffix=" µV",
                                                  value=100)
        self.scale_box.valueChanged.connect(self.traces.set_scale)
        self.traces.scale_changed.connect(self.scale_box.setValue)  # (the view's +/- keys)
        self.traces.span_changed.connect(self.span_box.setValue)  # ([ and ])
        self.filtered_box = QtWidgets.QCheckBox("filtered", checked=True)
        self.filtered_box.toggled.connect(self.traces.set_show_filtered)
        self.band_box = QtWidgets.QCheckBox("band power")
        self.band_box.toggled.connect(self.traces.set_band_power_visible)
        for label, widget in (("span", self.span_box), ("scale", self.scale_box)):
            self.view_controls.addWidget(QtWidgets.QLabel(label))
            self.view_controls.addWidget(widget)
        self.view_controls.addWidget(self.filtered_box)
        self.view_controls.addWidget(self.band_box)
        self.view_controls.addStretch(1)

    def _build_replay_bar(self) -> None:
        bar = self.replay_bar = QtWidgets.QToolBar("replay")
        bar.setObjectName("replay")
        self.addToolBarBreak()
        self.addToolBar(bar)
        self.pause_action = self._action("Pause", self.toggle_pause, "P", checkable=True)
        bar.addAction(self.pause_action)
        self.seek_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.seek_slider.setMinimumWidth(300)
        self.seek_slider.sliderReleased.connect(lambda: self.seek(self.seek_slider.value() / 10))
        bar.addWidget(self.seek_slider)
        self.position_label = QtWidgets.QLabel("")
        bar.addWidget(self.position_label)
        self.speed_box = QtWidgets.QComboBox()
        for speed in (0.5, 1.0, 2.0, 4.0, 8.0):
            self.speed_box.addItem(f"{speed:g}x", speed)
        self.speed_box.setCurrentIndex(1)
        self.speed_box.currentIndexChanged.connect(lambda: self.set_replay_speed(self.speed_box.currentData()))
        bar.addWidget(QtWidgets.QLabel(" speed "))
        bar.addWidget(self.speed_box)
        bar.setVisible(False)

    def _replay_source(self):
        from bci_dream.acquisition.xdf_replay import XdfReplaySource

        source = self.live.source if self.live is not None else None
        return source if isinstance(source, XdfReplaySource) else None

    def toggle_pause(self, checked: bool | None = None) -> None:
        """Pause or resume the replay."""
        source = self._replay_source()
        if source is None:
            self.pause_action.setChecked(False)
            return
        source.resume() if source.paused else source.pause()
        self.pause_action.setChecked(source.paused)

    def seek(self, seconds: float) -> None:
        """Go to ``seconds`` into the replayed file."""
        source = self._replay_source()
        if source is not None:
            source.seek(seconds)

    def set_replay_speed(self, speed: float) -> None:
        source = self._replay_source()
        if source is not None and speed:
            source.set_speed(float(speed))
            self.options.speed = float(speed)

    def _update_replay_bar(self) -> None:
        source = self._replay_source()
        self.replay_bar.setVisible(source is not None)
        if source is None:
            return
        self.seek_slider.setMaximum(int(source.duration * 10))
        if not self.seek_slider.isSliderDown():
            self.seek_slider.setValue(int(source.position * 10))
        self.position_label.setText(f" {source.position:6.1f} / {source.duration:.1f} s ")

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.state_label = QtWidgets.QLabel("disconnected")
        self.rate_label = QtWidgets.QLabel("")
        self.image_label = QtWidgets.QLabel("")
        self.model_label = QtWidgets.QLabel("")
        self.record_label = QtWidgets.QLabel("")
        for widget in (self.state_label, self.rate_label, self.image_label, self.model_label, self.record_label):
            bar.addPermanentWidget(widget)

    # -- settings ---------------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        s = self.settings
        device = self.options.device or s.value("device", "synthetic")
        index = self.device_box.findText(str(device))
        self.device_box.setCurrentIndex(max(index, 0))
        self._on_device_chosen()
        if self.options.params:
            self.connection_box.setEditText(str(next(iter(self.options.params.values()))))
        for box, key in ((self.span_box, "span_s"), (self.scale_box, "scale_uv")):
            value = s.value(key)
            if value is not None:
                box.setValue(float(value))
        geometry = s.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("device", self.device_box.currentText())
        s.setValue("span_s", self.span_box.value())
        s.setValue("scale_uv", self.scale_box.value())
        s.setValue("geometry", self.saveGeometry())
        s.sync()

    # -- device -----------------------------------------------------------------------------------

    def _on_device_chosen(self) -> None:
        profile = self.device_box.currentData()
        self.connection_box.clear()
        names = self._connection_names(profile)
        if "serial_port" in names:
            from serial.tools import list_ports

            self.connection_box.addItems([p.device for p in list_ports.comports()])
        self.connection_box.setEnabled(bool(names))
        hint = names[0].replace("_", " ") + ("" if profile is not None and names[0] in profile.required
                                             else " (optional)") if names else "no connection parameter needed"
        self.connection_box.lineEdit().setPlaceholderText(hint)

    @staticmethod
    def _connection_names(profile) -> list[str]:
        """The parameter the connection box sets: the profile's required one, else its first optional one."""
        if profile is None:
            return []
        return list(profile.required or profile.optional[:1])

    def connection_params(self) -> dict[str, Any]:
        """The chosen profile's parameter from the connection box (plus the options' own for that device)."""
        profile = self.device_box.currentData()
        params = dict(self.options.params) if self.device_box.currentText() == self.options.device else {}
        text = self.connection_box.currentText().strip()
        names = self._connection_names(profile)
        if names and text:
            params[names[0]] = text
        return params

    def connect_device(self) -> None:
        """Open the device chosen in the toolbar (leaving any replay)."""
        self.options.replay = None
        self.connect_source()

    def connect_source(self) -> None:
        """Open the replay file of the options, else the chosen device, on a worker thread."""
        if self.live is not None:
            self.disconnect_source()
        replay = self.options.replay
        name, params = self.device_box.currentText(), self.connection_params()
        filters = self.prefs.filters()
        self.state_label.setText(f"connecting to {replay.name if replay else name} …")

        def work() -> None:
            from bci_dream.acquisition.live import LiveStream, make_source
            from bci_dream.acquisition.xdf_replay import XdfReplaySource
            from bci_dream.devices import get_profile
            from bci_dream.errors import BciDreamError

            try:
                if replay is not None:
                    live = LiveStream(XdfReplaySource(replay, speed=self.options.speed), filters=filters)
                else:
                    profile = get_profile(name)
                    live = LiveStream(make_source(profile, params, **self.options.source_options),
                                      filters=filters, rail_uv=profile.rail_uv)
                live.open()
                live.start()
            except BciDreamError as e:
                self.bridge.failed.emit(str(e))
                return
            except Exception as e:  # noqa: BLE001 - a bug must not take the window down
                log.exception("opening the source failed")
                self.bridge.failed.emit(f"could not open {name}: {type(e).__name__}: {e}")
                return
            self.bridge.opened.emit(live)

        threading.Thread(target=work, name="gui:open", daemon=True).start()

    def _on_opened(self, live) -> None:
        self.live = live
        live.source.add_state_listener(lambda state, reason: self.bridge.state.emit(state.value, reason))
        if self._replay_source() is not None:
            index = self.speed_box.findData(self.options.speed)
            if index >= 0:
                self.speed_box.blockSignals(True)
                self.speed_box.setCurrentIndex(index)
                self.speed_box.blockSignals(False)
        self._update_replay_bar()
        self.traces.set_pipeline(live.pipeline)
        QtCore.QTimer.singleShot(1500, self.auto_scale)  # once a second of signal is in
        self.state_label.setText(f"{live.info.name}: {live.info.n_channels} channels, {live.info.sfreq:g} Hz")
        if self._want_generation:
            self.start_generation()

    def auto_scale(self) -> None:
        """Set the vertical scale so that a typical channel's swing fills its row (a 1-2-5 value)."""
        if self.live is None:
            return
        pipeline = self.live.pipeline
        buffer = pipeline.filtered if self.filtered_box.isChecked() else pipeline.raw
        data = buffer.latest(int(pipeline.info.sfreq)).data
        if len(data) < 10:
            return
        with np.errstate(all="ignore"):
            std = np.nanstd(data * (1.0 if buffer is pipeline.filtered else pipeline.info.to_microvolts), axis=0)
        std = std[np.isfinite(std) & (std > 0)]
        if std.size:
            self.scale_box.setValue(nice_scale(6.0 * float(np.median(std))))

    def _on_state(self, state: str, reason: str) -> None:
        if self.live is None:
            return
        self.state_history.append(state)
        self.state_label.setText(state)
        if reason:
            self.statusBar().showMessage(f"{state}: {reason}", 10000)

    def disconnect_source(self) -> None:
        """Stop generation and acquisition (a recording is closed and kept)."""
        self.stop_generation(keep_wanted=True)
        live, self.live = self.live, None
        self.traces.set_pipeline(None)
        if live is not None:
            summary = live.stop()
            if summary is not None:
                self.record_action.setChecked(False)
                self.statusBar().showMessage(f"recording saved: {summary.path}", 10000)
        self.state_label.setText("disconnected")

    def choose_replay(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a recorded session", "", "XDF (*.xdf)")
        if path:
            self.open_replay(Path(path))

    def open_replay(self, path: Path, speed: float | None = None) -> None:
        """Replay a recorded .xdf session in real time (or at ``speed``)."""
        self.options.replay = Path(path)
        if speed is not None:
            self.options.speed = speed
        self.connect_source()

    # -- generation -------------------------------------------------------------------------------

    def toggle_generation(self, checked: bool | None = None) -> None:
        if self.engine is not None or self._loading_models:
            self.stop_generation()
        else:
            self.start_generation()

    def start_generation(self) -> None:
        """Start the engine on the open stream, loading the models first (on a worker thread) if needed."""
        self._want_generation = True
        self.generate_action.setChecked(True)
        if self.live is None or self.engine is not None:
            return
        if self.generator is None:
            self._load_models()
            return
        from bci_dream.engine import Engine

        try:
            self.engine = Engine(self.live, self.eeg_model, self.generator, hop_s=self.prefs.hop,
                                 similarity_threshold=self.prefs.similarity,
                                 interpolation_steps=self.prefs.interpolate,
                                 untrained_conditioning=self.untrained, device=self.generator.device)
        except Exception as e:  # noqa: BLE001 - e.g. a checkpoint for another UNet: said, window stays
            self.engine = None
            self.generate_action.setChecked(False)
            self.show_error(str(e))
            return
        self.engine.add_listener(self.bridge.frame.emit)
        self.images.set_labels(self.engine.labels)
        self.model_label.setText(" · ".join([f"model {self.generator.model_id}", *self.engine.labels]))
        self.engine.start()

    def _load_models(self) -> None:
        if self._loading_models:
            return
        self._loading_models = True
        self.model_label.setText("loading the models …")
        opts, prefs = self.options, self.prefs

        def work() -> None:
            from bci_dream.engine import eeg_model_for, unet_adapter_of
            from bci_dream.generation.generator import load_generator

            try:
                generator = load_generator(opts.model, device=opts.gpu, size=prefs.size or None,
                                           steps=prefs.steps or None, seed=prefs.seed,
                                           compile=opts.compile or False, warmup=False if opts.compile else None,
                                           adapter=unet_adapter_of(opts.checkpoint), progress=False)
                model, untrained = eeg_model_for(generator.cross_attention_dim, opts.checkpoint, seed=prefs.seed)
            except Exception as e:  # noqa: BLE001 - said in one line; the app goes on without images
                log.debug("loading the models failed", exc_info=True)
                self.bridge.failed.emit(str(e))
                self.bridge.models_ready.emit(None)
                return
            self.bridge.models_ready.emit((generator, model, untrained))

        threading.Thread(target=work, name="gui:models", daemon=True).start()

    def _on_models_ready(self, loaded) -> None:
        self._loading_models = False
        if loaded is None:
            self.generate_action.setChecked(False)
            self.model_label.setText("no model")
            return
        self.generator, self.eeg_model, self.untrained = loaded
        if self._want_generation:
            self.start_generation()

    def stop_generation(self, keep_wanted: bool = False) -> None:
        self._want_generation = keep_wanted and self._want_generation
        self.generate_action.setChecked(self._want_generation)
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop(timeout=5.0)

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.prefs, self)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.apply_settings(dialog.settings())

    def apply_settings(self, new: Settings) -> None:
        """Use ``new`` settings now: filters reopen the stream, size or steps reload the diffusion model,
        the rest restarts generation; they are remembered."""
        old, self.prefs = self.prefs, new
        new.save(self.settings)
        was_generating = self.engine is not None or self._want_generation
        if (new.size, new.steps) != (old.size, old.steps):
            self.stop_generation(keep_wanted=True)
            self.generator = None
        if self.generator is not None and new.seed != old.seed:
            self.stop_generation(keep_wanted=True)
            self.generator.set_seed(new.seed)
        if (new.hop, new.similarity, new.interpolate) != (old.hop, old.similarity, old.interpolate):
            self.stop_generation(keep_wanted=True)
        if new.filters() != old.filters() and self.live is not None:
            self.connect_source()  # (generation starts again once it is open)
        elif was_generating and self.engine is None:
            self.start_generation()

    def choose_checkpoint(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open an EEG model or subject checkpoint")
        if path:
            self.open_checkpoint(Path(path))

    def open_checkpoint(self, path: Path) -> None:
        """Use the EEG model in ``path`` (a checkpoint or a subject folder) from now on; with a fine-tuned UNet
        adapter the diffusion model is reloaded with it. A checkpoint for another UNet is refused in one line."""
        from bci_dream.engine import eeg_model_for, unet_adapter_of

        was_running = self.engine is not None or self._loading_models
        try:
            if self.generator is None:
                self.options.checkpoint = Path(path)
                return
            model, untrained = eeg_model_for(self.generator.cross_attention_dim, path)
            if model.config.cross_attention_dim != self.generator.cross_attention_dim:
                raise ValueError(f"{path} conditions a UNet of width {model.config.cross_attention_dim}, but "
                                 f"{self.generator.model_id} takes {self.generator.cross_attention_dim}")
        except Exception as e:  # noqa: BLE001 - one sentence, the app stays usable
            self.show_error(f"cannot use {path}: {e}")
            return
        self.stop_generation(keep_wanted=True)
        self.options.checkpoint, self.eeg_model, self.untrained = Path(path), model, untrained
        if unet_adapter_of(path) is not None:
            self.generator = None  # (reloaded with the subject's UNet adapter fused in)
        if was_running:
            self.start_generation()

    def _on_frame(self, frame) -> None:
        if frame.image is None:
            return
        self.frames_received += 1
        now = time.monotonic()
        self._frame_times = [t for t in self._frame_times if now - t < 5.0] + [now]
        self._latencies = (self._latencies + [frame.record.latency_ms])[-50:]
        self.images.show_image(frame.image)

    def choose_image_file(self) -> None:
        if self.images.current is None:
            self.show_error("there is no image to save yet")
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save the image", "bci-dream.png", "PNG (*.png)")
        if path:
            self.save_image(Path(path))

    def save_image(self, path: Path) -> None:
        """Save the newest image as PNG, with its labels drawn on it."""
        from bci_dream.headless import draw_labels

        try:
            draw_labels(self.images.current, self.engine.labels if self.engine else []).save(path)
        except OSError as e:
            self.show_error(f"cannot save {path}: {e.strerror or e}")

    # -- recording --------------------------------------------------------------------------------

    def toggle_recording(self, checked: bool | None = None) -> None:
        if self.live is not None and self.live.recorder is not None:
            self.stop_recording()
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Record to", "session.xdf", "XDF (*.xdf)")
        if path:
            self.start_recording(Path(path))
        else:
            self.record_action.setChecked(False)

    def start_recording(self, path: Path) -> None:
        """Record the open stream to ``path`` (.xdf); it goes on across device dropouts."""
        if self.live is None:
            self.record_action.setChecked(False)
            self.show_error("connect a device before recording")
            return
        try:
            self.live.start_recording(path, overwrite=True)
        except Exception as e:  # noqa: BLE001 - an unwritable folder, a full disk: said, nothing lost
            self.record_action.setChecked(False)
            self.show_error(str(e))
            return
        self.record_action.setChecked(True)

    def stop_recording(self):
        """Close the recording; returns its summary (None if none was running)."""
        summary = self.live.stop_recording() if self.live is not None else None
        self.record_action.setChecked(False)
        if summary is not None:
            self.statusBar().showMessage(f"recorded {summary.seconds:.1f} s to {summary.path}", 10000)
        return summary

    # -- status -----------------------------------------------------------------------------------

    def update_status(self) -> None:
        live = self.live
        self._update_replay_bar()
        if live is None:
            return
        status = live.status()
        self.traces.set_quality(status.quality)
        self.state_label.setText(status.state.value)
        self.rate_label.setText(f"{status.measured_rate:.0f}/{status.nominal_rate:g} Hz · dropped {status.dropped}")
        if self._frame_times:
            span = max(self._frame_times[-1] - self._frame_times[0], 1e-9)
            fps = (len(self._frame_times) - 1) / span if len(self._frame_times) > 1 else 0.0
            latency = sorted(self._latencies)[len(self._latencies) // 2]
            self.image_label.setText(f"{fps:.1f} images/s · latency {latency:.0f} ms")
        recorder = live.recorder
        self.record_label.setText(f"● REC {Path(recorder.path).name} {status.recording:.0f} s"
                                  if recorder is not None and status.recording is not None else "")

    def show_error(self, message: str) -> None:
        """One clear sentence in a non-modal dialog and the status bar; the window stays usable."""
        self.errors.append(message)
        log.warning("%s", message)
        self.statusBar().showMessage(message, 15000)
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, "bci-dream", message,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.save_settings()
        self.trace_timer.stop()
        self.status_timer.stop()
        self.disconnect_source()
        super().closeEvent(event)
