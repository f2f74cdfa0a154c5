"""The spectrum panel: each channel's power spectrum (Welch, log scale, 1-60 Hz) of the last seconds, mains marked.

Drawn cheaply enough to sit beside the 60 Hz traces: one curve item per colour (channels ``k``, ``k + 8``, ... share
one, as they share its colour), log10 taken here on a linear axis that labels powers of ten, and the power range
changed only when the spectra leave it or use less than half of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci_dream.gui.panel import Panel, Schedule, setting_number
from bci_dream.signal.spectrum import mains_peak, welch_psd

#: Seconds between spectrum updates (Welch over seconds of signal is not redone every frame).
UPDATE_S = 0.25
#: Frequencies shown (Hz).
FMIN, FMAX = 1.0, 60.0
#: Pixels of plot the panel keeps however the window is shared out.
MIN_HEIGHT = 170
#: Colour-blind-safe cycle (Okabe & Ito) for the channels' curves.
CURVE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")


class SpectrumPanel(Panel):
    """Power spectral density of every channel of the open stream, from its raw ring buffer in µV (so the mains
    line the filters remove stays visible), over the last ``seconds_box`` seconds, redrawn every
    :data:`UPDATE_S`; a dashed line and label mark 50 or 60 Hz when it stands out (:func:`mains_peak`).

    Attributes:
        plot: the pyqtgraph plot (log-power axis, µV²/Hz).
        curves: one curve item per colour in use (``min(channels, 8)``); item ``k`` draws channels ``k``, ``k + 8``, ...
        seconds_box: seconds of signal each spectrum is computed over.
        mains: the marked line frequency, or None.
    """

    title = "spectrum"
    area = "views"

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._live = None
        self._schedule = Schedule(UPDATE_S)
        self.mains: float | None = None
        self.freqs = np.zeros(0)
        self.psd = np.zeros((0, 0))
        self.seconds_box = QtWidgets.QDoubleSpinBox(minimum=1, maximum=30, singleStep=1, suffix=" s", value=4)
        self.widget = self._plot_under_controls("spectrum over", self.seconds_box, MIN_HEIGHT)
        self.plot = self.widget.getPlotItem()
        self.plot.getAxis("left").setLogMode(True)  # (the curves hold log10 power: the axis labels 10^k)
        self.plot.getViewBox().disableAutoRange(pg.ViewBox.YAxis)
        self.plot.setLabel("bottom", "frequency", units="Hz")
        self.plot.setLabel("left", "power (µV²/Hz)")
        self.plot.setXRange(FMIN, FMAX, padding=0)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.mains_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#D55E00", style=QtCore.Qt.PenStyle.DashLine),
                                          label="", labelOpts={"position": 0.9, "color": "#D55E00"})
        self.mains_line.setVisible(False)
        self.plot.addItem(self.mains_line)
        self.curves: list[pg.PlotCurveItem] = []
        self._decades: tuple[float, float] | None = None  # (the log10 power range shown)

    def set_stream(self, live: Any | None) -> None:
        self._live = live
        for curve in self.curves:
            self.plot.removeItem(curve)
        self.curves = []
        if live is not None:
            n_items = min(live.pipeline.info.n_channels, len(CURVE_COLORS))
            self.curves = [pg.PlotCurveItem(pen=pg.mkPen(CURVE_COLORS[k], width=1), skipFiniteCheck=True)
                           for k in range(n_items)]
            for curve in self.curves:
                self.plot.addItem(curve)
        self._decades = None
        self._schedule.start()

    def refresh(self) -> None:
        if self._live is not None and self._schedule.due():
            self.update_spectrum()

    def update_spectrum(self) -> None:
        """Recompute the spectra from the raw ring buffer and redraw (needs at least half a second of signal)."""
        pipeline = self._live.pipeline
        sfreq = pipeline.info.sfreq
        res = pipeline.raw.latest(int(self.seconds_box.value() * sfreq))
        if res.data.shape[0] < sfreq / 2:
            return
        self.freqs, self.psd = welch_psd(res.data * pipeline.info.to_microvolts, sfreq, FMIN, FMAX)
        if len(self.freqs) == 0:  # (a stream too slow to hold any frequency shown: its Nyquist is below FMIN)
            return
        log_psd = np.log10(np.maximum(self.psd, 1e-12))  # (a flat channel is drawn at the floor, not dropped)
        n_freqs, step = len(self.freqs), len(self.curves)
        for k, curve in enumerate(self.curves):
            rows = log_psd[k::step]
            connect = np.ones(rows.size, dtype=bool)
            connect[n_freqs - 1::n_freqs] = False  # (one channel's line ends where the next one's starts)
            curve.setData(np.tile(self.freqs, rows.shape[0]), rows.ravel(), connect=connect)
        self._fit_power_range(float(log_psd.min()), float(log_psd.max()))
        self.mains = mains_peak(self.freqs, self.psd)
        self.mains_line.setVisible(self.mains is not None)
        if self.mains is not None:
            self.mains_line.setValue(self.mains)
            self.mains_line.label.setFormat(f"{self.mains:g} Hz mains")

    def _fit_power_range(self, low: float, high: float) -> None:
        """Show whole decades around ``[low, high]`` (log10 µV²/Hz), changed only when the data leave them or fill
        less than half of them (a new range lays the axis out again, which costs more than the curves)."""
        shown = self._decades
        if shown is not None and shown[0] <= low and high <= shown[1] and (high - low) >= (shown[1] - shown[0]) / 2:
            return
        self._decades = (float(np.floor(low)), float(np.ceil(high)) if np.ceil(high) > np.floor(low) else low + 1)
        self.plot.setYRange(*self._decades, padding=0.02)

    def channel_curve(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """The drawn line of channel ``channel``: frequencies (Hz) and log10 power (µV²/Hz)."""
        x, y = self.curves[channel % len(self.curves)].getData()
        n, row = len(self.freqs), channel // len(self.curves)
        return x[row * n:(row + 1) * n], y[row * n:(row + 1) * n]

    def save_state(self, settings: QtCore.QSettings) -> None:
        settings.setValue("seconds", self.seconds_box.value())

    def restore_state(self, settings: QtCore.QSettings) -> None:
        value = setting_number(settings, "seconds")
        if value is not None:
            self.seconds_box.setValue(value)
