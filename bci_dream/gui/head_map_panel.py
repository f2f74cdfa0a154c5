"""The head map panel: band power or signal quality at each channel's place on a head seen from above."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.gui.panel import Panel, Schedule
from bci_dream.gui.theme import QUALITY_COLORS
from bci_dream.signal.band_features import BANDS
from bci_dream.signal.head_map import flat_positions, relative_band_power

#: Seconds between updates.
UPDATE_S = 1.0
#: Seconds of the filtered signal each band-power map is computed over.
WINDOW_S = 2.0
#: The choice that colours channels by their quality status instead of a band.
QUALITY = "signal quality"
COLOR_MAP = "cividis"


@functools.lru_cache(maxsize=512)
def _brush(color: str) -> QtGui.QBrush:
    return pg.mkBrush(color)


class HeadMapPanel(Panel):
    """Each channel of the open stream at its 10-05 site on a head outline (nose up), coloured by its relative power
    in the chosen band over the last :data:`WINDOW_S` of the filtered signal (cividis, from the map's lowest to its
    highest value) or by its quality status; updated every :data:`UPDATE_S`. Channels that are not 10-05 sites are
    not drawn (the legend counts them).

    Attributes:
        mode_box: a band of :data:`~bci_dream.signal.band_features.BANDS` or :data:`QUALITY`.
        positions: float64 [channels, 2] on the unit head (NaN: not a site).
        values: float64 [channels], the band's relative power (NaN where not computed).
        colors: the spots' colours, one per drawn channel (``#rrggbb``).
    """

    title = "head map"
    area = "views"

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._live = None
        self._schedule = Schedule(UPDATE_S)
        self.positions = np.zeros((0, 2))
        self.values = np.zeros(0)
        self.colors: list[str] = []
        self.mode_box = QtWidgets.QComboBox()
        self.mode_box.addItems([f"{band} ({lo:g}-{hi:g} Hz)" for band, (lo, hi) in BANDS.items()] + [QUALITY])
        self.mode_box.setCurrentIndex(list(BANDS).index("alpha"))
        self.mode_box.currentIndexChanged.connect(self._redraw_now)
        self.legend = QtWidgets.QLabel()
        # (its text changes every second: it must not make the window lay itself out again each time)
        self.legend.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.widget = self._plot_under_controls("head map of", self.mode_box, 140)
        self.layout().addWidget(self.legend)
        self.plot = self.widget.getPlotItem()
        self.plot.setAspectLocked(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMouseEnabled(False, False)
        self.plot.disableAutoRange()
        self._draw_head()
        self.spots = pg.ScatterPlotItem(size=14, pen=pg.mkPen("#303030"))
        self.plot.addItem(self.spots)
        self.labels: list[pg.TextItem] = []
        self._cmap = pg.colormap.get(COLOR_MAP, source="matplotlib")

    def _draw_head(self) -> None:
        pen = pg.mkPen("#808080", width=2)
        angle = np.linspace(0, 2 * np.pi, 181)
        self.plot.plot(np.cos(angle), np.sin(angle), pen=pen)
        self.plot.plot([-0.12, 0.0, 0.12], [0.99, 1.12, 0.99], pen=pen)  # nose
        ear = np.linspace(-np.pi / 2, np.pi / 2, 31)
        for side in (-1, 1):
            self.plot.plot(side * (1.0 + 0.07 * np.cos(ear)), 0.18 * np.sin(ear), pen=pen)
        self.plot.setRange(xRange=(-1.25, 1.25), yRange=(-1.2, 1.25), padding=0)

    def set_stream(self, live: Any | None) -> None:
        self._live = live
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        self.spots.clear()
        self.values = np.zeros(0)
        names = list(live.pipeline.info.ch_names) if live is not None else []
        self.positions = flat_positions(names) if names else np.zeros((0, 2))
        for name, (x, y) in zip(names, self.positions):
            if np.isfinite(x):
                label = pg.TextItem(name, color="#c8c8c8", anchor=(0.5, -0.35))
                label.setPos(x, y)
                self.plot.addItem(label)
                self.labels.append(label)
        self._schedule.start(UPDATE_S * 2 / 3)  # (its turn away from the other views')

    def _redraw_now(self) -> None:
        if self._live is not None:
            self._schedule.start(UPDATE_S)
            self.update_map()

    def refresh(self) -> None:
        if self._live is not None and self._schedule.due():
            self.update_map()

    def update_map(self) -> None:
        """Recompute the colours from the filtered ring buffer (or the quality) and redraw."""
        pipeline = self._live.pipeline
        drawn = np.isfinite(self.positions[:, 0])
        left_out = int((~drawn).sum())
        if self.mode_box.currentText() == QUALITY:
            status = {q.name: q.status for q in pipeline.quality}
            names = pipeline.info.ch_names
            self.colors = [QUALITY_COLORS.get(status.get(names[i], "good"), QUALITY_COLORS["good"])
                           for i in np.flatnonzero(drawn)]
            legend = "  ".join(f"<span style='color:{c}'>●</span> {s.replace('_', ' ')}"
                               for s, c in QUALITY_COLORS.items())
        else:
            band = list(BANDS.values())[self.mode_box.currentIndex()]
            sfreq = pipeline.info.sfreq
            res = pipeline.filtered.latest(int(WINDOW_S * sfreq))
            if res.data.shape[0] < sfreq:
                return
            self.values = relative_band_power(res.data, sfreq, band)
            shown = self.values[drawn]
            finite = shown[np.isfinite(shown)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            scaled = (np.nan_to_num(shown, nan=low) - low) / max(high - low, 1e-12)
            self.colors = [c.name() for c in self._cmap.map(scaled, mode="qcolor")]
            legend = (f"{self.mode_box.currentText()} power / 1-40 Hz power: "
                      f"{low:.2f} (dark) to {high:.2f} (light)")
        if left_out:
            legend += f"; {left_out} channel{'s' if left_out != 1 else ''} not at a 10-05 site, not drawn"
        if legend != self.legend.text():
            self.legend.setText(legend)
        brushes = [_brush(c) for c in self.colors]
        if len(self.spots.data) == len(brushes):
            self.spots.setBrush(brushes)  # (the sites stay where they are: only their colours change)
        else:
            self.spots.setData(pos=self.positions[drawn], brush=brushes)

    def save_state(self, settings: QtCore.QSettings) -> None:
        settings.setValue("mode", self.mode_box.currentText())

    def restore_state(self, settings: QtCore.QSettings) -> None:
        value = settings.value("mode")
        if value and self.mode_box.findText(str(value)) >= 0:
            self.mode_box.setCurrentText(str(value))
