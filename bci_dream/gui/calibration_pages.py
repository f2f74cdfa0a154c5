"""The pages of the calibration wizard (see :mod:`bci_dream.gui.calibration_wizard`)."""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.calibrate.session import CalibrationSession, ShownTrial
from bci_dream.calibrate.signal_check import MUSE_SENSORS, SignalCheck
from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError
from bci_dream.devices import list_profiles
from bci_dream.gui.impedance_view import ImpedanceView
from bci_dream.gui.theme import RATING_COLORS
from bci_dream.gui.traces import TraceView
from bci_dream.models.subject_profile import SubjectError, check_subject_id

if TYPE_CHECKING:  # pragma: no cover
    from bci_dream.gui.calibration_wizard import CalibrationWizard

log = logging.getLogger(__name__)

LOST_STATES = ("stalled", "reconnecting", "stopped", "failed")
#: Usable trials below which fine-tuning is not offered.
MIN_TRIALS = 4
#: EEG after an onset that a trial's pair may use (s): a trial whose onset is less than this before the
#: signal was lost is marked affected: the encoders' window.


def _label(text: str = "", wrap: bool = True) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _error(label: QtWidgets.QLabel, text: str) -> None:
    label.setText(f'<span style="color:#c8322d">{html.escape(text)}</span>' if text else "")


