"""The main window: its panels (live traces on the left, generated images on the right), controls, a status bar.

Everything slow happens off the GUI thread: devices open and close through the Qt-free
:class:`~bci_dream.runtime.stream_controller.StreamController`, models load on a worker thread, acquisition and
generation run on the streaming core's and the engine's own threads. Results come back as Qt signals (queued to
the GUI thread); the panels follow the ring buffer on a ~60 Hz timer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.acquisition.filter_settings import FilterSettings, choose_filters
from bci_dream.acquisition.live import LiveStream, make_source
from bci_dream.acquisition.xdf_replay import XdfReplaySource
from bci_dream.core import defaults
from bci_dream.devices import DeviceProfile, get_profile, list_profiles
from bci_dream.gui import theme
from bci_dream.gui.creative_panel import CreativePanel
from bci_dream.gui.head_map_panel import HeadMapPanel
from bci_dream.gui.image_panel import ImagePanel
from bci_dream.gui.impedance_view import ImpedanceDialog
from bci_dream.gui.panel import Panel
from bci_dream.gui.settings_dialog import Settings, SettingsDialog
from bci_dream.gui.show_window import ScreenError, ShowWindow
from bci_dream.gui.spectrogram_panel import SpectrogramPanel
from bci_dream.gui.spectrum_panel import SpectrumPanel
from bci_dream.gui.stream_adapter import QtStreamController
from bci_dream.gui.trace_panel import TracePanel
from bci_dream.gui.traces import TraceView
from bci_dream.runtime.feature_monitor import FeatureMonitor
from bci_dream.runtime.outputs import SessionOutputs
from bci_dream.runtime.scene import SceneError, save_scene

log = logging.getLogger(__name__)

TRACE_INTERVAL_MS = 16
STATUS_INTERVAL_MS = 500
#: The panels the window lays out (a new panel: one file with a :class:`Panel` subclass, one entry here).
PANELS: tuple[type[Panel], ...] = (TracePanel, SpectrumPanel, SpectrogramPanel, HeadMapPanel, ImagePanel,
                                   CreativePanel)
#: QSettings key of the scene file opened or saved last ('bci-dream app --scene last').
LAST_SCENE_KEY = "scene/last"
#: The Open replay dialog's file types (every recording a replay plays; see bci_dream.io.readers).
REPLAY_FILTER = ("Recordings (*.xdf *.xdfz *.edf *.bdf *.fif *.fif.gz *.vhdr *.set *.gdf *.cnt *.txt *.csv);;"
                 "XDF (*.xdf *.xdfz);;All files (*)")


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
    hop: float = defaults.HOP_S
    similarity: float = defaults.SIMILARITY_THRESHOLD
    compile: str | None = None
    backend: str = defaults.BACKEND
    encoder_precision: str = defaults.PRECISION
    steps: int | None = None
    interpolate: int = 0
    filters: Any = None  # FilterSettings from the command line; None: the settings' or the device's
    connect: bool = True
    generate: bool = True
    source_options: dict[str, Any] = field(default_factory=dict)  # e.g. stall_timeout for BrainFlow sources
    naming: Any = None  # ChannelNaming from --channels/--channels-file/--layout (devices and replays alike)
    route: dict[str, Any] = field(default_factory=dict)  # RouteChoice fields from --route/--ip-adapter/--bank
    bank_k: int = defaults.BANK_K
    bank_temperature: float = defaults.BANK_TEMPERATURE
    creative: dict[str, Any] = field(default_factory=dict)  # creative-mode fields (commands.common.creative_options)
    osc: str | None = None  # HOST:PORT to send features, steering and frames to
    osc_listen: int | None = None  # UDP port for OSC commands
    video: Path | None = None  # a video the images are written to as they come
    lsl_frames: bool = False  # publish each image on the LSL stream bci-dream-frames
    publish: bool = False  # re-publish the EEG and its markers (keys, notes) as LSL streams
    markers_udp: int | None = None  # a UDP port markers come from
    markers_lsl: str | None = None  # an LSL marker stream markers come from
    show_screen: int | None = None  # open the full-screen show window on this screen at start
    virtual_camera: bool = False  # send the images to a virtual camera (pyvirtualcam)
    ndi: str | None = None  # the NDI source name the images go to
    spout: str | None = None  # the Spout sender name the images go to (Windows)
    syphon: str | None = None  # the Syphon server name the images go to (macOS)
    auto_reconnect: bool = False  # open the device again, every reconnect_s, when it cannot be opened or is lost
    reconnect_s: float = 5.0
    scene: Path | None = None  # the scene file these options came from


class Bridge(QtCore.QObject):
    """Signals that carry the results of model loading and generation from worker threads to the GUI thread."""

    models_ready = QtCore.Signal(int, object, str)  # request number, GenerationModels or None, error line
    command = QtCore.Signal(str, object)  # an OSC command for the GUI thread: name, value
    prompt_ready = QtCore.Signal(object, str)  # the Creative whose prompt was encoded, error line ("" if none)
    frame = QtCore.Signal(object, object)  # the Engine that made it, Frame
    generation_failed = QtCore.Signal(object, str)  # the Engine that stopped, why


def _quietly(fn, *args) -> None:
    """``fn(*args)`` on a worker thread whose failure is said when its result is used, not here."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001
        log.debug("%s failed: %s", getattr(fn, "__name__", fn), e)


