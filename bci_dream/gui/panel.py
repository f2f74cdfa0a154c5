"""The panel interface: one view the main window lays out (traces, images, and whatever comes next).

A new panel is one file with a :class:`Panel` subclass, listed in :data:`bci_dream.gui.main_window.PANELS`;
the window builds it, places it in its ``area``, and calls the hooks below. Every hook runs on the GUI thread
and has a default that does nothing, so a panel overrides only what it shows.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Literal

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets


class Schedule:
    """When a view that redraws every ``period_s`` (not every frame) is next due, on the GUI thread's clock.

    Each view starts its schedule at a delay of its own and keeps that beat, so that the views' updates do not land
    on one frame of the 60 Hz timer; after a pause longer than a period it starts the beat again from then.
    """

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.next_at = -float("inf")

    def start(self, delay_s: float = 0.0) -> None:
        """Be due first ``delay_s`` seconds from now."""
        self.next_at = time.monotonic() + delay_s

    def due(self) -> bool:
        """True when the time has come (and the next time is one period on)."""
        now = time.monotonic()
        if now < self.next_at:
            return False
        late = now - self.next_at > self.period_s
        self.next_at = (now if late else self.next_at) + self.period_s
        return True


class Panel(QtWidgets.QWidget):
    """Base class of the main window's panels.

    Class attributes:
        title: the panel's name (its settings group and object name).
        area: ``"left"`` (beside the window's left edge), ``"views"`` (the signal views, in the middle) or
            ``"right"``; panels of one area stack vertically.
        stretch: share of its area's height.
    """

    title: ClassVar[str] = "panel"
    area: ClassVar[Literal["left", "views", "right"]] = "left"
    stretch: ClassVar[int] = 1

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(self.title)

    def toolbar_actions(self) -> list[QtGui.QAction]:
        """Actions the window puts in its toolbar (created once, owned by the panel)."""
        return []

    def set_stream(self, live: Any | None) -> None:
        """A stream (:class:`~bci_dream.acquisition.live.LiveStream`) was opened, or None: it was closed."""

    def set_labels(self, labels: list[str]) -> None:
        """Generation started; ``labels`` say which parts are untrained (empty: none)."""

    def show_frame(self, frame: Any) -> None:
        """A generated :class:`~bci_dream.runtime.engine.Frame` (with an image) of the running engine."""

    def update_status(self, status: Any | None) -> None:
        """Twice a second: the stream's :class:`~bci_dream.acquisition.live.StreamStatus`, or None without one."""

    def refresh(self) -> None:
        """About 60 times a second, for views that follow the signal."""

    def save_state(self, settings: QtCore.QSettings) -> None:
        """Remember the panel's own controls (inside the panel's settings group)."""

    def restore_state(self, settings: QtCore.QSettings) -> None:
        """Restore what :meth:`save_state` remembered."""

    def _plot_under_controls(self, caption: str, control: QtWidgets.QWidget, min_height: int) -> pg.PlotWidget:
        """Lay the panel out as a row ``caption control`` above a plot that takes the keyboard never (the window's
        shortcuts stay live) and keeps ``min_height`` pixels; returns the plot widget (more widgets may follow)."""
        widget = pg.PlotWidget()
        widget.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        widget.setMinimumHeight(min_height)
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel(caption))
        controls.addWidget(control, 1 if isinstance(control, QtWidgets.QComboBox) else 0)
        if not isinstance(control, QtWidgets.QComboBox):
            controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(widget, 1)
        return widget


def setting_number(settings: QtCore.QSettings, key: str) -> float | None:
    """The finite number stored under ``key``; None when there is none, or what is there is not a number (a settings
    file edited by hand, or written by another version, must not stop the window from opening)."""
    value = settings.value(key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