class SubjectPage(QtWidgets.QWizardPage):
    """Step 1: who (a new or known subject), on which headset, with which protocol."""
    def __init__(self, wizard: CalibrationWizard) -> None:
        from bci_dream.calibrate.protocol import list_protocols

        super().__init__()
        self.w = wizard
        self.setTitle("Subject and headset")
        self.setSubTitle("Choose a subject (or type a new id), the headset, and the calibration protocol.")
        self.subject_box = QtWidgets.QComboBox(editable=True)
        self.subject_box.addItems(self._known_subjects())
        self.subject_box.setEditText(wizard.options.subject)
        self.subject_box.editTextChanged.connect(self._on_subject)
        self.device_box = QtWidgets.QComboBox()
        for name, profile in sorted(list_profiles().items()):
            self.device_box.addItem(name, profile)
        self.device_box.setCurrentIndex(max(0, self.device_box.findText(wizard.options.device)))
        self.device_box.currentIndexChanged.connect(self._on_device)
        self.connection_edit = QtWidgets.QLineEdit()
        self.protocol_box = QtWidgets.QComboBox(editable=True)
        self.protocol_box.addItems(list_protocols())
        self.protocol_box.setEditText(wizard.options.protocol)
        self.protocol_box.editTextChanged.connect(lambda _: self._describe_protocol())
        self.protocol_label = _label()
        self.resume_box = QtWidgets.QCheckBox()
        self.resume_box.setChecked(True)
        self.resume_box.hide()
        self.error_label = _label()
        form = QtWidgets.QFormLayout(self)
        form.addRow("Subject id", self.subject_box)
        form.addRow("Headset", self.device_box)
        form.addRow("Connection", self.connection_edit)
        form.addRow("Protocol", self.protocol_box)
        form.addRow("", self.protocol_label)
        form.addRow("", self.resume_box)
        form.addRow("", self.error_label)
        self._on_device()
        self._on_subject(self.subject_box.currentText())
        self._describe_protocol()

    def refresh(self) -> None:
        """Look again for the subject's unfinished session (one may have been stopped since)."""
        self._on_subject(self.subject_box.currentText())

    def _known_subjects(self) -> list[str]:
        root = self.w.subjects_root
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def _on_device(self) -> None:
        profile = self.device_box.currentData()
        name = profile.main_parameter
        self.connection_edit.setEnabled(name is not None)
        self.connection_edit.setPlaceholderText(profile.main_parameter_hint)
        if self.device_box.currentText() == self.w.options.device and name is not None:
            self.connection_edit.setText(str(self.w.options.params.get(name, "")))
        else:
            self.connection_edit.clear()

    def connection_params(self) -> dict:
        profile = self.device_box.currentData()
        params = dict(self.w.options.params) if self.device_box.currentText() == self.w.options.device else {}
        if profile.main_parameter and self.connection_edit.text().strip():
            params[profile.main_parameter] = self.connection_edit.text().strip()
        return params

    def _on_subject(self, text: str) -> None:
        self.resume_box.hide()
        self.w.resume_session = None
        try:
            check_subject_id(text.strip())
        except SubjectError as e:
            _error(self.error_label, str(e) if text.strip() else "")
            self.completeChanged.emit()
            return
        _error(self.error_label, "")
        unfinished = CalibrationSession.unfinished(self.w.subjects_root / text.strip())
        if unfinished is not None:
            self.w.resume_session = unfinished
            self.resume_box.setText(f"Go on with the unfinished {unfinished.describe()}")
            self.resume_box.show()
        self.completeChanged.emit()

    def _describe_protocol(self) -> None:
        from bci_dream.calibrate.protocol import load_protocol

        try:
            protocol = load_protocol(self.protocol_box.currentText().strip())
            overlap = protocol.epoch_overlap(_epoch_s(self.w))
            self.protocol_label.setText(protocol.describe() + (f"\nWarning: {overlap}" if overlap else ""))
        except BciDreamError as e:
            self.protocol_label.setText(str(e))

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        try:
            check_subject_id(self.subject_box.currentText().strip())
        except SubjectError:
            return False
        return True

    def validatePage(self) -> bool:  # noqa: N802 - Qt's name
        """Load the protocol and its stimulus set (a bad one is named here, before anything is recorded)."""
        from bci_dream.calibrate.protocol import load_protocol

        w = self.w
        w.subject = self.subject_box.currentText().strip()
        if not self.resume_box.isVisible() or not self.resume_box.isChecked():
            w.resume_session = None
        protocol_name = w.resume_session.protocol if w.resume_session is not None else \
            self.protocol_box.currentText().strip()
        try:
            w.protocol = load_protocol(protocol_name)
            w.stimuli = w.protocol.load_stimuli(check_images=True)
            w.schedule = w.protocol.schedule(w.stimuli)
            unfinished = w.resume_session
            if unfinished is not None and unfinished.device != self.device_box.currentText():
                raise BciDreamError(f"the unfinished session was recorded with {unfinished.device}: choose that "
                                    "headset, or untick 'Go on with the unfinished session' to start a new one")
            if unfinished is not None and (unfinished.n_trials != len(w.schedule)
                                           or Path(unfinished.stimuli).resolve() != w.stimuli.folder.resolve()):
                raise BciDreamError(f"the unfinished session's protocol ({protocol_name}) has changed since it was "
                                    "recorded; untick 'Go on with the unfinished session' to start a new one")
        except BciDreamError as e:
            _error(self.error_label, str(e))
            w.show_error(str(e))
            return False
        if w.session is not None and w.session is not w.resume_session:
            w.session = None  # (came Back after a session: the next one is new, for whoever is chosen now)
        w.device_name = self.device_box.currentText()
        w.device_params = self.connection_params()
        return True


