"""Screenshots of the real desktop app for the README: BrainFlow's synthetic board, the tiny model generating; the
whole window, and each signal view (the panels of the ``views`` area) beside it as ``panel-<title>.png``; and the
impedance dialog after a real check through BrainFlow's Cyton driver on the tests' emulated Cyton
(``tests/cyton_emulator.py``: the EEG of the shared OpenBCI recording, electrodes set to 4-140 kΩ) as
``impedance.png`` (skipped without the shared data).

    python benchmarks/app_screenshot.py [benchmarks/app-window.png] [--seconds 12]

Runs offscreen (or under Xvfb when DISPLAY is set); regenerate it whenever the window changes.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The electrodes' impedance (kΩ) the emulated Cyton is given for the impedance screenshot.
EMULATED_KOHM = [4.0, 7.0, 18.0, 9.0, 35.0, 140.0, 5.0, 12.0]


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
    impedance_screenshot(app, args.output.with_name("impedance.png"))


def impedance_screenshot(app, path: Path) -> None:
    from PySide6 import QtCore

    from bci_dream.acquisition.brainflow_source import BrainFlowSource
    from bci_dream.devices import get_profile
    from bci_dream.gui.impedance_view import ImpedanceDialog
    from bci_dream.io.readers import read_recording

    data = Path(os.environ.get("BCI_DREAM_DATA", REPO.parent / "shared" / "data"))
    recording = data / "openbci-gui" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"
    if not recording.is_file():
        print(f"no {recording}: the impedance screenshot is skipped")
        return
    sys.path.insert(0, str(REPO / "tests"))
    from cyton_emulator import CytonEmulator

    with CytonEmulator(read_recording(recording).data, EMULATED_KOHM) as board:
        source = BrainFlowSource(get_profile("cyton"), {"serial_port": board.port}, reconnect=False)
        source.open()
        source.start(lambda chunk: None)
        try:
            dialog = ImpedanceDialog()
            dialog.view.set_source(source)
            dialog.show()
            done = []
            dialog.view.finished.connect(done.append)
            dialog.view.start()
            end = time.monotonic() + 60
            while not done and time.monotonic() < end:
                app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            dialog.grab().save(str(path))
            print(f"saved {path} ({done[0].summary() if done else 'the check did not finish'})")
            dialog.close()
        finally:
            source.stop()


if __name__ == "__main__":
    main()
