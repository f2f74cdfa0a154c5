"""The impedance check as a widget: a Measure button, progress, and each electrode's kΩ rated against thresholds.

Shown in the app's Impedance dialog and on the calibration wizard's signal page. For a source that cannot measure
(the synthetic board, an LSL stream, a replay, a Muse) it says so in one line and offers nothing to press: the
signal-based check stands in for it. The measurement runs on a thread of its own
(:class:`bci_dream.acquisition.impedance.ImpedanceMeter`); its progress and report come back through Qt signals.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.acquisition.impedance import ImpedanceMeter, ImpedanceReport
from bci_dream.core.errors import BciDreamError
from bci_dream.gui.theme import RATING_COLORS

log = logging.getLogger(__name__)



class ImpedanceView(QtWidgets.QWidget):
    """Measures the electrodes of the source given to :meth:`set_source` when Measure is pressed.

    Args:
        mark: called with ``"impedance check: start"`` and ``"impedance check: end (…)"`` (the report's summary) on
            the GUI thread, so that a recording shows where the EEG carried the lead-off current.
        compact: leave out the explanation above the table (the wizard's page has little room).

    Signals:
        started(): a check began.
        finished(report): a check ended (``report.complete`` False when cancelled).
        failed(message): a check could not be made or stopped with an error (one line).
    """

    started = QtCore.Signal()
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    _progress = QtCore.Signal(int, int, str)
    _done = QtCore.Signal(object, str)
    COLUMNS = ("electrode", "kΩ", "rating")

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, mark: Callable[[str], None] | None = None,
                 compact: bool = False) -> None:
        super().__init__(parent)
        self.mark = mark
        self.source = None
        self.meter: ImpedanceMeter | None = None
        self.report: ImpedanceReport | None = None
        self._thread: threading.Thread | None = None
        self._awaiting_result = False  # (from start until its result is handled here, on the GUI thread)
        self.status_label = QtWidgets.QLabel("no device connected")
        self.status_label.setWordWrap(True)
        self.measure_button = QtWidgets.QPushButton("Measure impedance")
        self.measure_button.clicked.connect(self.toggle)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setVisible(False)
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.thresholds_label = QtWidgets.QLabel()
        self.thresholds_label.setWordWrap(True)
        self.thresholds_label.setStyleSheet("color: gray")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if not compact:
            about = QtWidgets.QLabel("The board sends a small current (6 nA on a Cyton) through one electrode at a "
                                     "time and reads the voltage it makes. The EEG is not usable while it runs: no "
                                     "images are made of it, and a recording marks the stretch.")
            about.setWordWrap(True)
            layout.addWidget(about)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.measure_button)
        row.addWidget(self.progress, 1)
        layout.addLayout(row)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.thresholds_label)
        self._progress.connect(self._on_progress)
        self._done.connect(self._on_done)
        self.set_source(None)

    # -- the source -------------------------------------------------------------------------------------

    def set_source(self, source) -> None:
        """Measure ``source`` from now on (None: nothing connected). A check under way is cancelled."""
        if self.running:
            self.cancel()
        if source is not self.source:  # (another device's figures are not this one's)
            self.report = None
            self.table.setRowCount(0)
        self.source = source
        why = "no device connected" if source is None else source.impedance_unavailable
        self.measure_button.setEnabled(not why)
        self.table.setVisible(not why)
        if why:
            self.status_label.setText(why[0].upper() + why[1:] + ".")
            self.thresholds_label.setText("")
            return
        self.meter = ImpedanceMeter(source)
        self.thresholds_label.setText(self.meter.thresholds.describe())
        self.status_label.setText(f"{self.meter.device} can measure electrode impedance "
                                  f"({source.impedance_method}, about {self.meter.estimated_seconds():.0f} s).")

    @property
    def can_measure(self) -> bool:
        return self.source is not None and not self.source.impedance_unavailable

    @property
    def running(self) -> bool:
        # (not the thread's liveness: it is still alive for a moment after its result is handed over)
        return self._awaiting_result

    # -- a check ----------------------------------------------------------------------------------------

    def toggle(self) -> None:
        """Measure, or cancel the check under way."""
        self.cancel() if self.running else self.start()

    def start(self) -> None:
        """Start a check on its own thread (nothing when one runs or the source cannot measure)."""
        if self.running or not self.can_measure or self.meter is None:
            return
        meter = self.meter
        self.report = None
        self.measure_button.setText("Cancel")
        self.progress.setRange(0, self.source.info.n_channels)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status_label.setText("measuring …")
        self._mark("impedance check: start")

        def emit(signal, *args) -> None:
            try:
                signal.emit(*args)
            except RuntimeError:  # (the widget was closed while the check ran)
                pass

        def work() -> None:
            try:
                report = meter.measure(progress=lambda done, total, name: emit(self._progress, done, total, name))
            except BciDreamError as e:
                emit(self._done, None, str(e))
            except Exception as e:  # (a bug must not end the app; the log has the traceback)
                log.exception("impedance check failed")
                emit(self._done, None, f"the impedance check stopped: {type(e).__name__}: {e}")
            else:
                emit(self._done, report, "")

        self._awaiting_result = True
        self._thread = threading.Thread(target=work, name="impedance-check", daemon=True)
        self._thread.start()
        self.started.emit()

    def cancel(self, wait: bool = False) -> None:
        """Ask the check under way to stop (the channel being measured is set back first); ``wait``: until it has."""
        if self.meter is not None:
            self.meter.cancel()
        if wait and self._thread is not None:
            self._thread.join(5.0)

    def _mark(self, text: str) -> None:
        if self.mark is not None:
            try:
                self.mark(text)
            except BciDreamError as e:
                log.warning("impedance marker not added: %s", e)

    def _on_progress(self, done: int, total: int, name: str) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        if name:
            self.status_label.setText(f"measuring {name} ({done + 1} of {total}) …")

    def _on_done(self, report: ImpedanceReport | None, error: str) -> None:
        self._awaiting_result = False
        self.measure_button.setText("Measure impedance")
        self.progress.setVisible(False)
        if report is None:
            self._mark("impedance check: end (failed)")
            self.status_label.setText(f"<span style='color:{RATING_COLORS['poor']}'>{error}</span>")
            self.failed.emit(error)
            return
        self.report = report
        self._mark(f"impedance check: end ({report.summary()})")
        self.show_report(report)
        self.finished.emit(report)

    def show_report(self, report: ImpedanceReport) -> None:
        """Fill the table from ``report`` and say what it means."""
        self.table.setRowCount(len(report.electrodes))
        for row, e in enumerate(report.electrodes):
            value = f"{e.kohm:.1f}" if math.isfinite(e.kohm) else "—"
            rating = "not measured" if e.rating == "none" else e.rating
            for col, text in enumerate((e.name, value, rating)):
                item = QtWidgets.QTableWidgetItem(text)
                if col == 1:
                    item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                if col == 2:
                    item.setBackground(QtGui.QColor(RATING_COLORS[e.rating]))
                    item.setForeground(QtGui.QColor("black"))
                self.table.setItem(row, col, item)
        poor = [e.name for e in report.electrodes if e.rating == "poor"]
        if not report.complete:
            self.status_label.setText("Cancelled: the electrodes not measured are marked so.")
        elif poor:
            self.status_label.setText(f"{len(poor)} of {len(report.electrodes)} poor ({', '.join(poor)}): re-seat "
                                      "them (more gel or saline, part the hair) and measure again.")
        else:
            self.status_label.setText(f"Every electrode is good or fair ({report.seconds:.0f} s).")


class ImpedanceDialog(QtWidgets.QDialog):
    """The app's impedance check in a window of its own (not modal: the traces stay in view beside it)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, mark: Callable[[str], None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Electrode impedance")
        self.view = ImpedanceView(self, mark=mark)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.view)
        layout.addWidget(buttons)
        self.resize(440, 500)

    def reject(self) -> None:
        """Close (the Close button, Esc, the window's own close): a check under way stops, its channel set back."""
        self.view.cancel()
        super().reject()
