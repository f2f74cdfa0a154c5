"""Screenshots of the real desktop app for the README: BrainFlow's synthetic board, the tiny model generating; the
whole window, and each signal view (the panels of the ``views`` area) beside it as ``panel-<title>.png``.

    python benchmarks/app_screenshot.py [benchmarks/app-window.png] [--seconds 12]

Runs offscreen (or under Xvfb when DISPLAY is set); regenerate it whenever the window changes.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", nargs="?", type=Path, default=Path(__file__).with_name("app-window.png"))
    p.add_argument("--seconds", type=float, default=12.0, help="run this long after the first image")
    args = p.parse_args()

    from PySide6 import QtCore, QtWidgets

    from bci_dream.gui.main_window import AppOptions, MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    tmp = tempfile.mkdtemp(prefix="bci-dream-shot-")
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(tmp, "cache"))
    settings = QtCore.QSettings(os.path.join(tmp, "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(AppOptions(device="synthetic", model="tiny", gpu="cpu"), settings=settings)
    window.resize(1600, 900)
    window.show()
    end = time.monotonic() + 120
    while time.monotonic() < end and window.frames_received == 0:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
    window.grab().save(str(args.output))
    print(f"saved {args.output} ({window.frames_received} images generated)")
    for panel in window.panels:
        if panel.area == "views":
            path = args.output.with_name(f"panel-{panel.title.replace(' ', '-')}.png")
            panel.grab().save(str(path))
            print(f"saved {path}")
    window.close()


if __name__ == "__main__":
    main()
