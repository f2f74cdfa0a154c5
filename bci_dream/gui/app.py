"""Start the Qt application with the main window."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci_dream.core.errors import BciDreamError
from bci_dream.gui.calibration_wizard import CalibrationWizard
from bci_dream.gui.main_window import LAST_SCENE_KEY, AppOptions, MainWindow
from bci_dream.gui.system_check import display_error

log = logging.getLogger(__name__)


def _application(what: str, headless_hint: str, argv: list[str] | None):
    """The QApplication (made once), after checking that a window can open here (Qt aborts the process when it
    cannot, so it is asked first: :func:`~bci_dream.gui.system_check.display_error`)."""
    problem = display_error()
    if problem is not None:
        raise BciDreamError(f"cannot open {what}: {problem}; run it in a desktop session, or use {headless_hint}")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(argv or sys.argv[:1])
    app.setApplicationName("bci-dream")
    app.setOrganizationName("bci-dream")
    pg.setConfigOptions(antialias=False, background="k", foreground="w")
    return app


def close_on_signals(window) -> QtCore.QTimer:
    """Ctrl-C and SIGTERM close ``window`` (closing its recording) rather than kill the process.

    Python runs a signal handler between any two bytecodes of the GUI thread, perhaps in the middle of a trace
    refresh: the handler only asks the event loop to close the window, once that code has returned. Python sees
    a signal only when it runs, so the returned timer (keep it) hands it control a few times a second.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: QtCore.QTimer.singleShot(0, window.close))
    wake = QtCore.QTimer(window, interval=200)
    wake.timeout.connect(lambda: None)
    wake.start()
    return wake


def _exec(app, window) -> int:
    """Run Qt's event loop until ``window`` closes (by itself, Ctrl-C or SIGTERM)."""
    wake = close_on_signals(window)  # noqa: F841 - (kept alive while the loop runs)
    return int(app.exec())


def last_scene():
    """The scene file the app opened or saved last (None before any)."""
    value = QtCore.QSettings("bci-dream", "bci-dream").value(LAST_SCENE_KEY)
    return Path(str(value)) if value else None


def run(options: AppOptions, argv: list[str] | None = None) -> int:
    """Open the window and run Qt's event loop until it is closed; returns the exit status."""
    app = _application("the desktop app", "'bci-dream run --headless --out DIR'", argv)
    window = MainWindow(options)
    window.resize(1400, 800)
    window.show()
    log.info("the window is open")
    return _exec(app, window)


def run_calibration(options, argv: list[str] | None = None):
    """Open the calibration wizard (:class:`~bci_dream.gui.calibration_wizard.WizardOptions`) until it closes;
    returns it (its ``result`` is None when it closed before a profile was saved)."""
    app = _application("the calibration wizard", "'bci-dream calibrate --headless --recording FILE.xdf ...'", argv)
    wizard = CalibrationWizard(options)
    wizard.show()
    _exec(app, wizard)
    return wizard
