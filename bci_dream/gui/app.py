"""Start the Qt application with the main window."""

from __future__ import annotations

import os
import signal
import sys

from bci_dream.gui.main_window import AppOptions, MainWindow


def has_display() -> bool:
    """Whether Qt can open a window here (Qt aborts the process when it cannot, so ask first)."""
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(options: AppOptions, argv: list[str] | None = None) -> int:
    """Open the window and run Qt's event loop until it is closed; returns the exit status."""
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from bci_dream.errors import BciDreamError

    if not has_display():
        raise BciDreamError("no display to open the desktop app on (DISPLAY is not set); run it in a desktop "
                            "session, or use 'bci-dream run --headless --out DIR'")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(argv or sys.argv[:1])
    app.setApplicationName("bci-dream")
    app.setOrganizationName("bci-dream")
    pg.setConfigOptions(antialias=False, background="k", foreground="w")
    window = MainWindow(options)
    window.resize(1400, 800)
    window.show()
    # Ctrl-C and SIGTERM close the window (saving settings and closing a recording). Python runs signal
    # handlers only between bytecodes, so a timer hands control back to it a few times a second.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    wake = QtCore.QTimer(interval=200)
    wake.timeout.connect(lambda: None)
    wake.start()
    return int(app.exec())