class SignalCheckPage(QtWidgets.QWizardPage):
    """Step 2: live traces and a pass/fail table per channel against the stated thresholds."""
    COLUMNS = ("channel", "contact", "status", "good", "advice")

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__()
        self.w = wizard
        self.check = None
        self.setTitle("Signal check")
        self.setSubTitle("Adjust the headset until every channel passes, or go on anyway.")
        self.traces = TraceView()
        self.traces.setMinimumHeight(220)
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.horizontalHeaderItem(1).setToolTip("judged from the signal's quality over the last seconds (not "
                                                      "from a contact sensor of the headset)")
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verdict_label = _label("connecting …")
        self.thresholds_label = _label()
        self.thresholds_label.setStyleSheet("color: gray")
        self.anyway_box = QtWidgets.QCheckBox("Go on anyway (the failing channels will make the calibration worse)")
        self.anyway_box.toggled.connect(lambda _: self.completeChanged.emit())
        self.impedance = ImpedanceView(compact=True)
        self.impedance.started.connect(self.completeChanged.emit)
        self.impedance.finished.connect(lambda _: self.completeChanged.emit())
        self.impedance.failed.connect(lambda _: self.completeChanged.emit())
        impedance_box = QtWidgets.QGroupBox("Electrode impedance")
        QtWidgets.QVBoxLayout(impedance_box).addWidget(self.impedance)
        checks = QtWidgets.QHBoxLayout()
        checks.addWidget(self.table, 3)
        checks.addWidget(impedance_box, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.traces, 2)
        layout.addLayout(checks, 1)
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.thresholds_label)
        layout.addWidget(self.anyway_box)
        self.timer = QtCore.QTimer(self, interval=1000)
        self.timer.timeout.connect(self.refresh)
        self.trace_timer = QtCore.QTimer(self, interval=33)
        self.trace_timer.timeout.connect(self.traces.refresh)

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        w = self.w
        key = (w.device_name, tuple(sorted(w.device_params.items())))
        dead = w.live is not None and w.live.source.state.value in ("stopped", "failed")
        if w.live is None or w.live_key != key or dead:
            self.verdict_label.setText(f"connecting to {w.device_name} …")
            w.connect_device(w.device_name, w.device_params)
        else:
            self.on_opened(w.live)

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's name  (Back to the subject page)
        self.timer.stop()
        self.trace_timer.stop()
        self.impedance.cancel()

    def on_opened(self, live) -> None:
        notch = live.filters.notch if live.filters is not None else None
        self.check = SignalCheck(live.info.ch_names, seconds=self.w.options.check_seconds,
                                 line_freq=float(notch or defaults.NOTCH_HZ))
        self.thresholds_label.setText(self.check.describe_thresholds())
        self.table.setRowCount(len(live.info.ch_names))
        self.traces.set_pipeline(live.pipeline)
        self.impedance.set_source(live.source)
        self.timer.start()
        self.trace_timer.start()
        QtCore.QTimer.singleShot(1500, self.traces.auto_scale)  # once a second of signal is in
        self.verdict_label.setText(f"{live.info.name}: {live.info.n_channels} channels at {live.info.sfreq:g} Hz; "
                                   f"checking the signal for {self.check.seconds} s …")
        self.completeChanged.emit()

    def resume_checking(self) -> None:
        """Back on this page from the session: check afresh (reconnecting a headset that stopped or failed)."""
        self.anyway_box.setChecked(False)
        self.initializePage()

    def on_open_failed(self, error: str) -> None:
        _error(self.verdict_label, f"{error} (go Back to choose another headset or connection)")
        self.completeChanged.emit()

    def on_closed(self) -> None:
        self.timer.stop()
        self.trace_timer.stop()
        self.traces.set_pipeline(None)
        self.impedance.set_source(None)
        self.check = None

    def refresh(self) -> None:
        live = self.w.live
        if live is None or self.check is None:
            return
        status = live.status()
        self.check.update(status.quality)
        self.traces.set_quality(status.quality)
        # failing channels first, so that their advice is in view
        for row, v in enumerate(sorted(self.check.verdicts(), key=lambda v: v.passed)):
            name = f"{v.name} ({MUSE_SENSORS[v.name][0]})" if self.check.muse and v.name in MUSE_SENSORS else v.name
            cells = (name, v.contact, (v.problem or v.status).replace("_", " "), f"{v.good_share:.0%}", v.advice)
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if col == 1:
                    item.setBackground(QtGui.QColor(RATING_COLORS[v.contact]))
                self.table.setItem(row, col, item)
        if status.state.value in LOST_STATES:
            _error(self.verdict_label, f"the headset is {status.state.value}: check that it is on and in range")
        elif not self.check.ready:
            self.verdict_label.setText(f"checking the signal … ({self.check.seconds_seen} of {self.check.seconds} s)")
        elif self.check.passed:
            self.verdict_label.setText("All channels pass.")
        else:
            failing = [v.name for v in self.check.verdicts() if not v.passed]
            _error(self.verdict_label, f"{len(failing)} of {len(self.check.ch_names)} channels fail "
                                       f"({', '.join(failing)}): see the advice, or go on anyway.")
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        live = self.w.live
        if live is None or self.check is None or live.source.state.value in LOST_STATES or self.impedance.running:
            return False  # (nor while the impedance check drives the board)
        return self.check.passed or self.anyway_box.isChecked()

    def validatePage(self) -> bool:  # noqa: N802 - Qt's name
        self.timer.stop()
        self.trace_timer.stop()
        return True


