"""Start the Qt application with the main window."""

from __future__ import annotations

import os
import signal
import sys

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci_dream.core.errors import BciDreamError
from bci_dream.gui.calibration_wizard import CalibrationWizard
from bci_dream.gui.main_window import AppOptions, MainWindow


def has_display() -> bool:
    """Whether Qt can open a window here (Qt aborts the process when it cannot, so ask first)."""
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _application(what: str, headless_hint: str, argv: list[str] | None):
    """The QApplication (made once), after checking that there is a display to open ``what`` on."""
    if not has_display():
        raise BciDreamError(f"no display to open {what} on (DISPLAY is not set); run it in a desktop session, "
                            f"or use {headless_hint}")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(argv or sys.argv[:1])
    app.setApplicationName("bci-dream")
    app.setOrganizationName("bci-dream")
    pg.setConfigOptions(antialias=False, background="k", foreground="w")
    return app


def _exec(app, window) -> int:
    """Run Qt's event loop; Ctrl-C and SIGTERM close ``window`` (closing its recording) rather than kill it."""
    # Python runs signal handlers only between bytecodes, so a timer hands control back to it a few times a second.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    wake = QtCore.QTimer(interval=200)
    wake.timeout.connect(lambda: None)
    wake.start()
    return int(app.exec())


def run(options: AppOptions, argv: list[str] | None = None) -> int:
    """Open the window and run Qt's event loop until it is closed; returns the exit status."""
    app = _application("the desktop app", "'bci-dream run --headless --out DIR'", argv)
    window = MainWindow(options)
    window.resize(1400, 800)
    window.show()
    return _exec(app, window)


def run_calibration(options, argv: list[str] | None = None):
    """Open the calibration wizard (:class:`~bci_dream.gui.calibration_wizard.WizardOptions`) until it closes;
    returns it (its ``result`` is None when it closed before a profile was saved)."""
    app = _application("the calibration wizard", "'bci-dream calibrate --headless --recording FILE.xdf ...'", argv)
    wizard = CalibrationWizard(options)
    wizard.show()
    _exec(app, wizard)
    return wizard
