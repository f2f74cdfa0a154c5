"""The calibration wizard (``bci-dream calibrate --device NAME --subject ID``).

Five pages (:mod:`bci_dream.gui.calibration_pages`): subject and device; signal check; the stimulus
session, presented full screen and recorded to .xdf with a marker at each frame; fine-tuning of the
subject's parts with progress and cancel; validation on held-out trials and the saved profile.

The wizard owns the live stream (opened and stopped through the same Qt-free
:class:`~bci_dream.runtime.stream_controller.StreamController` as the main window), the session on disk (:class:`~bci_dream.calibrate.session.CalibrationSession`) and the
fine-tuning thread. Results of worker threads reach the GUI thread as Qt signals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from bci_dream.acquisition.filter_settings import choose_filters
from bci_dream.acquisition.live import LiveStream, make_source
from bci_dream.core import defaults
from bci_dream.devices import get_profile
from bci_dream.gui.calibration_pages import ResultPage, SessionPage, SignalCheckPage, SubjectPage, TrainingPage
from bci_dream.gui.stream_adapter import QtStreamController
from bci_dream.models.subject_profile import subjects_root

log = logging.getLogger(__name__)



@dataclass
class WizardOptions:
    """What the wizard starts with (from the command line).

    Attributes:
        subject: the subject id to propose (the user may change it).
        device, params: the headset profile and its connection parameters.
        protocol: a shipped protocol's name or a .toml file.
        settings: fine-tuning settings (:class:`~bci_dream.training.settings.FinetuneSettings`).
        init: pretrained EEG checkpoint to start from.
        validation_fraction, n_way, figure_rows: validation on held-out trials.
        subjects_dir: where subject folders live (default: the user data folder).
        fullscreen: show the stimuli full screen (tests use a window).
        filters: FilterSettings, or None for the device profile's.
        source_options: extra options for the source (e.g. ``stall_timeout``).
        check_seconds: seconds of quality assessments the signal check looks at.
        naming: a :class:`~bci_dream.signal.channels.ChannelNaming` for a headset whose labels are not 10-05 names.
        photodiode: the headset channel a photodiode on the presenter's corner square is recorded on: the
            square is drawn and the true onsets are measured against the markers.
    """

    subject: str = ""
    device: str = "synthetic"
    params: dict[str, Any] = field(default_factory=dict)
    protocol: str = "default"
    settings: Any = None
    init: Path | None = None
    validation_fraction: float = defaults.VALIDATION_FRACTION
    n_way: int = defaults.N_WAY
    figure_rows: int = defaults.VALIDATION_FIGURE_ROWS
    subjects_dir: Path | None = None
    fullscreen: bool = True
    filters: Any = None
    source_options: dict[str, Any] = field(default_factory=dict)
    check_seconds: int = 5
    photodiode: str | None = None
    naming: Any = None


class WizardBridge(QtCore.QObject):
    """Signals from the fine-tuning and read-back threads to the GUI thread (streams: ``wizard.streams``)."""

    step = QtCore.Signal(object)  # fine-tuning metrics record
    phase = QtCore.Signal(str)
    trained = QtCore.Signal(object)  # CalibrationResult
    training_failed = QtCore.Signal(str, bool)  # one line, cancelled
    timing = QtCore.Signal(object)  # TimingReport read back from the recording


class CalibrationWizard(QtWidgets.QWizard):
    """See the module docstring. Attributes for tests and scripts: ``live``, ``session``, ``presenter``,
    ``result`` (the CalibrationResult), ``timing`` (the TimingReport), ``errors`` (every error line shown)."""

    def __init__(self, options: WizardOptions | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.options = options or WizardOptions()
        self.setWindowTitle("bci-dream calibration")
        self.setWizardStyle(QtWidgets.QWizard.WizardStyle.ClassicStyle)
        self.setOption(QtWidgets.QWizard.WizardOption.NoBackButtonOnLastPage)
        self.live_key: tuple | None = None
        self.session = None
        self.presenter = None
        self.result = None
        self.timing = None
        self.errors: list[str] = []
        self.closing = False
        self.subject = ""
        self.protocol = None
        self.stimuli = None
        self.schedule: list = []
        self.resume_session = None  # an unfinished session of the subject, to go on with
        self.device_name = self.options.device
        self.device_params: dict[str, Any] = dict(self.options.params)
        self.streams = QtStreamController(self, name="wizard")
        self.streams.opened.connect(self._on_opened)
        self.streams.failed.connect(self._on_open_failed)
        self.bridge = WizardBridge()
        self.currentIdChanged.connect(self._on_page)
        self.subject_page = SubjectPage(self)
        self.signal_page = SignalCheckPage(self)
        self.session_page = SessionPage(self)
        self.training_page = TrainingPage(self)
        self.result_page = ResultPage(self)
        for page in (self.subject_page, self.signal_page, self.session_page, self.training_page, self.result_page):
            self.addPage(page)
        self.resize(980, 720)

    def _on_page(self, page_id: int) -> None:
        if self.page(page_id) is self.subject_page:  # (back on it: an unfinished session may exist now)
            self.subject_page.refresh()

    # -- the subject -----------------------------------------------------------------------------------

    @property
    def subjects_root(self) -> Path:
        return self.options.subjects_dir or subjects_root()

    @property
    def subject_folder(self) -> Path:
        return self.subjects_root / self.subject

    # -- the live stream -------------------------------------------------------------------------------

    @property
    def live(self) -> LiveStream | None:
        """The open stream, or None."""
        return self.streams.controller.live

    def connect_device(self, name: str, params: dict[str, Any]) -> None:
        """Open ``name`` with ``params`` on a worker thread (after stopping any stream open before)."""
        self.live_key = (name, tuple(sorted(params.items())))
        self.signal_page.on_closed()
        options = self.options

        def make_live() -> LiveStream:
            profile = get_profile(name)
            return LiveStream(make_source(profile, params, **options.source_options),
                              filters=choose_filters(profile, options.filters), rail_uv=profile.rail_uv,
                              naming=options.naming)

        self.streams.controller.open(make_live, what=name)

    def _on_opened(self, number: int, live: LiveStream) -> None:
        if self.streams.controller.accept(number, live):
            self.signal_page.on_opened(live)

    def _on_open_failed(self, number: int, error: str) -> None:
        if self.streams.controller.is_current(number):
            self.live_key = None
            self.show_error(error)
            self.signal_page.on_open_failed(error)

    def stop_stream(self, wait: bool = False) -> None:
        """Stop the live stream (a recording is closed and kept), on a worker thread or, with ``wait``, here."""
        self.live_key = None
        self.signal_page.on_closed()
        self.streams.controller.close(wait=wait)

    # -- messages and closing --------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        """One sentence, logged and kept in ``errors``; the page that asked shows it in its own label."""
        self.errors.append(message)
        log.warning("%s", message)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Escape does not close the wizard (a participant's Escape is meant for the stimulus session)."""
        if event.key() != QtCore.Qt.Key.Key_Escape:
            super().keyPressEvent(event)

    def done(self, result: int) -> None:  # noqa: D401 - Qt's name
        """Closing (Finish or Cancel): the session is ended and kept, training cancelled, the stream stopped."""
        self.closing = True  # (QWizard.done cleans up every page it went through: nothing may reconnect then)
        self.session_page.end_session("stopped")
        self.training_page.cancel_training(wait=True)
        self.stop_stream(wait=True)
        super().done(result)
