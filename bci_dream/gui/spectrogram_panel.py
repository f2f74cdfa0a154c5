"""The spectrogram panel: a scrolling time-frequency picture (1-60 Hz, log power) of one channel or of all of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci_dream.gui.panel import Panel, Schedule
from bci_dream.signal.spectrum import segment_samples, spectrogram_columns

#: Seconds between columns (and between updates).
STEP_S = 0.25
#: Seconds each column's spectrum is computed over.
SEGMENT_S = 1.0
#: Seconds of history shown.
HISTORY_S = 30.0
#: Frequencies shown (Hz).
FMIN, FMAX = 1.0, 60.0
#: The choice that averages every channel's power.
ALL_CHANNELS = "all channels (mean)"
#: Colour map: perceptually uniform and readable with the common colour-vision deficiencies.
COLOR_MAP = "cividis"


class SpectrogramPanel(Panel):
    """The power of the chosen channel (or the mean over all channels) of the raw ring buffer in µV, a column every
    :data:`STEP_S` over the :data:`SEGMENT_S` before it, the newest on the right, :data:`HISTORY_S` shown.

    Only the columns whose samples arrived since the last update are computed (a few per update).

    Attributes:
        channel_box: the channel shown, or :data:`ALL_CHANNELS`.
        freqs: float64 [F], the rows' frequencies (Hz).
        columns: float64 [HISTORY_S / STEP_S, F], log10 power (µV²/Hz), oldest first; NaN before the first.
        image: the pyqtgraph image item.
    """

    title = "spectrogram"
    area = "views"

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._live = None
        self._schedule = Schedule(STEP_S)
        self._next_end: int | None = None  # raw-buffer index one past the next column's last sample
        self._rect: tuple[float, ...] | None = None
        self.freqs = np.zeros(0)
        self.columns = np.zeros((0, 0))
        self.channel_box = QtWidgets.QComboBox()
        self.channel_box.currentIndexChanged.connect(self._restart)
        self.widget = self._plot_under_controls("spectrogram of", self.channel_box, 120)
        self.plot = self.widget.getPlotItem()
        self.plot.setLabel("bottom", "seconds ago")
        self.plot.setLabel("left", "frequency", units="Hz")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get(COLOR_MAP, source="matplotlib"))
        self.plot.addItem(self.image)
        self.plot.disableAutoRange()

    def set_stream(self, live: Any | None) -> None:
        self._live = live
        self.channel_box.blockSignals(True)
        chosen = self.channel_box.currentText()
        self.channel_box.clear()
        if live is not None:
            self.channel_box.addItems([ALL_CHANNELS, *live.pipeline.info.ch_names])
            if chosen and self.channel_box.findText(chosen) >= 0:
                self.channel_box.setCurrentText(chosen)
        self.channel_box.blockSignals(False)
        self._restart()

    def _restart(self) -> None:
        """Forget the columns (a new stream or channel)."""
        self._next_end = None
        self.columns = np.zeros((0, 0))
        self.image.clear()
        self._schedule.start(STEP_S / 3)  # (a third of a step after the spectrum's turn)

    def refresh(self) -> None:
        if self._live is not None and self._schedule.due():
            self.update_columns()

    def update_columns(self) -> None:
        """Add the columns whose samples arrived since the last call, and redraw."""
        pipeline = self._live.pipeline
        info = pipeline.info
        sfreq = info.sfreq
        step, segment = max(1, int(round(STEP_S * sfreq))), segment_samples(SEGMENT_S, sfreq)
        raw = pipeline.raw
        newest = raw.total_written
        n_cols = int(round(HISTORY_S / STEP_S))
        if self._next_end is None or self._next_end < raw.oldest_index + segment:
            self._next_end = max(segment, newest - (n_cols - 1) * step)
        if newest < self._next_end:
            return
        ends = np.arange(self._next_end, newest + 1, step)
        read = raw.range(int(ends[0]) - segment, int(ends[-1]))
        if read.lost or len(read) < segment:
            self._next_end = None
            return
        channel = self.channel_box.currentIndex() - 1  # (-1: all channels)
        data = read.data if channel < 0 else read.data[:, channel]
        self.freqs, power = spectrogram_columns(data * info.to_microvolts, sfreq, ends - read.start, SEGMENT_S,
                                                FMIN, FMAX)
        new = np.log10(np.maximum(power, 1e-12))
        if self.columns.shape[1:] != new.shape[1:]:
            self.columns = np.full((n_cols, new.shape[1]), np.nan)
        self.columns = np.concatenate([self.columns, new])[-n_cols:]
        self._next_end = int(ends[-1]) + step
        self._draw()

    def _draw(self) -> None:
        shown = self.columns[np.isfinite(self.columns).all(axis=1)]
        if shown.size == 0 or len(self.freqs) < 2:
            return
        low, high = np.percentile(shown, [5, 99])
        image = np.where(np.isfinite(self.columns), self.columns, low).T  # [F, columns]: frequency up
        self.image.setImage(image, levels=(low, max(high, low + 1e-6)), autoLevels=False)
        df = self.freqs[1] - self.freqs[0]
        rect = (-HISTORY_S, self.freqs[0] - df / 2, HISTORY_S, len(self.freqs) * df)
        if rect != self._rect:  # (the view's range is set once per stream: a range change lays out the axes again)
            self._rect = rect
            self.image.setRect(QtCore.QRectF(*rect))
            self.plot.setXRange(-HISTORY_S, 0, padding=0)
            self.plot.setYRange(FMIN, FMAX, padding=0)

    def save_state(self, settings: QtCore.QSettings) -> None:
        settings.setValue("channel", self.channel_box.currentText())

    def restore_state(self, settings: QtCore.QSettings) -> None:
        value = settings.value("channel")
        if value:
            self.channel_box.addItem(str(value))  # (kept until a stream lists its channels)
            self.channel_box.setCurrentText(str(value))