class MainWindow(QtWidgets.QMainWindow):
    """The bci-dream window. ``options`` say what to open first; settings are remembered in QSettings.

    Attributes (for tests and scripts): ``live`` (the open LiveStream or None), ``engine`` (the running
    Engine or None), ``panels``, ``traces`` and ``images`` (the trace view and the image panel), ``errors``
    (every error line shown), ``frames_received``.
    """

    def __init__(self, options: AppOptions | None = None, settings: QtCore.QSettings | None = None) -> None:
        super().__init__()
        self.options = options or AppOptions()
        self.settings = settings or QtCore.QSettings("bci-dream", "bci-dream")
        self.theme = theme.theme_name(self.settings.value(theme.SETTINGS_KEY, theme.DEFAULT))
        theme.apply_theme(self.theme)  # (before the panels: their plots take its colours when made)
        self.prefs = self._initial_prefs()
        self.engine = None
        self.errors: list[str] = []
        self.frames_received = 0
        self._frame_times: list[float] = []
        self._latencies: list[float] = []
        self.models = None  # GenerationModels once loaded
        self._loading_models = False
        self._checkpoint_in_use = self.options.checkpoint
        self._want_generation = self.options.generate
        # Model loads carry the number of the request they answer; older ones are dropped (streams: the controller).
        self._models_request = 0
        self.streams = QtStreamController(self, name="gui")
        self.streams.opened.connect(self._on_opened)
        self.streams.failed.connect(self._on_open_failed)
        self.streams.state.connect(self._on_state)
        self.streams.recorded.connect(self._on_recorded)
        self.bridge = Bridge()
        self.bridge.models_ready.connect(self._on_models_ready)
        self.bridge.frame.connect(self._on_frame)
        self.bridge.generation_failed.connect(self._on_generation_failed)
        self.bridge.command.connect(self._on_command)
        self.bridge.prompt_ready.connect(self._on_prompt_ready)
        self.monitor = None  # the open stream's FeatureMonitor
        self.creative = None  # the running engine's Creative
        self.state_history: list[str] = []  # every device state shown, in order
        self.impedance_dialog: ImpedanceDialog | None = None  # (made when first opened)

        self.setWindowTitle("bci-dream")
        self.panels: list[Panel] = [panel_class() for panel_class in PANELS]
        self._build_controls()
        self.setCentralWidget(self._lay_out_panels())
        self._build_status_bar()
        self._restore_settings()
        self._connect_creative_panel()
        self.outputs = self._start_outputs()
        self.show_window = None
        self.reconnects = 0
        self._want_connection = False  # (connect_source sets it; Disconnect clears it: auto-reconnect asks it)
        if self.options.scene is not None:
            self.settings.setValue(LAST_SCENE_KEY, str(self.options.scene))
        if self.options.show_screen is not None:
            QtCore.QTimer.singleShot(0, lambda: self.open_show(self.options.show_screen))

        self.trace_timer = QtCore.QTimer(self, interval=TRACE_INTERVAL_MS)
        self.trace_timer.timeout.connect(self._refresh_panels)
        self.trace_timer.start()
        self.status_timer = QtCore.QTimer(self, interval=STATUS_INTERVAL_MS)
        self.status_timer.timeout.connect(self.update_status)
        self.status_timer.start()
        if self.options.connect:
            QtCore.QTimer.singleShot(0, self.connect_source)

    # -- panels ---------------------------------------------------------------------------------------

    def panel(self, panel_class: type[Panel]) -> Panel:
        """The window's panel of ``panel_class``."""
        return next(p for p in self.panels if isinstance(p, panel_class))

    @property
    def traces(self) -> TraceView:
        return self.panel(TracePanel).traces

    @property
    def images(self) -> ImagePanel:
        return self.panel(ImagePanel)

    @property
    def live(self):
        """The open LiveStream, or None."""
        return self.streams.controller.live

    @property
    def creative_panel(self) -> CreativePanel:
        return self.panel(CreativePanel)

    def _connect_creative_panel(self) -> None:
        panel = self.creative_panel
        creative = self.options.creative
        panel.set_session(creative.get("prompt"), float(creative.get("eeg_influence", 1.0)),
                          sham=bool(creative.get("sham")))
        panel.prompt_changed.connect(self.set_prompt)
        panel.sham_changed.connect(self.set_sham)
        panel.influence_changed.connect(self.set_eeg_influence)
        panel.baseline_requested.connect(self.record_baseline)

    def _start_outputs(self):
        """OSC and video for the window's lifetime (each engine is attached as it starts); None without any."""
        opts = self.options
        if not (opts.osc or opts.osc_listen is not None or opts.video is not None or opts.lsl_frames
                or opts.markers_udp is not None or opts.markers_lsl or opts.virtual_camera or opts.ndi or opts.spout
                or opts.syphon):
            return None
        def to_gui(name: str):
            return lambda value: self.bridge.command.emit(name, value)

        try:
            return SessionOutputs(osc=opts.osc, osc_listen=opts.osc_listen, video=opts.video,
                                  lsl_frames=opts.lsl_frames, markers_udp=opts.markers_udp,
                                  markers_lsl=opts.markers_lsl, ndi=opts.ndi, spout=opts.spout, syphon=opts.syphon,
                                  virtual_camera=(opts.size or 0) if opts.virtual_camera else None,
                                  handlers={name: to_gui(name) for name in ("generate", "prompt", "eeg_influence")})
        except Exception as e:  # noqa: BLE001 - said in one line; the window works without them
            message = f"outputs not started: {e}"
            QtCore.QTimer.singleShot(0, lambda: self.show_error(message))
            return None

    def _on_command(self, name: str, value) -> None:
        """An OSC command, on the GUI thread: as if the user had used the control (a value that does not fit is
        said in the status bar)."""
        try:
            value = bool(int(float(value))) if name == "generate" else float(value) if name == "eeg_influence" \
                else str(value)
        except (TypeError, ValueError):
            self.statusBar().showMessage(f"OSC /bci-dream/{name}: {value!r} does not fit", 10000)
            return
        if name == "generate":
            self.start_generation() if value else self.stop_generation()
        elif name == "prompt":
            self.creative_panel.prompt.setText(str(value))
            self.set_prompt(str(value))
        elif name == "eeg_influence":
            self.creative_panel.set_session(self.options.creative.get("prompt"), min(1.0, max(0.0, float(value))),
                                            self.creative_panel.mode.text())
            self.set_eeg_influence(float(value))

    # -- creative mode ----------------------------------------------------------------------------

    def set_prompt(self, prompt: str) -> None:
        """Anchor the images to ``prompt`` ("" for none) from now on: encoded on a worker thread (the text encoders
        load once, then the encoding is cached), used from the next frame."""
        self.options.creative["prompt"] = prompt or None
        creative = self.creative
        if creative is None:  # (used when generation starts; encoded now, so that starting does not wait for it)
            generator = self.generator
            if prompt and generator is not None:
                threading.Thread(target=lambda: _quietly(generator.encode_texts, [prompt]), name="gui:prompt",
                                 daemon=True).start()
            return

        def work() -> None:
            try:
                creative.set_prompt(prompt or None)
                creative.set_eeg_influence(float(self.options.creative.get("eeg_influence", 1.0)))
            except Exception as e:  # noqa: BLE001 - said in one line; the old prompt stays
                self.bridge.prompt_ready.emit(creative, str(e))
                return
            self.bridge.prompt_ready.emit(creative, "")

        threading.Thread(target=work, name="gui:prompt", daemon=True).start()

    def _on_prompt_ready(self, creative, error: str) -> None:
        if error:
            self.show_error(f"the prompt cannot be used: {error}")
        elif creative is self.creative:
            self.creative_panel.set_session(creative.prompt, creative.eeg_influence, creative.describe())

    def set_eeg_influence(self, influence: float) -> None:
        """The EEG's share of the conditioning from now on (0-1; applied from the next frame)."""
        influence = min(1.0, max(0.0, float(influence)))
        self.options.creative["eeg_influence"] = influence
        if self.creative is not None:
            self.creative.set_eeg_influence(influence)
            self.creative_panel.mode.setText(self.creative.describe())

    # -- show window ------------------------------------------------------------------------------

    def toggle_show(self, checked: bool | None = None) -> None:
        if self.show_window is not None:
            self.close_show()
        else:
            self.open_show(len(QtGui.QGuiApplication.screens()) - 1)

    def open_show(self, screen: int) -> None:
        """The images full screen on ``screen`` (a bad index is said in one line, naming the screens)."""
        self.close_show()
        try:
            window = ShowWindow(screen)
        except ScreenError as e:
            self.show_action.setChecked(False)
            self.show_error(str(e))
            return
        window.set_labels(self.engine.labels if self.engine is not None else [])
        if self.images.current is not None:
            window.show_image(self.images.current)
        window.destroyed.connect(lambda: self._show_closed(window))
        window.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        self.show_window = window
        self.show_action.setChecked(True)
        window.show_on_screen()

    def _show_closed(self, window) -> None:
        if self.show_window is window:
            self.show_window = None
            self.show_action.setChecked(False)

    def close_show(self) -> None:
        window, self.show_window = self.show_window, None
        self.show_action.setChecked(False)
        if window is not None:
            window.close()

    def set_sham(self, on: bool) -> None:
        """Feed the EEG model EEG from 30 s earlier instead of the live EEG (a control), or the live EEG again;
        generation restarts with it (its labels say so)."""
        self.options.creative["sham"] = "shifted" if on else None
        if self.engine is not None:
            self.stop_generation(keep_wanted=True)
            self.start_generation()

    def record_baseline(self, seconds: float) -> None:
        """Record the features' baseline over the next ``seconds`` of the open stream."""
        if self.monitor is None:
            self.show_error("connect a device before recording a baseline")
            return
        self.monitor.start_baseline(seconds)

    def _lay_out_panels(self) -> QtWidgets.QSplitter:
        """Panels of the same area stacked vertically; the areas side by side: the traces widest, the signal views
        between them and the images."""
        splitter = QtWidgets.QSplitter()
        for area in ("left", "views", "right"):
            members = [p for p in self.panels if p.area == area]
            if not members:
                continue
            column = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
            for p in members:
                column.addWidget(p)
                column.setStretchFactor(column.count() - 1, p.stretch)
            splitter.addWidget(column)
        splitter.setSizes([620, 360, 460])
        return splitter

    def _refresh_panels(self) -> None:
        for p in self.panels:
            p.refresh()

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
        if given.route.get("route"):  # (--route and --ip-adapter-scale given on the command line)
            prefs.route = given.route["route"]
        if given.route.get("ip_adapter_scale", 1.0) != 1.0:
            prefs.ip_adapter_scale = given.route["ip_adapter_scale"]
        for name in ("bank_k", "bank_temperature"):
            if getattr(given, name) != getattr(default, name):
                setattr(prefs, name, getattr(given, name))
        return prefs

    def _route_choice(self) -> dict[str, Any]:
        """The fields of the session's RouteChoice: the command line's, with the settings' route and the creative
        panel's prompt on top."""
        prefs = self.prefs
        creative = self.options.creative
        return {**self.options.route, "route": prefs.route or None, "prompt": creative.get("prompt"),
                "negative_prompt": creative.get("negative_prompt"), "ip_adapter_scale": prefs.ip_adapter_scale}

    # -- building ---------------------------------------------------------------------------------

    def _action(self, text: str, slot, shortcut: str | None = None, checkable: bool = False) -> QtGui.QAction:
        action = QtGui.QAction(text, self, checkable=checkable)
        if shortcut:
            action.setShortcut(QtGui.QKeySequence(shortcut))
            action.setToolTip(f"{text} ({shortcut})")
        action.triggered.connect(slot)
        return action

    def _build_controls(self) -> None:
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
        self.save_scene_action = self._action("Save scene…", self.choose_scene_file, "Ctrl+Shift+S")
        self.settings_action = self._action("Settings…", self.edit_settings, "Ctrl+,")
        self.impedance_action = self._action("Impedance…", self.show_impedance, "Ctrl+I")
        self.impedance_action.setToolTip("measure electrode impedance in kΩ on boards that can (OpenBCI Cyton, Daisy, "
                                         "Ganglion) (Ctrl+I)")
        self.show_action = self._action("Show", self.toggle_show, "F11", checkable=True)
        self.show_action.setToolTip("the images full screen on the last screen (a second monitor or a projector), "
                                    "with a crossfade; Esc closes it (F11)")
        self.dark_action = self._action("Dark", lambda on: self.set_theme("dark" if on else "light"), "Ctrl+Shift+D",
                                        checkable=True)
        self.dark_action.setChecked(self.theme == "dark")
        self.dark_action.setToolTip("dark or light theme, remembered (Ctrl+Shift+D)")
        for action in (self.connect_action, self.disconnect_action, self.generate_action, self.record_action,
                       self.open_replay_action, self.open_checkpoint_action, self.save_image_action,
                       self.save_scene_action, self.show_action):
            bar.addAction(action)
        for p in self.panels:
            for action in p.toolbar_actions():
                bar.addAction(action)
        bar.addAction(self.impedance_action)
        bar.addAction(self.settings_action)
        bar.addAction(self.dark_action)
        self.note_box = QtWidgets.QLineEdit()
        self.note_box.setPlaceholderText("note (Enter: a marker on the traces, in the recording and on LSL)")
        self.note_box.setClearButtonEnabled(True)
        self.note_box.setMaximumWidth(360)
        self.note_box.returnPressed.connect(lambda: self.add_note(self.note_box.text()))
        bar.addWidget(self.note_box)
        self._build_replay_bar()
        for key in "123456789":  # (markers from the keyboard; a text box being typed in keeps its digits)
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            shortcut.activated.connect(lambda key=key: self.add_key_marker(key))

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
        for p in self.panels:
            s.beginGroup(p.title)
            p.restore_state(s)
            s.endGroup()
        geometry = s.value("geometry")
        if isinstance(geometry, (QtCore.QByteArray, bytes)):  # (anything else: a settings file edited by hand)
            self.restoreGeometry(geometry)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("device", self.device_box.currentText())
        for p in self.panels:
            s.beginGroup(p.title)
            p.save_state(s)
            s.endGroup()
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
        """Open the replay file of the options, else the chosen device, on a worker thread (after the stream that
        was open has stopped)."""
        replay = self.options.replay
        name, params = self.device_box.currentText(), self.connection_params()
        options = self.options
        self._want_connection = True
        self.state_label.setText(f"connecting to {replay.name if replay else name} …")

        def make_live() -> LiveStream:
            if replay is not None:
                return LiveStream(XdfReplaySource(replay, speed=options.speed), filters=self._filters(None),
                                  naming=options.naming, publish=options.publish)
            profile = get_profile(name)
            return LiveStream(make_source(profile, params, **options.source_options), filters=self._filters(profile),
                              rail_uv=profile.rail_uv, naming=options.naming, publish=options.publish)

        self.streams.controller.open(make_live, what=replay.name if replay else name, retire=self._detach())

    def _filters(self, profile: DeviceProfile | None) -> FilterSettings:
        """The command line's filters, else the settings' own (unless they say "the device's"), else the profile's."""
        override = self.options.filters or (None if self.prefs.device_filters else self.prefs.filters())
        return choose_filters(profile, override)

    def _detach(self) -> tuple:
        """Take the engine out of the window and the stream out of the panels, without waiting for them; returns
        what a worker must still stop (the engine's threads)."""
        engine, self.engine = self.engine, None
        if self.creative is not None:
            self.creative.close()
        self.creative = None
        for p in self.panels:
            p.set_stream(None)
        if self.impedance_dialog is not None:
            self.impedance_dialog.view.set_source(None)
        monitor, self.monitor = self.monitor, None
        self.creative_panel.set_monitor(None)
        if self.outputs is not None:
            self.outputs.set_stream(None)
        if monitor is not None:
            monitor.stop(timeout=0)
        if engine is None:
            return ()
        engine.stop(timeout=0)
        return (lambda: engine.stop(timeout=10.0),)

    def _on_opened(self, number: int, live) -> None:
        if not self.streams.controller.accept(number, live):
            return  # (disconnected or connected elsewhere meanwhile: stopped in turn)
        self.pause_action.setChecked(False)
        if self._replay_source() is not None:
            index = self.speed_box.findData(self.options.speed)
            if index >= 0:
                self.speed_box.blockSignals(True)
                self.speed_box.setCurrentIndex(index)
                self.speed_box.blockSignals(False)
        self._update_replay_bar()
        for p in self.panels:
            p.set_stream(live)
        if self.impedance_dialog is not None:
            self.impedance_dialog.view.set_source(live.source)
        self._start_monitor(live)
        self.state_label.setText(f"{live.info.name}: {live.info.n_channels} channels, {live.info.sfreq:g} Hz")
        if self._want_generation:
            self.start_generation()

    def _start_monitor(self, live) -> None:
        """Band-power features of the open stream, every hop, whether or not generation runs."""
        self.monitor = FeatureMonitor(live)
        baseline = float(self.options.creative.get("baseline_s") or 0.0)
        if baseline > 0:
            self.monitor.start_baseline(baseline)
        self.monitor.start()
        self.creative_panel.set_monitor(self.monitor)
        if self.outputs is not None:
            self.outputs.set_monitor(self.monitor)
            try:
                self.outputs.set_stream(live)
            except Exception as e:  # noqa: BLE001 - a UDP marker port in use: said, the stream goes on
                self.show_error(str(e))

    def _on_open_failed(self, number: int, error: str) -> None:
        if self.streams.controller.is_current(number):
            self.state_label.setText("disconnected")
            if self._reconnect_later(error):
                return
            self.show_error(error)

    def _reconnect_later(self, why: str) -> bool:
        """With auto-reconnect (an unattended installation), try the device again in ``reconnect_s``; said in the
        status bar, not in a dialog. False without it, or for a replay."""
        if not self.options.auto_reconnect or self.options.replay is not None:
            return False
        self.reconnects += 1
        wait = max(0.5, float(self.options.reconnect_s))
        log.warning("%s; trying again in %g s", why, wait)
        self.statusBar().showMessage(f"{why}; trying again in {wait:g} s", 10000)
        QtCore.QTimer.singleShot(int(wait * 1000), self._reconnect)
        return True

    def _reconnect(self) -> None:
        if not self._want_connection:
            return  # (disconnected by the user meanwhile)
        if self.live is None or self.live.source.state.value == "failed":
            self.connect_source()

    def auto_scale(self) -> None:
        """Set the vertical scale so that a typical channel's swing fills its row (a 1-2-5 value)."""
        self.panel(TracePanel).auto_scale()

    def _on_state(self, number: int, state: str, reason: str) -> None:
        if not self.streams.controller.is_current(number):
            return
        self.state_history.append(state)
        self.state_label.setText(state)
        if state == "failed" and self._reconnect_later(f"the device was lost ({reason or 'failed'})"):
            return
        if reason:
            self.statusBar().showMessage(f"{state}: {reason}", 10000)

    def disconnect_source(self) -> None:
        """Stop generation and acquisition, on a worker thread (a recording is closed and kept)."""
        self.record_action.setChecked(False)
        self.state_label.setText("disconnected")
        self._want_connection = False
        self.streams.controller.close(retire=self._detach())

    def _on_recorded(self, summary) -> None:
        self.statusBar().showMessage(f"recording saved: {summary.path} ({summary.seconds:.1f} s)", 10000)

    def choose_replay(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a recorded session", "", REPLAY_FILTER)
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
        from bci_dream.runtime.creative import start_creative
        from bci_dream.runtime.engine import Engine
        from bci_dream.runtime.routes import RouteSettings

        m = self.models
        try:
            route = RouteSettings(m.route, bank=m.bank, k=self.prefs.bank_k, temperature=self.prefs.bank_temperature)
            # (commands: a creative mode always, so that the panel's prompt and slider act at any time)
            creative, _ = start_creative(self.live, m.generator, m.route, self._creative_options(),
                                         monitor=self.monitor, commands=True)
            engine = Engine(self.live, m.eeg_model, m.generator, hop_s=self.prefs.hop,
                            similarity_threshold=self.prefs.similarity, interpolation_steps=self.prefs.interpolate,
                            untrained_conditioning=m.untrained, device=m.generator.device, encoder=m.encoder,
                            channel_naming=m.channel_naming, route=route, creative=creative)
        except Exception as e:  # noqa: BLE001 - said in one sentence; the window stays usable
            self._want_generation = False
            self.generate_action.setChecked(False)
            self.show_error(str(e))
            return
        engine.add_listener(lambda frame, source=engine: self.bridge.frame.emit(source, frame))
        engine.add_error_listener(lambda error, source=engine: self.bridge.generation_failed.emit(source, str(error)))
        self.engine, self.creative = engine, creative
        if self.show_window is not None:
            self.show_window.set_labels(engine.labels)
        if self.outputs is not None:
            self.outputs.attach(engine, creative)
        if creative is not None:
            self.creative_panel.set_session(creative.prompt, creative.eeg_influence, creative.describe(),
                                            sham=creative.sham is not None)
        for p in self.panels:
            p.set_labels(engine.labels)
        trained = [] if m.untrained else [m.training.removeprefix("EEG model: ")]
        route = [] if m.route == "dreamdiffusion" else [f"route {m.route}"]
        if m.route == "ip-adapter" and m.generator.text is not None:
            route.append(m.generator.text.label)
        self.model_label.setText(" · ".join([f"model {m.generator.model_id}", *route, *engine.labels,
                                             f"EEG encoder {m.encoder.precision}", *trained]))
        self.model_label.setToolTip(m.training)
        engine.start()

    def _creative_options(self) -> dict[str, Any]:
        """Creative mode as the command line and the panel left it; an EEG influence below 1 without a prompt
        (the slider moved first) leaves the EEG alone until a prompt is given."""
        options = dict(self.options.creative)
        if not options.get("prompt") and not options.get("rules"):
            options["eeg_influence"] = 1.0
        return options

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
        checkpoint, route = opts.checkpoint, self._route_choice()

        def work() -> None:
            from bci_dream.generation.session_models import RouteChoice, load_generation_models

            try:
                models = load_generation_models(
                    opts.model, checkpoint, device=opts.gpu, size=prefs.size or None, steps=prefs.steps or None,
                    seed=prefs.seed, compile=opts.compile or False, progress=False, reuse=current,
                    choice=RouteChoice(**route), guidance=opts.creative.get("guidance"), backend=opts.backend,
                    encoder_precision=opts.encoder_precision)
                prompts = [opts.creative.get("prompt")] + [r.prompt for r in opts.creative.get("rules", ())
                                                           if r.target == "prompt"]
                if any(prompts):  # (encoded here, off the GUI thread; the engine's creative mode reads the cache)
                    models.generator.encode_texts([p for p in prompts if p])
            except Exception as e:  # noqa: BLE001 - said in one line; the app goes on with what it had
                log.debug("loading the models failed", exc_info=True)
                self.bridge.models_ready.emit(request, None, str(e))
                return
            self.bridge.models_ready.emit(request, models, "")

        threading.Thread(target=work, name="gui:models", daemon=True).start()

    def _on_models_ready(self, request: int, models, error: str) -> None:
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
        """Use ``new`` settings now: filters reopen the stream, size, steps or the route reload the diffusion model,
        the rest restarts generation; they are remembered."""
        old, self.prefs = self.prefs, new
        new.save(self.settings)
        if self.models is not None and new.seed != old.seed:
            self.models.generator.set_seed(new.seed)
        if ((new.size, new.steps) != (old.size, old.steps) or new.route_fields() != old.route_fields()) and \
                self.models is not None:
            self.models = None  # (the generator is loaded again with the new size or steps)
            if self.engine is not None or self._want_generation:
                self.stop_generation(keep_wanted=True)
                self._load_models()
        elif self.engine is not None and (new.hop, new.similarity, new.interpolate, new.bank_k, new.bank_temperature) \
                != (old.hop, old.similarity, old.interpolate, old.bank_k, old.bank_temperature):
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
        if engine is not self.engine:
            return
        if frame.image is None:
            if frame.record.reason == "driven":
                self.statusBar().showMessage("no images while the impedance check drives the electrodes: that EEG is "
                                             "the board's test current, not the brain", 3000)
            return
        self.frames_received += 1
        now = time.monotonic()
        self._frame_times = [t for t in self._frame_times if now - t < 5.0] + [now]
        if frame.record.latency_ms is not None:
            self._latencies = (self._latencies + [frame.record.latency_ms])[-50:]
        for p in self.panels:
            p.show_frame(frame)
        if self.show_window is not None:
            self.show_window.show_image(frame.image)
        if frame.record.gap_s:
            self.statusBar().showMessage(f"the window of this image had a gap of {frame.record.gap_s:.2f} s "
                                         "(samples that never arrived)", 3000)

    def add_key_marker(self, key: str) -> None:
        """A marker ``key 1`` ... ``key 9`` from the keyboard, into the stream (traces, recording, LSL outlet)."""
        if self.live is None:
            return
        marker = self.live.mark(f"key {key}", stream="keys")
        self.statusBar().showMessage(f"marker '{marker.text}'", 2000)

    def show_impedance(self) -> None:
        """Open (or raise) the impedance dialog for the connected device."""
        if self.impedance_dialog is None:
            self.impedance_dialog = ImpedanceDialog(self, mark=self._mark_impedance)
        self.impedance_dialog.view.set_source(self.live.source if self.live is not None else None)
        self.impedance_dialog.show()
        self.impedance_dialog.raise_()

    def _mark_impedance(self, text: str) -> None:
        if self.live is not None:
            self.live.mark(text, stream="impedance")

    def set_theme(self, name: str) -> None:
        """Switch to the ``dark`` or ``light`` theme now (widgets, every plot, the traces) and remember it."""
        self.theme = theme.theme_name(name)
        theme.apply_theme(self.theme)
        theme.restyle_plots(self, self.theme)
        self.panel(TracePanel).traces.follow_background()
        self.settings.setValue(theme.SETTINGS_KEY, self.theme)
        if self.dark_action.isChecked() != (self.theme == "dark"):
            self.dark_action.setChecked(self.theme == "dark")

    def add_note(self, text: str) -> None:
        """A free-text note, stamped now, as a marker ``note: TEXT`` of the stream ``notes``: drawn on the traces,
        written to the recording's marker stream (so it is saved with the session) and sent on the LSL marker
        outlet. Empty text adds nothing; without a stream the note is kept in the box."""
        text = " ".join(text.split())
        if not text:
            return
        if self.live is None:
            self.statusBar().showMessage("connect or replay a stream first: a note is stamped on its clock", 3000)
            return
        marker = self.live.mark(f"note: {text}", stream="notes")
        self.note_box.clear()
        self.statusBar().showMessage(f"note added at {marker.timestamp:.2f} s"
                                     + (" (recorded)" if self.live.recorder is not None else ""), 3000)

    # -- scenes ---------------------------------------------------------------------------------------

    def choose_scene_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save the scene", "scene.toml", "Scene (*.toml)")
        if path:
            self.save_scene(Path(path))

    def current_scene(self) -> dict[str, dict[str, Any]]:
        """What the window runs now, as a scene (:mod:`bci_dream.runtime.scene`)."""
        opts, prefs, creative = self.options, self.prefs, self.options.creative
        def absolute(path) -> str | None:  # (a scene's relative paths are read against its own folder)
            return str(Path(path).expanduser().resolve()) if path else None

        source: dict[str, Any] = {"replay": absolute(opts.replay)} if opts.replay is not None else {
            "device": self.device_box.currentText(), "params": self.connection_params() or None}
        if opts.filters is not None:  # (the command line's or the scene's; else the device's, which need no saving)
            source["bandpass"] = list(opts.filters.bandpass) if opts.filters.bandpass else []
            source["notch"] = opts.filters.notch or 0
        model = {"model": str(opts.model), "checkpoint": absolute(opts.checkpoint),
                 "gpu": opts.gpu, "seed": prefs.seed, "hop": prefs.hop, "similarity": prefs.similarity,
                 "interpolate": prefs.interpolate, "size": prefs.size or None, "steps": prefs.steps or None,
                 "route": prefs.route or opts.route.get("route"), "ip_adapter": absolute(opts.route.get("ip_adapter")),
                 "ip_adapter_scale": prefs.ip_adapter_scale, "bank": absolute(opts.route.get("bank"))}
        rules = [r.text() for r in creative.get("rules", ())]
        creative_table = {"prompt": creative.get("prompt"), "negative_prompt": creative.get("negative_prompt"),
                          "guidance": creative.get("guidance"), "eeg_influence": creative.get("eeg_influence"),
                          "steer": rules or None, "baseline_s": creative.get("baseline_s") or None,
                          "hold_artefact": creative.get("hold_artefact"), "sham": creative.get("sham")}
        outputs = {"osc": opts.osc, "osc_listen": opts.osc_listen, "video": absolute(opts.video),
                   "lsl_frames": opts.lsl_frames or None, "show_screen": opts.show_screen,
                   "virtual_camera": opts.virtual_camera or None, "ndi": opts.ndi, "spout": opts.spout,
                   "syphon": opts.syphon}
        auto = {"connect": opts.connect, "start": self._want_generation, "reconnect": opts.auto_reconnect,
                "reconnect_s": opts.reconnect_s}
        return {"source": source, "model": model, "creative": creative_table, "outputs": outputs, "auto": auto}

    def save_scene(self, path: Path) -> None:
        """Write :meth:`current_scene` to ``path`` and remember it as the last scene."""
        try:
            save_scene(self.current_scene(), path)
        except SceneError as e:
            self.show_error(str(e))
            return
        self.options.scene = Path(path)
        self.settings.setValue(LAST_SCENE_KEY, str(path))
        self.statusBar().showMessage(f"scene saved: {path}", 10000)

    def choose_image_file(self) -> None:
        if self.images.current is None:
            self.show_error("there is no image to save yet")
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save the image", "bci-dream.png", "PNG (*.png)")
        if path:
            self.save_image(Path(path))

    def save_image(self, path: Path) -> None:
        """Save the newest image as PNG, with its labels drawn on it."""
        from bci_dream.runtime.frame_writer import draw_labels

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
            for p in self.panels:
                p.update_status(None)
            return
        status = live.status()
        for p in self.panels:
            p.update_status(status)
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
        self._models_request += 1
        # (waits: a recording must be closed before the process ends)
        self.streams.controller.close(retire=self._detach(), wait=True)
        self.close_show()
        if self.outputs is not None:
            self.outputs.close()  # (after the engine: the video gets its last frame, then is finished)
        super().closeEvent(event)
