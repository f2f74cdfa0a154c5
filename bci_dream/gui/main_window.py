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
    steps: int | None = None
    interpolate: int = 0
    filters: Any = None  # FilterSettings from the command line; None: the settings' or the device's
    connect: bool = True
    generate: bool = True
    source_options: dict[str, Any] = field(default_factory=dict)  # e.g. stall_timeout for BrainFlow sources


class Bridge(QtCore.QObject):
    """Signals that carry results from worker threads to the GUI thread."""

    opened = QtCore.Signal(int, object)  # session number, LiveStream
    models_ready = QtCore.Signal(int, object, str)  # request number, Models or None, error line
    frame = QtCore.Signal(object, object)  # the Engine that made it, Frame
    state = QtCore.Signal(int, str, str)  # session number, source state, reason
    recorded = QtCore.Signal(object)  # RecordingSummary of a recording closed with its stream
    generation_failed = QtCore.Signal(object, str)  # the Engine that stopped, why
    failed = QtCore.Signal(str)


@dataclass
class Models:
    """What generation needs, loaded together off the GUI thread."""

    generator: Any
    eeg_model: Any
    untrained: bool
    encoder: Any  # PromptEncoder of eeg_model on the generator's device
    adapter: str | None  # the fine-tuned UNet adapter fused into the generator


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
        self.errors: list[str] = []
        self.frames_received = 0
        self._frame_times: list[float] = []
        self._latencies: list[float] = []
        self.models: Models | None = None
        self._loading_models = False
        self._checkpoint_in_use = self.options.checkpoint
        self._want_generation = self.options.generate
        # Results of worker threads carry the number of the request they answer; older ones are dropped.
        self._session = 0
        self._models_request = 0
        # Streams taken out of the window wait here until a worker stops them; workers take turns (one
        # device can be opened once, so the old stream must be closed before the next one opens).
        self._to_stop: list = []
        self._worker_turn = threading.Lock()
        self.bridge = Bridge()
        self.bridge.opened.connect(self._on_opened)
        self.bridge.models_ready.connect(self._on_models_ready)
        self.bridge.frame.connect(self._on_frame)
        self.bridge.failed.connect(self.show_error)
        self.bridge.state.connect(self._on_state)
        self.bridge.recorded.connect(self._on_recorded)
        self.bridge.generation_failed.connect(self._on_generation_failed)
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
        if given.steps:
            prefs.steps = given.steps
        if given.interpolate:
            prefs.interpolate = given.interpolate
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
        # (a click on the groove or a key moves the slider without dragging it)
        self.seek_slider.actionTriggered.connect(
            lambda action: None if self.seek_slider.isSliderDown() else
            self.seek(self.seek_slider.sliderPosition() / 10))
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
        name = profile.main_parameter if profile is not None else None
        if name == "serial_port":
            from serial.tools import list_ports

            self.connection_box.addItems([p.device for p in list_ports.comports()])
        self.connection_box.setEnabled(name is not None)
        self.connection_box.lineEdit().setPlaceholderText(profile.main_parameter_hint if profile is not None
                                                          else "no connection parameter needed")

    def connection_params(self) -> dict[str, Any]:
        """The chosen profile's parameter from the connection box (plus the options' own for that device)."""
        profile = self.device_box.currentData()
        params = dict(self.options.params) if self.device_box.currentText() == self.options.device else {}
        text = self.connection_box.currentText().strip()
        if profile is not None and profile.main_parameter and text:
            params[profile.main_parameter] = text
        return params

    def connect_device(self) -> None:
        """Open the device chosen in the toolbar (leaving any replay)."""
        self.options.replay = None
        self.connect_source()

    def connect_source(self) -> None:
        """Open the replay file of the options, else the chosen device, on a worker thread (which first stops
        the stream that was open)."""
        self._session += 1
        session = self._session
        self._retire(*self._detach())
        replay = self.options.replay
        name, params = self.device_box.currentText(), self.connection_params()
        options = self.options
        self.state_label.setText(f"connecting to {replay.name if replay else name} …")

        def work() -> None:
            with self._worker_turn:
                self._stop_retired()
                if session != self._session:
                    return  # (superseded before it began)
                self._open(session, replay, name, params, options)

        threading.Thread(target=work, name="gui:open", daemon=True).start()

    def _open(self, session: int, replay, name: str, params: dict, options: AppOptions) -> None:
        """Open and start a stream (on a worker thread); the result goes to :meth:`_on_opened`."""
        from bci_dream.acquisition.live import LiveStream, make_source
        from bci_dream.acquisition.xdf_replay import XdfReplaySource
        from bci_dream.devices import get_profile
        from bci_dream.errors import BciDreamError

        try:
            if replay is not None:
                live = LiveStream(XdfReplaySource(replay, speed=options.speed), filters=self._filters(None))
            else:
                profile = get_profile(name)
                live = LiveStream(make_source(profile, params, **options.source_options),
                                  filters=self._filters(profile), rail_uv=profile.rail_uv)
            live.open()
            live.source.add_state_listener(lambda state, reason: self.bridge.state.emit(session, state.value,
                                                                                        reason))
            live.start()
        except BciDreamError as e:
            self.bridge.failed.emit(str(e))
            return
        except Exception as e:  # noqa: BLE001 - a bug must not take the window down
            log.exception("opening the source failed")
            self.bridge.failed.emit(f"could not open {name}: {type(e).__name__}: {e}")
            return
        self.bridge.opened.emit(session, live)

    def _filters(self, profile):
        """The filters for a stream: the command line's, else the settings' own, else the device profile's."""
        from bci_dream.acquisition.pipeline import FilterSettings

        if self.options.filters is not None:
            return self.options.filters
        if not self.prefs.device_filters:
            return self.prefs.filters()
        return FilterSettings(profile.bandpass, profile.notch) if profile is not None else FilterSettings()

    def _detach(self):
        """Take the engine and the stream out of the window (on the GUI thread, without waiting for them)."""
        engine, live = self.engine, self.live
        self.engine, self.live = None, None
        self.traces.set_pipeline(None)
        if engine is not None:
            engine.stop(timeout=0)
        return engine, live

    def _retire(self, engine, live) -> None:
        if engine is not None or live is not None:
            self._to_stop.append((engine, live))

    def _stop_retired(self) -> None:
        """Stop every stream taken out of the window so far (on a worker thread, in its turn)."""
        while self._to_stop:
            self._shutdown(*self._to_stop.pop(0))

    def _shutdown(self, engine, live) -> None:
        """Stop ``engine`` and ``live`` and wait for them (on a worker thread, or when the window closes)."""
        if engine is not None:
            engine.stop(timeout=10.0)
        if live is not None:
            summary = live.stop()
            if summary is not None:
                self.bridge.recorded.emit(summary)

    def _on_opened(self, session: int, live) -> None:
        if session != self._session:  # (disconnected or connected elsewhere meanwhile)
            self._retire(None, live)
            self._stop_in_turn()
            return
        self.live = live
        self.pause_action.setChecked(False)
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
        if self.live is not None:
            self.traces.auto_scale()  # (its scale_changed signal sets the scale box)

    def _on_state(self, session: int, state: str, reason: str) -> None:
        if session != self._session:
            return
        self.state_history.append(state)
        self.state_label.setText(state)
        if reason:
            self.statusBar().showMessage(f"{state}: {reason}", 10000)

    def disconnect_source(self) -> None:
        """Stop generation and acquisition, on a worker thread (a recording is closed and kept)."""
        self._session += 1
        engine, live = self._detach()
        self.record_action.setChecked(False)
        self.state_label.setText("disconnected")
        self._retire(engine, live)
        self._stop_in_turn()

    def _stop_in_turn(self) -> None:
        def work() -> None:
            with self._worker_turn:
                self._stop_retired()

        threading.Thread(target=work, name="gui:close", daemon=True).start()

    def _on_recorded(self, summary) -> None:
        self.statusBar().showMessage(f"recording saved: {summary.path} ({summary.seconds:.1f} s)", 10000)

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
        if self.engine is not None or (self._loading_models and self._want_generation):
            self.stop_generation()
        else:
            self.start_generation()

    def start_generation(self) -> None:
        """Start the engine on the open stream, loading the models first (on a worker thread) if needed."""
        self._want_generation = True
        self.generate_action.setChecked(True)
        if self.live is None or self.engine is not None:
            return
        if self.models is None:
            self._load_models()
            return
        from bci_dream.engine import Engine

        m = self.models
        try:
            engine = Engine(self.live, m.eeg_model, m.generator, hop_s=self.prefs.hop,
                            similarity_threshold=self.prefs.similarity, interpolation_steps=self.prefs.interpolate,
                            untrained_conditioning=m.untrained, device=m.generator.device, encoder=m.encoder)
        except Exception as e:  # noqa: BLE001 - said in one sentence; the window stays usable
            self._want_generation = False
            self.generate_action.setChecked(False)
            self.show_error(str(e))
            return
        engine.add_listener(lambda frame, source=engine: self.bridge.frame.emit(source, frame))
        engine.add_error_listener(lambda error, source=engine: self.bridge.generation_failed.emit(source, str(error)))
        self.engine = engine
        self.images.set_labels(engine.labels)
        self.model_label.setText(" · ".join([f"model {m.generator.model_id}", *engine.labels]))
        engine.start()

    @property
    def generator(self):
        return self.models.generator if self.models is not None else None

    def _load_models(self) -> None:
        """Load (on a worker thread) what ``self.options`` and ``self.prefs`` ask for, reusing the generator
        when its model, adapter, size and steps stay the same."""
        self._models_request += 1
        request = self._models_request
        self._loading_models = True
        self.model_label.setText("loading the models …")
        opts, prefs, current = self.options, self.prefs, self.models
        checkpoint = opts.checkpoint

        def work() -> None:
            from bci_dream.engine import eeg_model_for, unet_adapter_of
            from bci_dream.errors import CheckpointError
            from bci_dream.generation.generator import load_generator
            from bci_dream.models.prompt_encoder import PromptEncoder

            try:
                adapter = unet_adapter_of(checkpoint)
                reuse = current is not None and current.adapter == adapter and current.generator is not None
                generator = current.generator if reuse else load_generator(
                    opts.model, device=opts.gpu, size=prefs.size or None, steps=prefs.steps or None, seed=prefs.seed,
                    compile=opts.compile or False, warmup=False if opts.compile else None, adapter=adapter,
                    progress=False)
                model, untrained = eeg_model_for(generator.cross_attention_dim, checkpoint, seed=prefs.seed)
                if model.config.cross_attention_dim != generator.cross_attention_dim:
                    raise CheckpointError(f"{checkpoint} conditions a UNet of width {model.config.cross_attention_dim}"
                                          f", but {generator.model_id} takes {generator.cross_attention_dim}")
                encoder = PromptEncoder(model, generator.device)
            except Exception as e:  # noqa: BLE001 - said in one line; the app goes on with what it had
                log.debug("loading the models failed", exc_info=True)
                self.bridge.models_ready.emit(request, None, str(e))
                return
            self.bridge.models_ready.emit(request, Models(generator, model, untrained, encoder, adapter), "")

        threading.Thread(target=work, name="gui:models", daemon=True).start()

    def _on_models_ready(self, request: int, models: Models | None, error: str) -> None:
        if request != self._models_request:
            return  # (superseded by a later request)
        self._loading_models = False
        if models is None:
            self.options.checkpoint = self._checkpoint_in_use
            self.show_error(error)
            if self.engine is None:
                self._want_generation = False
                self.generate_action.setChecked(False)
                self.model_label.setText("no model")
            return
        restart = self.engine is not None or self._want_generation
        self.stop_generation(keep_wanted=True)
        self.models = models
        self._checkpoint_in_use = self.options.checkpoint
        if restart:
            self.start_generation()

    def stop_generation(self, keep_wanted: bool = False) -> None:
        """Stop the engine without waiting for it (a frame in progress finishes on its own thread)."""
        self._want_generation = keep_wanted and self._want_generation
        self.generate_action.setChecked(self._want_generation)
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop(timeout=0)

    def _on_generation_failed(self, engine, error: str) -> None:
        if engine is self.engine:
            self.stop_generation()
            self.show_error(f"generation stopped: {error}")

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.prefs, self)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.apply_settings(dialog.settings())

    def apply_settings(self, new: Settings) -> None:
        """Use ``new`` settings now: filters reopen the stream, size or steps reload the diffusion model,
        the rest restarts generation; they are remembered."""
        old, self.prefs = self.prefs, new
        new.save(self.settings)
        if self.models is not None and new.seed != old.seed:
            self.models.generator.set_seed(new.seed)
        if (new.size, new.steps) != (old.size, old.steps) and self.models is not None:
            self.models = None  # (the generator is loaded again with the new size or steps)
            if self.engine is not None or self._want_generation:
                self.stop_generation(keep_wanted=True)
                self._load_models()
        elif (new.hop, new.similarity, new.interpolate) != (old.hop, old.similarity, old.interpolate) and \
                self.engine is not None:
            self.stop_generation(keep_wanted=True)
            self.start_generation()
        filters_changed = (new.device_filters, new.filters()) != (old.device_filters, old.filters())
        if filters_changed and self.live is not None and self.options.filters is None:
            self.connect_source()  # (generation starts again once it is open)

    def choose_checkpoint(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open an EEG model or subject checkpoint")
        if path:
            self.open_checkpoint(Path(path))

    def open_checkpoint(self, path: Path) -> None:
        """Use the EEG model in ``path`` (a checkpoint or a subject folder) from now on, loaded on a worker
        thread; with a fine-tuned UNet adapter the diffusion model is reloaded with it. Until it is ready,
        and if it cannot be used (said in one sentence), generation goes on with the model it had."""
        self.options.checkpoint = Path(path)
        if self.models is not None or self._loading_models:
            self._load_models()

    def _on_frame(self, engine, frame) -> None:
        if frame.image is None or engine is not self.engine:
            return
        self.frames_received += 1
        now = time.monotonic()
        self._frame_times = [t for t in self._frame_times if now - t < 5.0] + [now]
        if frame.record.latency_ms is not None:
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
            draw_labels(self.images.current, self.engine.labels if self.engine else []).save(path, format="PNG")
        except (OSError, ValueError) as e:
            self.show_error(f"cannot save {path}: {getattr(e, 'strerror', None) or e}")

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
        if self._frame_times and self._latencies:
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
        self._session += 1
        self._models_request += 1
        self._retire(*self._detach())
        with self._worker_turn:  # (waits: a recording must be closed before the process ends)
            self._stop_retired()
        super().closeEvent(event)
