"""Scrolling EEG traces for the desktop app: one row per channel, markers, and a band-power panel.

:class:`TraceView` is refreshed by the main window's ~60 Hz timer on the GUI thread. Each refresh
copies only the samples that arrived since the previous one out of the pipeline's ring buffer (the
buffer's lock is held for that copy only) and draws them. Drawing is kept cheap this way:

- The traces live in a *ring image*: a ``QImage`` with one column per device pixel of the plot area
  (plus a margin). A refresh draws the new samples as short line pieces into the columns they fall in
  and clears the columns that scroll in; the view then blits the image in two pieces. The cost of a
  frame grows with the new samples, not with the span or the channel count.
- Everything is redrawn (min/max-decimated to one pair of points per pixel column, vectorised over
  channels with numpy) only when the picture changes as a whole: span, scale, raw/filtered, quality
  tint, widget size, a new pipeline, or a gap in the data.
- Time runs smoothly between chunks: "now" is the newest sample's timestamp plus the time since its
  chunk arrived (at most :data:`MAX_LEAD_S`), so the traces scroll at every frame, by whole pixels.
- Markers are pooled ``InfiniteLine``\\ s under one layer item; a frame moves the layer, not each line.
- Band power (Welch) is computed a few times a second, never per frame.

Colours follow the channel's quality status (see :meth:`TraceView.set_quality`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from pyqtgraph import functions as fn
from PySide6 import QtCore, QtGui, QtWidgets
from scipy import signal as sps

from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.ring_buffer import RingBuffer
from bci_dream.core.types import Marker
from bci_dream.gui.theme import QUALITY_COLORS
from bci_dream.signal.montage import Montage
from bci_dream.signal.quality import ChannelQuality

log = logging.getLogger(__name__)

SPAN_RANGE_S = (2.0, 20.0)
DEFAULT_SPAN_S = 10.0
DEFAULT_SCALE_UV = 100.0
SCALE_RANGE_UV = (0.5, 1e6)
#: Vertical scales the +/- keys step through (µV per channel row).
SCALE_STEPS_UV = tuple(m * 10.0 ** e for e in range(6) for m in (1, 2, 5))
#: How far "now" may run ahead of the newest sample while waiting for the next chunk, in seconds.
MAX_LEAD_S = 0.25
#: Columns of the ring image beyond the visible width, so that drawing slightly ahead of "now" is safe.
RING_MARGIN_PX = 64
#: Decimate to min/max pairs when at least this many samples fall into one pixel column.
DECIMATE_FROM = 3
MAX_MARKER_LINES = 64

BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0), ("theta", 4.0, 8.0), ("alpha", 8.0, 13.0), ("beta", 13.0, 30.0), ("gamma", 30.0, 45.0),
)
BAND_SYMBOLS = ("δ", "θ", "α", "β", "γ")
BAND_COLORS = ("#4c72b0", "#55a868", "#e6c229", "#dd8452", "#c44e52")
BAND_POWER_WINDOW_S = 2.0
BAND_POWER_INTERVAL_S = 0.25

#: Trace colour per quality status; ``good`` (and unknown channels) use the normal colour.
STATUS_COLORS = {status: QtGui.QColor(color).getRgb()[:3] for status, color in QUALITY_COLORS.items()
                 if status != "good"}
MARKER_COLOR = (255, 220, 90)
#: Channels that are not 10-05 sites (the EEG model never sees them), whatever their quality: dim grey.
UNMAPPED_RGB = (75, 75, 75)


def peak_decimate(data: np.ndarray, k: int) -> np.ndarray:
    """Min and max of each group of ``k`` consecutive samples.

    Args:
        data: [n, channels]; a trailing group of fewer than ``k`` samples is left out.
        k: samples per group (>= 1).

    Returns:
        [2 * (n // k), channels], same dtype: min then max of each group. NaNs are ignored unless a
        whole group is NaN.
    """
    m = data.shape[0] // k
    groups = data[: m * k].reshape(m, k, data.shape[1])
    out = np.empty((m, 2, data.shape[1]), data.dtype)
    np.fmin.reduce(groups, axis=1, out=out[:, 0])
    np.fmax.reduce(groups, axis=1, out=out[:, 1])
    return out.reshape(2 * m, data.shape[1])


def band_power(data_uv: np.ndarray, sfreq: float, bands: Sequence[tuple[str, float, float]] = BANDS) -> np.ndarray:
    """Absolute power per channel and band from Welch's method (1 s Hann segments, half overlap).

    Args:
        data_uv: [n, channels] in µV; non-finite values count as 0.
        sfreq: sampling rate in Hz.
        bands: (name, low Hz, high Hz), each band taking the frequencies ``low <= f < high``.

    Returns:
        float64 [channels, len(bands)] in µV² (power spectral density integrated over the band);
        0 for bands above Nyquist.
    """
    x = np.nan_to_num(np.asarray(data_uv, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    nperseg = max(8, min(x.shape[0], int(round(sfreq))))
    freqs, psd = sps.welch(x, fs=sfreq, nperseg=nperseg, axis=0)
    df = freqs[1] - freqs[0]
    out = np.empty((x.shape[1], len(bands)))
    for j, (_, lo, hi) in enumerate(bands):
        sel = (freqs >= lo) & (freqs < hi)
        out[:, j] = psd[sel].sum(axis=0) * df
    return out


def _finite_mean(data: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Mean of each column of ``data`` [n, channels] over its finite values; ``fallback`` where there are none."""
    finite = np.isfinite(data)
    count = finite.sum(axis=0)
    total = np.where(finite, data, 0).sum(axis=0, dtype=np.float64)
    return np.where(count > 0, total / np.maximum(count, 1), fallback)


def _pen(rgb: tuple[int, int, int], width: float) -> QtGui.QPen:
    pen = QtGui.QPen(QtGui.QColor(*rgb))
    pen.setCosmetic(True)
    pen.setWidthF(width)
    return pen


class _ChannelAxis(pg.AxisItem):
    """Left axis whose tick labels (channel names) are tinted one by one."""

    def __init__(self) -> None:
        super().__init__("left")
        self._text_colors: dict[str, QtGui.QColor] = {}

    def set_text_colors(self, colors: dict[str, QtGui.QColor]) -> None:
        self._text_colors = colors
        self.picture = None  # AxisItem caches its drawing in a QPicture
        self.update()

    def drawPicture(self, p, axisSpec, tickSpecs, textSpecs) -> None:
        super().drawPicture(p, axisSpec, tickSpecs, [])
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        p.setClipRect(self.boundingRect().toAlignedRect())
        default = self.textPen()
        for rect, flags, text in textSpecs:
            color = self._text_colors.get(text)
            p.setPen(default if color is None else QtGui.QPen(color))
            p.drawText(rect, int(flags), text)


class _TraceCanvas(QtWidgets.QGraphicsItem):
    """The ring image of the traces, blitted over the whole ViewBox (a child of it, in its pixel coordinates).

    Absolute column ``u`` (device pixels since the drawing origin) is stored in image column
    ``u % ring``. Columns ``[cleared_until - ring, cleared_until)`` hold current content; the view shows
    ``width`` columns ending at ``u_now``.
    """

    def __init__(self, parent: QtWidgets.QGraphicsItem) -> None:
        super().__init__(parent)
        self.rect = QtCore.QRectF()
        self.dpr = 1.0
        self.width = 0
        self.height = 0
        self.ring = 0
        self.image: QtGui.QImage | None = None
        self.background = QtGui.QColor(0, 0, 0)
        self.u_now = 0
        self.cleared_until = 0
        self.paints = 0

    def set_geometry(self, rect: QtCore.QRectF, dpr: float) -> bool:
        """Follow the ViewBox's rectangle (logical pixels); True when the image size changes."""
        self.prepareGeometryChange()
        self.rect = QtCore.QRectF(0, 0, rect.width(), rect.height())
        width = max(0, int(round(rect.width() * dpr)))
        height = max(0, int(round(rect.height() * dpr)))
        if (width, height, dpr) == (self.width, self.height, self.dpr) and self.image is not None:
            return False
        self.width, self.height, self.dpr = width, height, dpr
        self.ring = width + RING_MARGIN_PX
        self.image = None
        if width > 0 and height > 0:
            self.image = QtGui.QImage(self.ring, height, QtGui.QImage.Format.Format_RGB32)
            self.image.fill(self.background)
        return True

    def clear_all(self, until: int) -> None:
        """Blank the whole image; it now stands for columns ``[until - ring, until)``."""
        if self.image is not None:
            self.image.fill(self.background)
        self.cleared_until = until

    def clear_to(self, target: int) -> None:
        """Blank the columns from ``cleared_until`` up to ``target`` (they scroll in next)."""
        start = self.cleared_until
        if self.image is None or target <= start:
            return
        self.cleared_until = target
        n = target - start
        if n >= self.ring:
            self.image.fill(self.background)
            return
        c0 = start % self.ring
        first = min(n, self.ring - c0)
        p = QtGui.QPainter(self.image)
        p.fillRect(c0, 0, first, self.height, self.background)
        if n > first:
            p.fillRect(0, 0, n - first, self.height, self.background)
        p.end()

    def stroke(self, xs: np.ndarray, ys: np.ndarray, groups: list[tuple[QtGui.QPen, np.ndarray]],
               polylines: bool) -> None:
        """Draw one polyline per channel.

        Args:
            xs: float64 [P], absolute column coordinates (device pixels from the origin), shared by all channels.
            ys: float64 [channels, P], image rows (device pixels from the top).
            groups: (pen, channel indices) per colour.
            polylines: one ``drawPolyline`` per channel (cheaper for long lines) instead of one path per colour.
        """
        if self.image is None or xs.shape[0] < 2:
            return
        base = self.ring * math.floor(float(xs.min()) / self.ring)
        x_local = xs - base
        shifts = [0.0] if float(x_local.max()) < self.ring - 1 else [0.0, -float(self.ring)]
        n_pts = xs.shape[0]
        p = QtGui.QPainter(self.image)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        for shift in shifts:
            xl = x_local + shift if shift else x_local
            for pen, idx in groups:
                p.setPen(pen)
                if polylines:
                    poly = fn.create_qpolygonf(n_pts)
                    arr = fn.ndarray_from_qpolygonf(poly)
                    arr[:, 0] = xl
                    for c in idx:
                        arr[:, 1] = ys[c]
                        p.drawPolyline(poly)
                else:
                    connect = np.ones(len(idx) * n_pts, bool)
                    connect[n_pts - 1::n_pts] = False
                    path = fn.arrayToQPath(np.tile(xl, len(idx)), ys[idx].ravel(), connect=connect,
                                           finiteCheck=False)
                    p.drawPath(path)
        p.end()

    def visible_columns(self) -> list[tuple[int, int, int]]:
        """(image column, view column, count) of the one or two pieces that make up the visible image."""
        if self.image is None:
            return []
        first = self.u_now - self.width + 1
        c0 = first % self.ring
        n1 = min(self.width, self.ring - c0)
        pieces = [(c0, 0, n1)]
        if n1 < self.width:
            pieces.append((0, n1, self.width - n1))
        return pieces

    def visible_array(self) -> np.ndarray:
        """A copy of what the view shows: uint8 [height, width, 3] (RGB)."""
        out = np.zeros((self.height, self.width, 3), np.uint8)
        if self.image is None:
            return out
        img = self.image
        buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
        pixels = buf.reshape(self.height, img.bytesPerLine() // 4, 4)[:, : self.ring]
        for src, dst, n in self.visible_columns():
            out[:, dst:dst + n] = pixels[:, src:src + n, 2::-1]  # BGRA in memory on little-endian
        return out

    def boundingRect(self) -> QtCore.QRectF:
        return self.rect

    def paint(self, p: QtGui.QPainter, option, widget=None) -> None:
        self.paints += 1
        if self.image is None:
            p.fillRect(self.rect, self.background)
            return
        d = self.dpr
        for src, dst, n in self.visible_columns():
            p.drawImage(QtCore.QRectF(dst / d, 0, n / d, self.height / d), self.image,
                        QtCore.QRectF(src, 0, n, self.height))



def nice_scale(uv: float) -> float:
    """The 1-2-5 value (µV) at or above ``uv``."""
    decade = 10.0 ** np.floor(np.log10(max(uv, 1e-3)))
    return float(next(m * decade for m in (1, 2, 5, 10) if m * decade >= uv))

class TraceView(QtWidgets.QWidget):
    """Scrolling EEG traces of a :class:`StreamPipeline`, one row per channel, newest sample on the right.

    Call :meth:`refresh` from a ~60 Hz ``QTimer`` on the GUI thread. Signals ``span_changed`` and
    ``scale_changed`` report changes made with the keyboard (``+``/``-``: scale, ``[``/``]``: span) or
    the setters, so that controls elsewhere can follow.
    """

    span_changed = QtCore.Signal(float)
    scale_changed = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self._pipeline: StreamPipeline | None = None
        self._span_s = DEFAULT_SPAN_S
        self._scale_uv = DEFAULT_SCALE_UV
        self._show_filtered = True
        self._band_visible = False
        self._status: dict[str, str] = {}
        self.unmapped: set[str] = set()  # channels that are not 10-05 sites, drawn dim grey
        #: Refreshes that changed the picture (new samples or a scroll step).
        self.frames_drawn = 0
        #: Full redraws (span, scale, size, source or tint changes, gaps).
        self.full_redraws = 0
        #: Absolute band power of the last 2 s of the filtered signal: float64 [channels, 5] in µV², or None.
        self.band_power: np.ndarray | None = None
        self._band_power_at = -math.inf

        self._plot_widget = pg.PlotWidget(axisItems={"left": _ChannelAxis()})
        self._plot_widget.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self._plot = self._plot_widget.getPlotItem()
        self._axis: _ChannelAxis = self._plot.getAxis("left")
        self._vb: pg.ViewBox = self._plot.getViewBox()
        self._plot.setMenuEnabled(False)
        self._plot.hideButtons()
        self._plot.setMouseEnabled(False, False)
        self._vb.disableAutoRange()
        self._vb.setDefaultPadding(0.0)
        self._canvas = _TraceCanvas(self._vb)
        self.follow_background()
        self._canvas.setZValue(-100)  # above the ViewBox background, below the markers
        self._vb.sigResized.connect(self._on_view_resized)

        self._marker_layer = pg.ItemGroup()
        self._vb.addItem(self._marker_layer, ignoreBounds=True)
        self._marker_pool: list[pg.InfiniteLine] = []
        self._marker_lines: dict[int, pg.InfiniteLine] = {}
        self._recent_markers: deque[tuple[int, Marker]] = deque()
        self._marker_index = 0
        self._marker_scan_needed = False
        self._marker_ref = 0.0  # stream time of marker layer x = 0
        self._layer_x: float | None = None

        self._band_widget = pg.PlotWidget()
        self._band_widget.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self._band_widget.setFixedWidth(170)
        bp = self._band_plot = self._band_widget.getPlotItem()
        bp.setMenuEnabled(False)
        bp.hideButtons()
        bp.setMouseEnabled(False, False)
        bp.hideAxis("left")
        bp.getViewBox().disableAutoRange()
        bp.getViewBox().setDefaultPadding(0.0)
        bp.setXRange(0.0, 1.0, padding=0)
        bp.getAxis("bottom").setTicks([[(0.25, "25"), (0.5, "50"), (0.75, "75 %")]])
        legend = " ".join(f"<span style='color:{c}'>{s}</span>" for s, c in zip(BAND_SYMBOLS, BAND_COLORS))
        bp.setLabel("bottom", legend)
        self._band_bars = [pg.BarGraphItem(x0=[], width=[], y=[], height=[], brush=c, pen=None) for c in BAND_COLORS]
        for bar in self._band_bars:
            bp.addItem(bar)
        self._band_widget.setVisible(False)

        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._plot_widget, 1)
        layout.addWidget(self._band_widget, 0)

        self._groups: list[tuple[QtGui.QPen, np.ndarray]] = []
        self._reset_drawing()
        self._apply_view_ranges()
        self._update_axis_label()
        self._update_channel_layout()

    # -- public API ------------------------------------------------------------------------------

    @property
    def pipeline(self) -> StreamPipeline | None:
        return self._pipeline

    def set_pipeline(self, pipeline: StreamPipeline | None) -> None:
        """Show ``pipeline`` (None clears the view). Quality tints are reset."""
        self._pipeline = pipeline
        self._status = {}
        self.unmapped = set(Montage.canonical().map(pipeline.info.ch_names).unmapped) if pipeline is not None else set()
        self._reset_drawing()
        self._release_all_markers()
        self._recent_markers.clear()
        self._marker_index = 0
        self._layer_x = None
        self.band_power = None
        self._band_power_at = -math.inf
        for bar in self._band_bars:
            bar.setOpts(x0=[], width=[], y=[], height=[])
        self._update_channel_layout()
        if pipeline is None:
            self._canvas.clear_all(0)
            self._canvas.update()

    @property
    def span_s(self) -> float:
        """Seconds shown, 2 to 20."""
        return self._span_s

    @span_s.setter
    def span_s(self, value: float) -> None:
        self.set_span(value)

    @property
    def scroll_px_per_s(self) -> float:
        """Canvas pixels the picture moves per second of stream time (its width over the span): with the chunks
        arriving, what bounds how often the picture can change."""
        return self._pps

    def set_span(self, seconds: float) -> None:
        """Show the last ``seconds`` (clamped to 2..20 s)."""
        seconds = float(min(max(seconds, SPAN_RANGE_S[0]), SPAN_RANGE_S[1]))
        if seconds == self._span_s:
            return
        self._span_s = seconds
        self._dirty = True
        self._apply_view_ranges()
        self.span_changed.emit(seconds)

    @property
    def scale_uv(self) -> float:
        """Microvolts per channel row: a signal that swings by this much spans one row height."""
        return self._scale_uv

    @scale_uv.setter
    def scale_uv(self, value: float) -> None:
        self.set_scale(value)

    def set_scale(self, uv: float) -> None:
        """Set the vertical scale in µV per channel row (clamped to 0.5 µV..1 V)."""
        uv = float(min(max(uv, SCALE_RANGE_UV[0]), SCALE_RANGE_UV[1]))
        if uv == self._scale_uv:
            return
        self._scale_uv = uv
        self._dirty = True
        self._update_axis_label()
        self.scale_changed.emit(uv)

    def auto_scale(self) -> None:
        """Set the vertical scale so that a typical channel's swing over the last second fills its row (a 1-2-5
        value); nothing happens before a second of signal is in."""
        pipeline = self._pipeline
        if pipeline is None:
            return
        buffer = pipeline.filtered if self.show_filtered else pipeline.raw
        data = buffer.latest(int(pipeline.info.sfreq)).data
        if len(data) < 10:
            return
        with np.errstate(all="ignore"):
            std = np.nanstd(data * (1.0 if buffer is pipeline.filtered else pipeline.info.to_microvolts), axis=0)
        std = std[np.isfinite(std) & (std > 0)]
        if std.size:
            self.set_scale(nice_scale(6.0 * float(np.median(std))))

    @property
    def show_filtered(self) -> bool:
        """True: the pipeline's filtered signal; False: the raw signal in µV, each channel centred on its mean.

        The raw signal's mean is taken over the last second at each full redraw, and again whenever the
        new samples' mean moves more than one row away from it.
        """
        return self._show_filtered

    @show_filtered.setter
    def show_filtered(self, value: bool) -> None:
        self.set_show_filtered(value)

    def set_show_filtered(self, filtered: bool) -> None:
        filtered = bool(filtered)
        if filtered == self._show_filtered:
            return
        self._show_filtered = filtered
        self._dirty = True
        self._update_axis_label()

    def set_quality(self, quality: Sequence[ChannelQuality]) -> None:
        """Tint each channel's trace and name by its status.

        good: the normal colour; flat: grey; railed and high_amplitude: red; line_noise: orange.
        Channels missing from ``quality`` are drawn as good. Redraws only when a colour changes.
        """
        status = {q.name: q.status for q in quality}
        if status == self._status:
            return
        old = self._channel_rgbs()
        self._status = status
        if self._channel_rgbs() != old:
            self._update_colors()
            self._dirty = True

    @property
    def band_power_visible(self) -> bool:
        """Whether the band-power panel (beside the traces, one stacked bar per channel row) is shown."""
        return self._band_visible

    @band_power_visible.setter
    def band_power_visible(self, value: bool) -> None:
        self.set_band_power_visible(value)

    def set_band_power_visible(self, visible: bool) -> None:
        self._band_visible = bool(visible)
        self._band_widget.setVisible(self._band_visible)
        self._band_power_at = -math.inf

    @property
    def frames_painted(self) -> int:
        """Times Qt actually painted the traces (for benchmarks: paints, not just refreshes)."""
        return self._canvas.paints

    def visible_markers(self) -> list[tuple[float, str]]:
        """Markers drawn now: (seconds relative to the right edge, <= 0 when in view; text)."""
        right = self._right_edge_time()
        out = []
        for idx, m in self._recent_markers:
            if idx in self._marker_lines and right is not None:
                out.append((m.timestamp - right, m.text))
        return out

    def trace_image(self) -> np.ndarray:
        """What the trace area shows now, without axes or markers: uint8 [height, width, 3] RGB, device pixels."""
        return self._canvas.visible_array()

    def channel_row_centers(self) -> np.ndarray:
        """Image row (device pixels from the top) of each channel's zero line: float64 [channels]."""
        return self._row_center.copy()

    def refresh(self) -> None:
        """Copy what arrived since the last call out of the ring buffer and update the picture (GUI thread)."""
        p = self._pipeline
        canvas = self._canvas
        if p is None or canvas.image is None:
            return
        now = self._stream_now(p)
        if now is None:
            return
        buf = p.filtered if self._show_filtered else p.raw
        changed = False
        behind = buf.total_written - self._next_index
        if behind > self._span_s * (p.info.sfreq or 1000.0):  # e.g. no refresh for a while: start afresh
            self._dirty = True
        if not self._dirty:
            u_now = math.floor((now - self._t_origin) * self._pps)
            if u_now != canvas.u_now:
                canvas.clear_to(u_now + 2)
                canvas.u_now = u_now
                changed = True
            if behind and self._draw_new(buf):
                changed = True
        if self._dirty:  # set above, by a setter, or by _draw_new (gap, late data, raw drift)
            self._redraw_all(buf, now)
            changed = True
        self._update_markers(p)
        if self._band_visible:
            self._maybe_update_band_power(p)
        if changed:
            self.frames_drawn += 1
            canvas.update()

    # -- keyboard --------------------------------------------------------------------------------

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        key = event.key()
        keys = QtCore.Qt.Key
        if key in (keys.Key_Plus, keys.Key_Equal):
            smaller = [s for s in SCALE_STEPS_UV if s < self._scale_uv * 0.999]
            self.set_scale(smaller[-1] if smaller else SCALE_STEPS_UV[0])
        elif key in (keys.Key_Minus, keys.Key_Underscore):
            larger = [s for s in SCALE_STEPS_UV if s > self._scale_uv * 1.001]
            self.set_scale(larger[0] if larger else SCALE_STEPS_UV[-1])
        elif key == keys.Key_BracketLeft:
            self.set_span(self._span_s / 2 if self._span_s > 5 else self._span_s - 1)
        elif key == keys.Key_BracketRight:
            self.set_span(self._span_s * 2 if self._span_s >= 5 else self._span_s + 1)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # -- drawing ---------------------------------------------------------------------------------

    def _reset_drawing(self) -> None:
        self._dirty = True
        self._now: float | None = None
        self._t_origin = 0.0
        self._pps = 1.0
        self._k = 1
        self._next_index = 0
        self._last_x = 0.0
        self._last_y = np.zeros(0)
        self._dc = np.zeros(0)
        n = self._pipeline.info.n_channels if self._pipeline is not None else 0
        self._row_center = np.zeros(n)
        self._gain = 1.0

    def _stream_now(self, p: StreamPipeline) -> float | None:
        """The stream time shown at the right edge, running on between chunks (never backwards)."""
        last = p.stats.last_timestamp
        if last is None:
            return None
        since = p.seconds_since_last_chunk() or 0.0
        est = last + min(max(since, 0.0), MAX_LEAD_S)
        if self._now is None or est > self._now:
            self._now = est
        elif est < self._now - 2.0:  # the stream's clock went back (new session, device reset)
            self._now = est
            self._dirty = True
        return self._now

    def _right_edge_time(self) -> float | None:
        if self._now is None or self._dirty:
            return self._now
        return self._t_origin + (self._canvas.u_now + 1) / self._pps

    def _samples_uv(self, buf: RingBuffer, data: np.ndarray) -> np.ndarray:
        if buf is self._pipeline.raw:
            scale = self._pipeline.info.to_microvolts
            if scale != 1:
                data = data * np.float32(scale)
        return data

    def _rows(self, data_uv: np.ndarray) -> np.ndarray:
        """Samples [n, channels] in µV → image rows float64 [channels, n] (NaN on the zero line, clipped)."""
        ys = self._row_center[:, None] - (data_uv.T.astype(np.float64) - self._dc[:, None]) * self._gain
        bad = np.isnan(ys)
        if bad.any():
            np.copyto(ys, np.broadcast_to(self._row_center[:, None], ys.shape), where=bad)
        h = float(self._canvas.height)
        np.clip(ys, -h, 2.0 * h, out=ys)
        return ys

    def _points(self, data_uv: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned samples → (xs [P], ys [channels, P]), min/max-decimated in groups of ``self._k``."""
        if self._k > 1:
            data_uv = peak_decimate(data_uv, self._k)
            ts = np.repeat(ts[:: self._k][: data_uv.shape[0] // 2], 2)
        return (ts - self._t_origin) * self._pps, self._rows(data_uv)

    def _redraw_all(self, buf: RingBuffer, now: float) -> None:
        p = self._pipeline
        canvas = self._canvas
        sfreq = p.info.sfreq or 1000.0
        self._dirty = False
        self.full_redraws += 1
        self._pps = canvas.width / self._span_s
        self._t_origin = now - self._span_s
        u_now = math.floor((now - self._t_origin) * self._pps)
        canvas.u_now = u_now
        samples_per_px = sfreq / self._pps
        self._k = int(samples_per_px) if samples_per_px >= DECIMATE_FROM else 1
        log.debug("full redraw: %d x %d px, %.1f px/s, groups of %d samples", canvas.width, canvas.height,
                  self._pps, self._k)
        n_ch = p.info.n_channels
        row_h = canvas.height / max(n_ch, 1)
        self._row_center = (np.arange(n_ch) + 0.5) * row_h
        self._gain = row_h / self._scale_uv
        res = buf.latest(int(math.ceil(self._span_s * sfreq)) + 2 * self._k + 2)
        skip = (-res.start) % self._k
        m = (len(res) - skip) // self._k
        data = self._samples_uv(buf, res.data[skip: skip + m * self._k])
        ts = res.timestamps[skip: skip + m * self._k]
        self._next_index = res.start + skip + m * self._k
        if buf is p.raw and data.shape[0]:  # centre each channel on its mean over the last second
            self._dc = _finite_mean(data[-max(1, int(sfreq)):], np.zeros(n_ch))
        else:
            self._dc = np.zeros(n_ch)
        if data.shape[0] == 0:
            canvas.clear_all(u_now + 2)
            self._last_y = np.zeros(0)
            return
        xs, ys = self._points(data, ts)
        keep = xs >= u_now + 2 - canvas.ring + 1
        xs, ys = xs[keep], ys[:, keep]
        canvas.clear_all(max(u_now, int(math.ceil(xs.max())) if xs.size else u_now) + 2)
        canvas.stroke(xs, ys, self._groups, polylines=True)
        if xs.size:
            self._last_x, self._last_y = float(xs[-1]), ys[:, -1].copy()
        else:
            self._last_y = np.zeros(0)

    def _draw_new(self, buf: RingBuffer) -> bool:
        """Draw the samples that arrived since ``_next_index``; False when too few for a group."""
        res = buf.since(self._next_index)
        if res.lost:
            self._dirty = True
            return False
        m = len(res) // self._k
        if m == 0:
            return False
        n = m * self._k
        data = self._samples_uv(buf, res.data[:n])
        self._next_index = res.start + n
        xs, ys = self._points(data, res.timestamps[:n])
        canvas = self._canvas
        if float(xs.min()) < canvas.cleared_until - canvas.ring + 1:  # would overwrite newer columns
            self._dirty = True
            return False
        if buf is self._pipeline.raw and np.abs(_finite_mean(data, self._dc) - self._dc).max() > self._scale_uv:
            self._dirty = True  # the raw signal drifted a row away: centre it again next frame
        canvas.clear_to(max(canvas.u_now, int(math.ceil(float(xs.max())))) + 2)
        if self._last_y.shape[0]:
            xs = np.concatenate(([self._last_x], xs))
            ys = np.concatenate((self._last_y[:, None], ys), axis=1)
        canvas.stroke(xs, ys, self._groups, polylines=False)
        self._last_x, self._last_y = float(xs[-1]), ys[:, -1].copy()
        return True

    # -- layout, colours, markers, band power ------------------------------------------------------

    def _on_view_resized(self) -> None:
        dpr = self._plot_widget.devicePixelRatioF()
        if self._canvas.set_geometry(self._vb.rect(), dpr):
            self._dirty = True
            self._update_channel_layout()
            self.refresh()  # now, so that the next paint does not show a blank image

    def _apply_view_ranges(self) -> None:
        self._vb.setXRange(-self._span_s, 0.0, padding=0)

    def _update_axis_label(self) -> None:
        kind = "filtered" if self._show_filtered else "raw"
        self._plot.setLabel("bottom", f"time (s)    ·    {self._scale_uv:g} µV per row    ·    {kind}")

    def _update_channel_layout(self) -> None:
        names = list(self._pipeline.info.ch_names) if self._pipeline is not None else []
        n = len(names)
        y_range = (-0.5, max(n, 1) - 0.5)
        self._vb.setYRange(*y_range, padding=0)
        self._band_plot.setYRange(*y_range, padding=0)
        row_px = self._vb.height() / max(n, 1)
        step = max(1, math.ceil(14.0 / row_px)) if row_px > 0 else 1
        self._axis.setTicks([[(n - 1 - i, name) for i, name in enumerate(names) if i % step == 0], []])
        self._update_colors()

    def follow_background(self) -> None:
        """Take the plot's background (a theme changed it): light traces on a dark one, dark on a light one."""
        background = self._plot_widget.backgroundBrush().color()
        self._normal_rgb = (215, 225, 240) if background.lightness() < 128 else (20, 30, 60)
        self._canvas.background = background
        if self._pipeline is not None:
            self._update_colors()
            self._dirty = True

    def _channel_rgbs(self) -> list[tuple[int, int, int]]:
        names = self._pipeline.info.ch_names if self._pipeline is not None else ()
        return [UNMAPPED_RGB if name in self.unmapped else STATUS_COLORS.get(self._status.get(name, "good"),
                                                                              self._normal_rgb) for name in names]

    def _update_colors(self) -> None:
        rgbs = self._channel_rgbs()
        width = max(1.0, round(self._canvas.dpr))
        by_color: dict[tuple[int, int, int], list[int]] = {}
        for i, rgb in enumerate(rgbs):
            by_color.setdefault(rgb, []).append(i)
        self._groups = [(_pen(rgb, width), np.array(idx)) for rgb, idx in by_color.items()]
        names = self._pipeline.info.ch_names if self._pipeline is not None else ()
        self._axis.set_text_colors({name: QtGui.QColor(*rgb) for name, rgb in zip(names, rgbs)
                                    if rgb != self._normal_rgb})

    def _release_all_markers(self) -> None:
        for line in self._marker_lines.values():
            line.setVisible(False)
            self._marker_pool.append(line)
        self._marker_lines.clear()

    def _free_line(self, idx: int) -> None:
        line = self._marker_lines.pop(idx, None)
        if line is not None:
            line.setVisible(False)
            self._marker_pool.append(line)
            self._marker_scan_needed = True  # an older marker may be waiting for a line

    def _take_line(self, marker: Marker) -> pg.InfiniteLine:
        if self._marker_pool:
            line = self._marker_pool.pop()
        else:
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(MARKER_COLOR, width=1), label="",
                                   labelOpts={"position": 0.97, "color": MARKER_COLOR, "anchors": [(1, 0), (1, 0)]})
            self._marker_layer.addItem(line)
        line.setPos(marker.timestamp - self._marker_ref)
        line.setVisible(True)
        line.label.setFormat(marker.text.replace("{", "{{").replace("}", "}}"))
        return line

    def _update_markers(self, p: StreamPipeline) -> None:
        right = self._right_edge_time()
        if right is None:
            return
        if self._layer_x is None:
            self._marker_ref = right
        new_markers = p.markers.total_written != self._marker_index
        if new_markers:
            new, self._marker_index = p.markers.since(self._marker_index)
            first = self._marker_index - len(new)
            self._recent_markers.extend((first + i, m) for i, m in enumerate(new))
        oldest = right - self._span_s - 1.0
        while self._recent_markers and self._recent_markers[0][1].timestamp < oldest:
            self._free_line(self._recent_markers.popleft()[0])
        if new_markers or self._marker_scan_needed:
            # newest first, so that the newest markers get lines when there are more than MAX_MARKER_LINES
            self._marker_scan_needed = False
            for idx, m in reversed(self._recent_markers):
                if m.timestamp < oldest:  # markers can arrive out of order
                    self._free_line(idx)
                elif idx not in self._marker_lines and len(self._marker_lines) < MAX_MARKER_LINES:
                    self._marker_lines[idx] = self._take_line(m)
        x = self._marker_ref - right
        if x != self._layer_x:
            self._layer_x = x
            self._marker_layer.setPos(x, 0.0)

    def _maybe_update_band_power(self, p: StreamPipeline) -> None:
        t = time.monotonic()
        if t - self._band_power_at < BAND_POWER_INTERVAL_S or not p.info.sfreq:
            return
        res = p.filtered.latest(int(BAND_POWER_WINDOW_S * p.info.sfreq))
        if len(res) < p.info.sfreq / 2:
            return
        self._band_power_at = t
        power = band_power(res.data, p.info.sfreq)
        self.band_power = power
        total = power.sum(axis=1, keepdims=True)
        rel = np.divide(power, total, out=np.zeros_like(power), where=total > 0)
        left = np.cumsum(rel, axis=1) - rel
        rows = p.info.n_channels - 1 - np.arange(p.info.n_channels)
        height = 0.8 if self._canvas.height / p.info.n_channels >= 10 else 1.0
        for j, bar in enumerate(self._band_bars):
            bar.setOpts(x0=left[:, j], width=rel[:, j], y=rows, height=height)
