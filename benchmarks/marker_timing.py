"""Stimulus timing of the calibration wizard: a real session on BrainFlow's synthetic board, measured.

Drives the wizard itself (subject page -> signal check -> stimulus session) with a shipped protocol, records the
session to .xdf, reads the markers back and prints, per trial:

- marker vs frame time: the marker's timestamp in the recording minus the time the frame had been handed to the
  window system (should be 0: the marker is sent with the frame's time);
- onset lateness: frame time minus the schedule's intended onset (timer + drawing);
- drawing: frame time minus the start of drawing.

The display's own delay (up to one refresh, plus the monitor's lag) is not visible to software; use a photodiode.

    QT_QPA_PLATFORM=offscreen python benchmarks/marker_timing.py            # offscreen raster
    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/marker_timing.py   # a real X server (xcb)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quick", help="shipped protocol or .toml (default: quick, ~2 min)")
    parser.add_argument("--windowed", action="store_true", help="a 1024x768 window instead of full screen")
    args = parser.parse_args()

    from PySide6 import QtWidgets

    from bci_dream.gui.calibration_wizard import CalibrationWizard, WizardOptions

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        wizard = CalibrationWizard(WizardOptions(subject="timing", device="synthetic", protocol=args.protocol,
                                                 subjects_dir=Path(tmp), fullscreen=not args.windowed,
                                                 check_seconds=2))
        wizard.show()

        def wait(condition, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while not condition():
                if time.monotonic() > deadline:
                    raise SystemExit("timed out")
                app.processEvents()
                time.sleep(0.001)

        wizard.next()
        wait(lambda: wizard.signal_page.check is not None and wizard.signal_page.check.ready, 30)
        wizard.signal_page.anyway_box.setChecked(True)
        wizard.next()
        started = time.monotonic()
        wizard.session_page.start_button.click()
        screen = wizard.presenter.screen()
        where = f"screen {screen.size().width()}x{screen.size().height()} at {screen.refreshRate():.0f} Hz"
        wait(lambda: wizard.timing is not None, 60 + 2 * wizard.protocol.total_seconds(wizard.stimuli))
        report = wizard.timing
        print(f"platform {app.platformName()}, {where}, protocol {wizard.protocol.name}: {report.trials} trials in "
              f"{time.monotonic() - started:.0f} s")
        print(report.summary())
        late = report.lateness_ms
        print(f"onsets later than 1 ms: {np.count_nonzero(late > 1.0)}, later than one 60 Hz refresh (16.7 ms): "
              f"{np.count_nonzero(late > 16.7)}")
        wizard.close()


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen") if not os.environ.get("DISPLAY") else None
    main()
