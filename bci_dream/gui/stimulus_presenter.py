"""Full-screen stimulus presentation for calibration: images on time, a marker at the moment each is shown.

The presenter walks a protocol's schedule (:meth:`bci_dream.calibrate.protocol.Protocol.schedule`) on the
GUI thread. Each event (image on, image off, fixation cross, rest) is a single-shot precise timer aimed
2 ms early, then a short spin until the exact time, so onsets do not drift and are not late by the
timer's millisecond granularity. An onset draws the frame with ``repaint()`` of the image's square (painted
and handed to the window system before it returns); the time it returns is the frame time, and the marker
is sent with that timestamp. Drawing is started early by the median of the last drawing times, so that
frames land on the schedule rather than one drawing time after it. The display shows the frame at its next
refresh (up to one refresh interval later, plus the monitor's own lag): software cannot see that, a
photodiode can. With the protocol's ``photodiode = true`` a square in the bottom-left corner turns white
while an image is on (black otherwise); a photodiode taped there on an AUX channel records the true onsets
(:mod:`bci_dream.calibrate.photodiode` measures them against the markers).

Keys for the participant: Space pauses and resumes, Escape stops. A trial cut short by a pause is
reported (``interrupted``) so that it can be shown again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pylsl import local_clock
from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.calibrate.protocol import Protocol, Trial

log = logging.getLogger(__name__)

#: Timers are aimed this early, then the last stretch is spun, for sub-millisecond onsets.
SPIN_S = 0.002
#: Drawing times (s) remembered to aim onsets early by their median.
DRAW_HISTORY = 15
#: Blank before the first trial after a resume, so that the participant is ready.
RESUME_LEAD_S = 2.0


@dataclass(frozen=True)
class Onset:
    """An image that went on screen: the trial and the three times of its onset (LSL clock s)."""

    trial: Trial
    intended_time: float
    requested_time: float
    frame_time: float


class StimulusPresenter(QtWidgets.QWidget):
    """Shows the trials of ``schedule`` from ``start`` on; see the module docstring.

    Args:
        protocol: timing, background colour and fixation.
        schedule: the protocol's trials (all of them; ``start`` says where to begin).
        mark: called as ``mark(text, timestamp)`` at each onset, with the trial's marker and its detail marker.
        clock: the marker clock (LSL seconds).
        photodiode: draw the photodiode square (default: the protocol's ``photodiode``).

    Attributes:
        gate: called before starting or resuming; a non-empty reason keeps the presenter paused, saying it.

    Signals:
        shown(Onset): an image is on screen and marked.
        interrupted(int): the trial of this index was cut short (paused or stopped while on screen).
        state_changed(str, str): ``"running"``, ``"rest"``, ``"paused"``, ``"stopped"`` or ``"finished"``,
            and a message.
    """

    shown = QtCore.Signal(object)
    interrupted = QtCore.Signal(int)
    state_changed = QtCore.Signal(str, str)

    def __init__(self, protocol: Protocol, schedule: Sequence[Trial], mark: Callable[[str, float], object], *,
                 clock: Callable[[], float] = local_clock, photodiode: bool | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.protocol = protocol
        self.photodiode = protocol.photodiode if photodiode is None else photodiode
        self.schedule = list(schedule)
        self._mark = mark
        self._clock = clock
        #: Asked before (re)starting: a non-empty reason keeps the presenter paused (e.g. no signal).
        self.gate: Callable[[], str] = lambda: ""
        self.state = "idle"
        self.message = ""
        self.index = 0  # the next trial to show (or the one on screen)
        self._origin = 0.0  # clock time of the schedule's t = 0
        self._on_screen: Trial | None = None
        self._fixation = False
        self._text = ""
        self._events: list[tuple[float, Callable[[], None]]] = []
        self._draw_s: list[float] = []
        self._images: dict[str, QtGui.QImage] = {}
        self._scaled: dict[str, QtGui.QPixmap] = {}
        self._timer = QtCore.QTimer(self, singleShot=True, timerType=QtCore.Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._fire)
        self.setWindowTitle("bci-dream calibration")
        self.setCursor(QtCore.Qt.CursorShape.BlankCursor)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        for trial in self.schedule:
            key = str(trial.image)
            if key not in self._images:
                self._images[key] = QtGui.QImage(key)

    # -- control -------------------------------------------------------------------------------------

    def start(self, index: int = 0, lead_s: float | None = None) -> None:
        """Begin at trial ``index``: from the start, the protocol's timeline as it is (its lead-in first); further
        on, after a blank of ``lead_s`` (default :data:`RESUME_LEAD_S`), then the rest if a block begins there,
        then that trial's own blank. Refused (the presenter stays paused, saying why) while :attr:`gate` objects.
        """
        self.index = index
        self._on_screen = None
        refusal = self.gate()
        if refusal:
            self._paused(refusal)
            return
        if index >= len(self.schedule):
            self._finish()
            return
        if index == 0 and lead_s is None:
            self._origin = self._clock()
        else:
            blank_start = self.schedule[index - 1].offset_s if index > 0 else self.protocol.lead_in_s
            self._origin = self._clock() + (RESUME_LEAD_S if lead_s is None else lead_s) - blank_start
        self._text = ""
        self._set_state("running", "")
        self.repaint()
        self._plan()

    def pause(self, reason: str = "") -> None:
        """Stop showing: an image on screen is taken off (its trial is reported ``interrupted``)."""
        if self.state in ("running", "rest"):
            self._paused(reason)

    def _paused(self, reason: str) -> None:
        self._timer.stop()
        self._events = []
        if self._on_screen is not None:
            self.interrupted.emit(self._on_screen.index)
            self._on_screen = None
        self._fixation = False
        self._text = (f"{reason}\n\n" if reason else "") + "Paused. Press Space to go on, Escape to stop."
        self._set_state("paused", reason)
        self.repaint()

    def resume(self, index: int | None = None) -> None:
        """Go on after a pause, at trial ``index`` (default: the next one not shown), after a short blank."""
        if self.state == "paused":
            self.start(self.index if index is None else index, lead_s=RESUME_LEAD_S)

    def go_on_at(self, index: int) -> None:
        """The next trial to show after a resume (e.g. the first trial a headset loss affected)."""
        self.index = index

    def stop(self) -> None:
        """End the session here (an image on screen is reported ``interrupted``)."""
        if self.state in ("stopped", "finished"):
            return
        self._timer.stop()
        self._events = []
        if self._on_screen is not None:
            self.interrupted.emit(self._on_screen.index)
            self._on_screen = None
        self._text = "Stopped."
        self._set_state("stopped", "stopped by the participant")
        self.repaint()

    def _set_state(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self.state_changed.emit(state, message)

    # -- the timeline --------------------------------------------------------------------------------

    def _plan(self) -> None:
        """Queue the events of the next trial: rest text, fixation, onset, offset."""
        p, trial = self.protocol, self.schedule[self.index]
        self._pixmap(trial)  # scaled now, in the blank, so that its onset does not pay for it
        onset = self._origin + trial.onset_s
        events: list[tuple[float, Callable[[], None]]] = []
        previous = self.schedule[self.index - 1] if self.index > 0 else None
        if previous is not None and previous.block != trial.block and p.rest_s > 0:
            rest_from, rest_to = self._origin + previous.offset_s, self._origin + previous.offset_s + p.rest_s
            events += [(rest_from + k, lambda: self._rest(trial.block, rest_to)) for k in range(math.ceil(p.rest_s))]
            events.append((rest_to, self._blank))
        if p.fixation_s > 0:
            events.append((onset - p.fixation_s, self._fixate))
        lead = float(np.median(self._draw_s)) if self._draw_s else 0.0
        events.append((onset - lead, lambda: self._show(trial, onset)))
        events.append((onset + trial.duration_s - lead, lambda: self._hide(trial)))
        self._events = events
        self._arm()

    def _arm(self) -> None:
        if not self._events:
            return
        wait = self._events[0][0] - self._clock() - SPIN_S
        self._timer.start(max(0, int(wait * 1000)))

    def _fire(self) -> None:
        if not self._events:
            return
        when, action = self._events[0]
        if when - self._clock() > SPIN_S + 0.001:  # woke early (coarse timer): wait again
            self._arm()
            return
        while self._clock() < when:
            time.sleep(0)
        self._events.pop(0)
        action()
        self._arm()

    def _rest(self, block: int, until: float) -> None:
        self._set_state("rest", f"rest before block {block}")
        left = max(0.0, until - self._clock())
        self._text = f"Rest. Block {block} of {self.protocol.blocks} begins in {math.ceil(left - 1e-3)} s."
        self.repaint()

    def _blank(self) -> None:
        self._text = ""
        self._set_state("running", "")
        self.repaint()

    def _fixate(self) -> None:
        self._fixation = True
        self._repaint_centre()

    def _image_rect(self) -> QtCore.QRect:
        side = max(16, min(self.width(), self.height()) // 2)
        return QtCore.QRect((self.width() - side) // 2, (self.height() - side) // 2, side, side)

    def _photodiode_rect(self) -> QtCore.QRect:
        side = max(20, min(self.width(), self.height()) // 20)
        return QtCore.QRect(0, self.height() - side, side, side)

    def _repaint_centre(self) -> None:
        """Repaint only the image's square (where images and the fixation cross are) and the photodiode square,
        or everything when text is up."""
        if self._text:
            self._text = ""
            self.repaint()
        elif self.photodiode:
            self.repaint(QtGui.QRegion(self._image_rect()) + QtGui.QRegion(self._photodiode_rect()))
        else:
            self.repaint(self._image_rect())

    def _show(self, trial: Trial, intended: float) -> None:
        self._fixation = False
        self._on_screen = trial
        requested = self._clock()
        self._repaint_centre()
        frame = self._clock()
        self._draw_s = [*self._draw_s[-(DRAW_HISTORY - 1):], frame - requested]
        self._mark(trial.marker, frame)
        self._mark(trial.detail_marker, frame)
        self.shown.emit(Onset(trial, intended, requested, frame))

    def _hide(self, trial: Trial) -> None:
        self._on_screen = None
        self._repaint_centre()
        self.index = trial.index + 1
        if self.index >= len(self.schedule):
            end = self._origin + trial.offset_s + self.protocol.isi_s
            self._events.append((end, self._finish))
        else:
            self._plan()

    def _finish(self) -> None:
        self._text = "Done. Thank you!"
        self._set_state("finished", "")
        self.repaint()

    # -- drawing and keys ----------------------------------------------------------------------------

    def _pixmap(self, trial: Trial) -> QtGui.QPixmap:
        """The trial's image scaled to fit :meth:`_image_rect` (cached per size)."""
        side = self._image_rect().width()
        key = f"{trial.image}@{side}"
        if key not in self._scaled:
            image = self._images[str(trial.image)]
            self._scaled[key] = QtGui.QPixmap.fromImage(image.scaled(
                side, side, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                QtCore.Qt.TransformationMode.SmoothTransformation))
        return self._scaled[key]

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._scaled.clear()  # (images are scaled again for the new size, each in the blank before it shows)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor(self.protocol.background))
        if self._on_screen is not None:
            pixmap, box = self._pixmap(self._on_screen), self._image_rect()
            painter.drawPixmap(box.x() + (box.width() - pixmap.width()) // 2,
                               box.y() + (box.height() - pixmap.height()) // 2, pixmap)
        elif self._fixation:
            painter.setPen(QtGui.QPen(QtGui.QColor("black"), 3))
            c, r = self.rect().center(), max(8, min(self.width(), self.height()) // 40)
            painter.drawLine(c.x() - r, c.y(), c.x() + r, c.y())
            painter.drawLine(c.x(), c.y() - r, c.x(), c.y() + r)
        if self.photodiode:
            painter.fillRect(self._photodiode_rect(), QtGui.QColor("white" if self._on_screen is not None else "black"))
        if self._text:
            painter.setPen(QtGui.QColor("white"))
            font = painter.font()
            font.setPointSize(max(12, self.height() // 40))
            painter.setFont(font)
            painter.drawText(self.rect(), QtCore.Qt.AlignmentFlag.AlignCenter, self._text)
        painter.end()

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802 - Qt's name
        key = event.key()
        if event.isAutoRepeat():
            return
        if key == QtCore.Qt.Key.Key_Escape:
            self.stop()
        elif key == QtCore.Qt.Key.Key_Space:
            if self.state == "paused":
                self.resume()
            else:
                self.pause("paused by the participant")
        else:
            super().keyPressEvent(event)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.stop()
        super().closeEvent(event)