class SessionPage(QtWidgets.QWizardPage):
    """Step 3: the stimulus session, recorded, with pause/resume/stop and headset-loss handling."""
    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Stimulus session")
        self.setSubTitle("The participant looks at the centre of the screen while images are shown. "
                         "Space pauses and resumes, Escape stops; what was recorded is always kept.")
        self.setCommitPage(True)
        self.protocol_label = _label()
        self.progress = QtWidgets.QProgressBar()
        self.status_label = _label("not started")
        self.timing_label = _label()
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.clicked.connect(lambda: self.w.presenter and self.w.presenter.stop())
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.protocol_label)
        layout.addWidget(_label("Instructions for the participant: sit still and relax the face; look at the "
                                "centre of the screen; blink between images rather than during them. The "
                                "experimenter can pause, resume and stop here too."))
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.timing_label)
        layout.addStretch(1)
        self.w.streams.state.connect(self._on_device_state)
        self.w.bridge.timing.connect(self._on_timing)
        self._ended = False
        self._timing_request = 0

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        w = self.w
        if w.resume_session is not None:
            w.session = w.resume_session
        s = w.session
        self._ended = s is not None  # (a session from before is not running: Start goes on with it)
        self.protocol_label.setText(w.protocol.describe(w.stimuli))
        self.progress.setRange(0, len(w.schedule))
        self.progress.setValue(len(s.latest_showings()) if s is not None else 0)
        self.status_label.setText(s.describe() if s is not None else "not started")
        self.start_button.setText("Start")
        if s is None:
            self.timing_label.setText("")
        self._update_buttons()
        self.completeChanged.emit()

    # -- running -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Record a new part of the session and present from its next trial."""
        from bci_dream.gui.stimulus_presenter import StimulusPresenter

        w = self.w
        if w.live is None:
            self.status_label.setText("the headset is not connected: go Back to the signal check")
            return
        if w.options.photodiode and w.options.photodiode not in w.live.all_channel_names:
            error = (f"the stream has no channel '{w.options.photodiode}' for the photodiode (channels: "
                     f"{', '.join(w.live.all_channel_names)}; a board's analog inputs need --aux analog)")
            _error(self.status_label, error)
            w.show_error(error)
            return
        try:
            if w.session is None:
                w.session = CalibrationSession.create(w.subject_folder, w.subject, w.device_name,
                                                      w.protocol.path or w.protocol.name, w.protocol.stimulus_folder,
                                                      len(w.schedule))
            report = w.signal_page.impedance.report
            if report is not None:  # (measured on the signal page before this part: kept with the session)
                w.session.set_impedance(report.method, {e.name: e.kohm for e in report.electrodes}, report.finished_at)
            path = w.session.part_path()
            w.live.start_recording(path)
            try:
                w.session.add_part(path)
            except OSError:
                w.live.stop_recording()
                raise
        except (BciDreamError, OSError) as e:
            _error(self.status_label, f"cannot record the session: {e}")
            w.show_error(str(e))
            return
        self._ended = False
        live, part = w.live, len(w.session.parts)
        presenter = StimulusPresenter(w.protocol, w.schedule, mark=lambda text, t: live.mark(text, t),
                                      photodiode=w.protocol.photodiode or bool(w.options.photodiode))
        presenter.shown.connect(lambda onset: self._on_shown(onset, part))
        presenter.interrupted.connect(lambda index: w.session.mark_affected([index], "cut short by a pause or stop"))
        presenter.state_changed.connect(self._on_presenter_state)
        presenter.gate = self._no_signal
        w.presenter = presenter
        presenter.resize(1024, 768)
        if w.options.fullscreen:
            presenter.showFullScreen()
        else:
            presenter.show()
        presenter.activateWindow()
        presenter.setFocus()
        presenter.start(w.session.next_index())
        self._update_buttons()

    def _no_signal(self) -> str:
        """Why the presenter may not (re)start now: "" when the headset is streaming."""
        live = self.w.live
        if live is None:
            return "The headset is not connected."
        state = live.source.state.value
        return f"No signal from the headset ({state}): wait for it to come back." if state in LOST_STATES else ""

    def toggle_pause(self) -> None:
        p = self.w.presenter
        if p is None:
            return
        if p.state == "paused":
            p.resume()
            p.activateWindow()
            p.setFocus()
        else:
            p.pause("paused by the experimenter")
            p.activateWindow()
            p.setFocus()  # (the participant's Escape and Space go to the presenter, not to the wizard)

    def _on_shown(self, onset, part: int) -> None:
        t = onset.trial
        self.w.session.add_trial(ShownTrial(t.index, part, t.marker, t.class_name, str(t.image), t.onset_s,
                                            onset.intended_time, onset.requested_time, onset.frame_time))
        self.progress.setValue(len(self.w.session.latest_showings()))

    def _on_presenter_state(self, state: str, message: str) -> None:
        s = self.w.session
        shown = f"{len(s.latest_showings())} of {s.n_trials} trials shown, {len(s.affected)} to show again"
        self.status_label.setText(f"{state}{': ' + message if message else ''} · {shown}")
        if state in ("finished", "stopped"):
            self.end_session("complete" if state == "finished" else "stopped")
        self._update_buttons()

    def _on_device_state(self, number: int, state: str, reason: str) -> None:
        """The headset was lost: pause, and mark the trials whose EEG window it cut into (they are shown again)."""
        w, p = self.w, self.w.presenter
        if not w.streams.controller.is_current(number) or p is None or w.session is None:
            return
        if state in LOST_STATES and p.state in ("running", "rest", "paused"):
            p.pause(f"The headset signal was lost ({state}{': ' + reason if reason else ''}).")
            data = w.live.pipeline.raw.latest(1) if w.live is not None else None
            last_good = float(data.timestamps[-1]) if data is not None and len(data.timestamps) else 0.0
            affected = [i for i in w.session.trials_after(last_good - _window_s(w)) if i not in w.session.affected]
            if affected:
                w.session.mark_affected(affected, f"headset {state}")
                w.live.mark(f"affected: trials {affected[0] + 1}-{affected[-1] + 1} (headset {state})")
                p.go_on_at(min(affected[0], p.index))
            self.status_label.setText(f"paused: headset {state}; {len(w.session.affected)} trials will be shown "
                                      "again. Press Resume (or Space) when the signal is back.")
        elif state == "streaming" and p.state == "paused":
            self.status_label.setText("the headset signal is back: press Resume (or Space) to go on")

    def end_session(self, status: str) -> None:
        """Close the presenter and the recording part; the session is kept (``stopped`` can be resumed)."""
        w = self.w
        if self._ended or w.session is None or w.presenter is None:
            return
        self._ended = True
        w.timing = None
        presenter, w.presenter = w.presenter, None
        screen = presenter.screen()
        refresh = screen.refreshRate() if screen is not None else None
        if presenter.state not in ("stopped", "finished"):
            presenter.stop()
        presenter.close()
        presenter.deleteLater()
        if w.live is not None:
            w.live.stop_recording()
        w.session.finish(status)
        snapshot = w.session.snapshot()
        self._timing_request += 1
        request = self._timing_request

        def read_back() -> None:
            w.bridge.timing.emit((request, snapshot.timing(photodiode=w.options.photodiode, refresh_hz=refresh)))

        threading.Thread(target=read_back, name="wizard:timing", daemon=True).start()
        self._update_buttons()
        self.completeChanged.emit()

    def _on_timing(self, answer) -> None:
        request, report = answer
        if request != self._timing_request:
            return
        self.w.timing = report
        self.timing_label.setText("Timing: " + report.summary())
        log.info("calibration session timing: %s", report.summary())

    def _update_buttons(self) -> None:
        p, s = self.w.presenter, self.w.session
        running = p is not None and p.state in ("running", "rest", "paused")
        done = s is not None and s.status == "complete"
        self.start_button.setEnabled(not running and not done)
        if s is not None and not running and not done and s.trials:
            self.start_button.setText(f"Go on at trial {s.next_index() + 1}")
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume" if p is not None and p.state == "paused" else "Pause")
        self.stop_button.setEnabled(running)

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's name  (Back to the signal check)
        """Leaving by Back ends the session here (kept, and offered to go on with) and checks the signal again."""
        self.end_session("stopped")
        if self.w.closing:
            return
        self.w.resume_session = self.w.session if self.w.session is not None and \
            self.w.session.status != "complete" else None
        self.w.signal_page.resume_checking()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        s, p = self.w.session, self.w.presenter
        return s is not None and p is None and self._ended and len(s.usable_trials()) >= MIN_TRIALS

    def validatePage(self) -> bool:  # noqa: N802 - Qt's name
        self.w.stop_stream()  # fine-tuning needs the CPU/GPU more than the traces do
        return True


