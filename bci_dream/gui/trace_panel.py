"""The main window's signal panel: span, scale, filtered and band-power controls above the live traces."""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.gui.panel import Panel, setting_number
from bci_dream.gui.traces import TraceView

#: How long after a stream opens the traces are scaled to it (once a second of signal is in).
AUTO_SCALE_AFTER_MS = 1500


class TracePanel(Panel):
    """All channels of the open stream (:class:`~bci_dream.gui.traces.TraceView`) with their view controls.

    Attributes:
        traces: the trace view.
        span_box, scale_box, filtered_box, band_box: its controls (seconds shown, µV per row, filtered or raw,
            band-power panel).
    """

    title = "traces"
    area = "left"

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.traces = TraceView()
        self._live = None
        controls = QtWidgets.QHBoxLayout()
        self.span_box = QtWidgets.QDoubleSpinBox(minimum=2, maximum=20, singleStep=1, suffix=" s", value=10)
        self.span_box.valueChanged.connect(self.traces.set_span)
        self.scale_box = QtWidgets.QDoubleSpinBox(minimum=0.5, maximum=1_000_000, singleStep=10, suffix=" µV",
                                                  value=100)
        self.scale_box.valueChanged.connect(self.traces.set_scale)
        self.traces.scale_changed.connect(self.scale_box.setValue)  # (the view's +/- keys)
        self.traces.span_changed.connect(self.span_box.setValue)  # ([ and ])
        self.filtered_box = QtWidgets.QCheckBox("filtered", checked=True)
        self.filtered_box.toggled.connect(self.traces.set_show_filtered)
        self.band_box = QtWidgets.QCheckBox("band power")
        self.band_box.toggled.connect(self.traces.set_band_power_visible)
        for label, widget in (("span", self.span_box), ("scale", self.scale_box)):
            controls.addWidget(QtWidgets.QLabel(label))
            controls.addWidget(widget)
        controls.addWidget(self.filtered_box)
        controls.addWidget(self.band_box)
        controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.traces, 1)
        self.auto_scale_action = QtGui.QAction("Auto scale", self)
        self.auto_scale_action.setShortcut(QtGui.QKeySequence("A"))
        self.auto_scale_action.setToolTip("Auto scale (A)")
        self.auto_scale_action.triggered.connect(self.auto_scale)

    def toolbar_actions(self) -> list[QtGui.QAction]:
        return [self.auto_scale_action]

    def auto_scale(self) -> None:
        """Set the vertical scale so that a typical channel's swing fills its row (a 1-2-5 value)."""
        if self._live is not None:
            self.traces.auto_scale()  # (its scale_changed signal sets the scale box)

    def set_stream(self, live: Any | None) -> None:
        self._live = live
        self.traces.set_pipeline(live.pipeline if live is not None else None)
        if live is not None:
            QtCore.QTimer.singleShot(AUTO_SCALE_AFTER_MS, self, self.auto_scale)

    def update_status(self, status: Any | None) -> None:
        if status is not None:
            self.traces.set_quality(status.quality)

    def refresh(self) -> None:
        self.traces.refresh()

    def save_state(self, settings: QtCore.QSettings) -> None:
        settings.setValue("span_s", self.span_box.value())
        settings.setValue("scale_uv", self.scale_box.value())

    def restore_state(self, settings: QtCore.QSettings) -> None:
        group = settings.group()
        for box, key in ((self.span_box, "span_s"), (self.scale_box, "scale_uv")):
            value = setting_number(settings, key)
            if settings.value(key) is None and group:  # (saved before the panels had groups: the top-level key)
                settings.endGroup()
                value = setting_number(settings, key)
                settings.beginGroup(group)
            if value is not None:
                box.setValue(value)
