"""The show output: a borderless full-screen image window on a chosen screen (a second monitor, a projector), with
a crossfade between frames.

The window draws the newest image scaled to fill the screen (aspect kept, black bars), fading from the previous
one over ``fade_ms``; the labels that say which parts are untrained stay in a corner (honest on stage too). Esc
closes it.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.core.errors import BciDreamError
from bci_dream.gui.image_panel import to_qimage

FADE_MS = 400


class ScreenError(BciDreamError):
    """A screen index that does not exist."""


def screen_names() -> list[str]:
    """``"0: HDMI-1 1920x1080"`` ... for the screens Qt sees."""
    return [f"{i}: {s.name()} {s.geometry().width()}x{s.geometry().height()}"
            for i, s in enumerate(QtGui.QGuiApplication.screens())]


class ShowWindow(QtWidgets.QWidget):
    """Full-screen images on screen ``screen`` with a crossfade (see the module docstring).

    Raises:
        ScreenError: no such screen (the screens there are are named).
    """

    def __init__(self, screen: int = 0, *, fade_ms: int = FADE_MS, parent: QtWidgets.QWidget | None = None) -> None:
        screens = QtGui.QGuiApplication.screens()
        if not 0 <= screen < len(screens):
            raise ScreenError(f"there is no screen {screen}; screens: {'; '.join(screen_names())}")
        super().__init__(parent, QtCore.Qt.WindowType.Window | QtCore.Qt.WindowType.FramelessWindowHint)
        self.setWindowTitle("bci-dream show")
        self.setStyleSheet("background: black;")
        self.setCursor(QtCore.Qt.CursorShape.BlankCursor)
        self.screen_index = screen
        self._target = screens[screen]
        self.setGeometry(self._target.geometry())
        self.fade_ms = int(fade_ms)
        self._current: QtGui.QPixmap | None = None
        self._previous: QtGui.QPixmap | None = None
        self._fade = 1.0
        self._labels = ""
        self.frames_shown = 0
        self._animation = QtCore.QVariantAnimation(self, startValue=0.0, endValue=1.0, duration=max(1, self.fade_ms))
        self._animation.valueChanged.connect(self._on_fade)

    def show_on_screen(self) -> None:
        """Show full screen on the chosen screen."""
        self.setScreen(self._target)
        self.setGeometry(self._target.geometry())
        self.showFullScreen()

    def set_labels(self, labels: list[str]) -> None:
        self._labels = " · ".join(labels)
        self.update()

    def show_image(self, image) -> None:
        """Fade to ``image`` (PIL), from what is on screen (a fade still running continues from its blend)."""
        if self._animation.state() == QtCore.QAbstractAnimation.State.Running and self._current is not None:
            self._previous = self.grab()  # (the blend as shown, not the half-faded image at full opacity)
        else:
            self._previous = self._current
        self._current = QtGui.QPixmap.fromImage(to_qimage(image))
        self.frames_shown += 1
        if self._previous is None or self.fade_ms <= 0:
            self._fade = 1.0
            self.update()
            return
        self._animation.stop()
        self._animation.start()

    def _on_fade(self, value) -> None:
        self._fade = float(value)
        self.update()

    def _draw(self, painter: QtGui.QPainter, pixmap: QtGui.QPixmap, opacity: float) -> None:
        size = pixmap.size().scaled(self.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio)
        rect = QtCore.QRect(QtCore.QPoint(0, 0), size)
        rect.moveCenter(self.rect().center())
        painter.setOpacity(opacity)
        painter.drawPixmap(rect, pixmap)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtCore.Qt.GlobalColor.black)
        painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
        if self._previous is not None and self._fade < 1.0:
            self._draw(painter, self._previous, 1.0)
        if self._current is not None:
            self._draw(painter, self._current, self._fade)
        if self._labels:
            painter.setOpacity(0.8)
            painter.setPen(QtGui.QColor("#fc0"))
            painter.drawText(self.rect().adjusted(12, 8, -12, -8),
                             QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignBottom, self._labels)
        painter.end()

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802 - Qt's name
        if event.key() == QtCore.Qt.Key.Key_Escape:
            self.close()
        else:
            super().keyPressEvent(event)