def _epoch_s(wizard: CalibrationWizard) -> float:
    """The calibration epochs' length (s): the fine-tuning settings', else the encoder's window or the default."""
    settings = wizard.options.settings
    if settings is not None and settings.epoch_s is not None:
        return settings.epoch_s
    return defaults.EPOCH_S if settings is None else defaults.WINDOW_S


def _window_s(wizard: CalibrationWizard) -> float:
    """Seconds after an onset that its epoch reaches (offset plus length)."""
    settings = wizard.options.settings
    return _epoch_s(wizard) + (settings.offset_s if settings is not None else defaults.EPOCH_OFFSET_S)


class TrainingPage(QtWidgets.QWizardPage):
    """Step 4: fine-tuning of the subject's parts, with progress, time left and cancel (resumable)."""
    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Fine-tuning")
        self.setSubTitle("The EEG model's per-subject parts are trained on this session's trials; a part of "
                         "the trials is held out to validate it.")
        self.setCommitPage(True)
        self.phase_label = _label("")
        self.progress = QtWidgets.QProgressBar()
        self.time_label = _label("")
        self.error_label = _label()
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QtWidgets.QPushButton("Cancel fine-tuning")
        self.cancel_button.clicked.connect(lambda: self.cancel_training())
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.time_label)
        layout.addLayout(buttons)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        wizard.bridge.step.connect(self._on_step)
        wizard.bridge.phase.connect(self._on_phase)
        wizard.bridge.trained.connect(self._on_trained)
        wizard.bridge.training_failed.connect(self._on_failed)
        self.cancel_button.setEnabled(False)

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        s = self.w.session
        self.phase_label.setText(f"{len(s.usable_trials())} usable trials from {s.describe()}")
        self.start()

    @property
    def training(self) -> bool:
        """True from :meth:`start` until its result or failure has reached this page (the worker thread may still
        be unwinding after that; a new run may start then)."""
        return self._running

    def start(self) -> None:
        """Fine-tune, validate and save the profile on a worker thread (a cancelled run goes on from its checkpoint)."""
        from bci_dream.calibrate.headless import calibrate_headless
        from bci_dream.training.finetune import FinetuneCancelled, FinetuneSettings

        if self.training:
            return
        w = self.w
        settings = w.options.settings or FinetuneSettings()
        pairs = w.session.write_pairs()
        cancel = threading.Event()
        self._cancel = cancel
        _error(self.error_label, "")
        self.progress.setRange(0, settings.max_steps)
        self.time_label.setText("starting …")

        def work() -> None:
            try:
                result = calibrate_headless(
                    None, w.subject, settings, pairs=pairs, init=w.options.init,
                    validation_fraction=w.options.validation_fraction, n_way=w.options.n_way,
                    figure_rows=w.options.figure_rows, subjects_dir=w.subject_folder, progress=False,
                    on_step=w.bridge.step.emit, on_phase=w.bridge.phase.emit, cancel=cancel,
                    naming=w.options.naming)
            except FinetuneCancelled as e:
                w.bridge.training_failed.emit(str(e), True)
            except BciDreamError as e:
                w.bridge.training_failed.emit(str(e), False)
            except Exception as e:  # noqa: BLE001 - a bug must not take the wizard down
                log.exception("calibration failed")
                w.bridge.training_failed.emit(f"calibration failed: {type(e).__name__}: {e}", False)
            else:
                w.bridge.trained.emit(result)

        self._running = True
        self._thread = threading.Thread(target=work, name="wizard:finetune", daemon=True)
        self._thread.start()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def cancel_training(self, wait: bool = False) -> None:
        """Ask the run to stop after its current step (it saves a checkpoint first); ``wait`` for it."""
        if self._cancel is not None:
            self._cancel.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=60)

    def _on_step(self, record: dict) -> None:
        self.progress.setValue(int(record["step"]))
        left = record.get("seconds_left", 0.0)
        self.time_label.setText(f"step {record['step']} of {record['max_steps']} · loss {record['loss']:.4f} · "
                                f"about {_duration(left)} left")

    def _on_phase(self, phase: str) -> None:
        text = {"fine-tuning": "Fine-tuning …", "validating": "Validating on the held-out trials …",
                "drawing": "Drawing held-out stimuli beside their generated images …",
                "saving": "Saving the profile …"}.get(phase, phase)
        self.phase_label.setText(text)

    def _on_trained(self, result) -> None:
        self._running = False
        self.w.result = result
        self.phase_label.setText(f"Done: trained on {result.n_train} trials, {result.n_validation} held out.")
        self.time_label.setText("")
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self.completeChanged.emit()

    def _on_failed(self, error: str, cancelled: bool) -> None:
        self._running = False
        self.w.show_error(error)
        _error(self.error_label, error)
        self.start_button.setText("Go on" if cancelled else "Try again")
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        return self.w.result is not None


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class ResultPage(QtWidgets.QWizardPage):
    """Step 5: validation against chance, held-out stimuli beside their generated images, the saved profile."""
    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Validation and profile")
        self.summary_label = _label()
        self.figure_label = QtWidgets.QLabel()
        self.figure_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(self.figure_label)
        scroll.setWidgetResizable(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addWidget(scroll, 1)

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        r = self.w.result
        v = r.profile.validation
        if v.get("accuracy") is not None:
            verdict = "above chance" if v["p_value"] < 0.05 else "not above chance: record more trials or improve " \
                                                                  "the signal"
            line = (f"Held-out identification: {v['n_way']}-way top-1 accuracy <b>{v['accuracy']:.3f}</b> against "
                    f"chance {v['chance']:.3f} (p = {v['p_value']:.3g}, {v['n_items']} trials): {verdict}.")
        else:
            line = "No identification could be computed: " + "; ".join(v.get("notes", [])) + "."
        timing = f"<br>Stimulus timing: {html.escape(self.w.timing.summary())}." if self.w.timing is not None else ""
        self.summary_label.setText(
            f"{line}{timing}<br>The profile of <b>{html.escape(r.profile.subject)}</b> is saved in "
            f"{html.escape(str(r.folder))}.<br>Use it: <code>bci-dream app --checkpoint {html.escape(str(r.folder))}"
            f"</code> (or choose the folder in the app's Open checkpoint).")
        if r.figure is not None and Path(r.figure).is_file():
            self.figure_label.setPixmap(QtGui.QPixmap(str(r.figure)))
