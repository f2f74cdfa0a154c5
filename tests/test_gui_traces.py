"""TraceView: scrolling traces from real and pushed streams, markers, scale/span, tint, band power."""

import time

import numpy as np
import pytest
from PySide6 import QtCore
from scipy import ndimage

from bci_dream.acquisition.live import LiveStream
from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.types import Chunk, Marker, StreamInfo
from bci_dream.gui.traces import BANDS, TraceView, band_power, peak_decimate
from bci_dream.signal.quality import ChannelQuality

NAMES = ("Fz", "Cz", "Pz", "Oz")
T0 = 1000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Feed:
    """Pushes 20 ms chunks of ``fn(t) -> [n, channels]`` into a pipeline whose clock follows the stream."""

    def __init__(self, fn, sfreq: float = 250.0, names=NAMES) -> None:
        self.clock = Clock()
        self.sfreq = sfreq
        self.pipeline = StreamPipeline(StreamInfo("test", names, sfreq, "uV"), clock=self.clock)
        self.fn = fn
        self.i = 0

    def advance(self, seconds: float, view: TraceView | None = None, markers: dict[int, str] | None = None) -> None:
        chunk = int(round(0.02 * self.sfreq))
        for _ in range(int(round(seconds / 0.02))):
            idx = np.arange(self.i, self.i + chunk)
            t = idx / self.sfreq
            ms = [Marker(T0 + i / self.sfreq, text) for i, text in (markers or {}).items()
                  if self.i <= i < self.i + chunk]
            self.i += chunk
            self.clock.t = T0 + self.i / self.sfreq
            self.pipeline.push(Chunk(np.asarray(self.fn(t), np.float32), T0 + t, ms))
            if view is not None:
                view.refresh()


def sine(freq=10.0, amp=20.0, n_ch=4, dc=0.0):
    return lambda t: amp * np.sin(2 * np.pi * freq * t)[:, None] + np.full(n_ch, dc)


@pytest.fixture
def view(qtbot):
    v = TraceView()
    qtbot.addWidget(v)
    v.resize(900, 600)
    v.show()
    qtbot.waitExposed(v)
    return v


def background(v: TraceView) -> np.ndarray:
    return v.trace_image()[0, 0]


def lit(img: np.ndarray, bg: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(int) - bg.astype(int)).sum(axis=2) > 60


def row_band(v: TraceView, img: np.ndarray, ch: int) -> np.ndarray:
    centers = v.channel_row_centers()
    half = img.shape[0] / len(centers) / 2
    return img[int(centers[ch] - half): int(centers[ch] + half)]


def best_shift(before: np.ndarray, after: np.ndarray, shifts) -> tuple[int, float]:
    """The leftward shift of ``after`` against ``before`` (boolean images) with the largest overlap (IoU)."""
    def iou(s):
        a, b = (before[:, s:], after[:, : after.shape[1] - s]) if s >= 0 else (before[:, :s], after[:, -s:])
        return (a & b).sum() / max((a | b).sum(), 1)

    return max(((s, iou(s)) for s in shifts), key=lambda x: x[1])


def vertical_extent(v: TraceView, ch: int) -> int:
    img = v.trace_image()
    rows = np.flatnonzero(lit(row_band(v, img, ch), background(v)).any(axis=1))
    return int(rows.max() - rows.min()) if rows.size else 0


# -- pure functions -------------------------------------------------------------------------------

def test_peak_decimate_keeps_min_and_max_and_skips_nan():
    x = np.array([[1, 5], [3, np.nan], [2, 4], [0, 7], [9, 9]], np.float32)
    out = peak_decimate(x, 2)
    np.testing.assert_array_equal(out, [[1, 5], [3, 5], [0, 4], [2, 7]])  # the fifth sample is left out
    assert np.isnan(peak_decimate(np.full((2, 1), np.nan, np.float32), 2)).all()


def test_band_power_of_a_10_hz_sine_is_alpha():
    t = np.arange(500) / 250.0
    x = np.stack([20 * np.sin(2 * np.pi * 10 * t), 20 * np.sin(2 * np.pi * 20 * t)], axis=1)
    p = band_power(x, 250.0)
    assert p.shape == (2, len(BANDS))
    assert p[0].argmax() == 2 and p[1].argmax() == 3
    assert p[0, 2] == pytest.approx(20 ** 2 / 2, rel=0.1)  # a sine's power is amp² / 2


# -- a real stream under a timer --------------------------------------------------------------------

def test_real_synthetic_board_scrolls_under_a_timer(view, qtbot):
    """Also guards against PySide6 6.12's abort when plots are updated from a timer (see DESIGN.md)."""
    from bci_dream.acquisition.brainflow_source import BrainFlowSource
    from bci_dream.devices import get_profile

    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    live.open()
    live.start()
    timer = QtCore.QTimer()
    timer.timeout.connect(view.refresh)
    try:
        view.set_pipeline(live.pipeline)
        timer.start(16)
        qtbot.waitUntil(lambda: live.pipeline.filtered.total_written > 250, timeout=10_000)
        qtbot.wait(1200)
        first, painted, drawn = view.trace_image(), view.frames_painted, view.frames_drawn
        t_first = time.monotonic()
        qtbot.wait(1200)
        second = view.trace_image()
        t_second = time.monotonic()
        assert view.frames_drawn - drawn > 30
        assert view.frames_painted - painted > 30  # Qt really painted, not only refresh() ran
    finally:
        timer.stop()
        live.stop()
    assert not np.array_equal(first, second)
    bg = background(view)
    for ch in range(16):
        assert lit(row_band(view, second, ch), bg).sum() > 50, live.pipeline.info.ch_names[ch]
    # the picture moved left by the time between the two looks
    expected = (t_second - t_first) * second.shape[1] / view.span_s
    shift, overlap = best_shift(lit(first, bg), lit(second, bg), range(1, int(2 * expected)))
    assert overlap > 0.9 and abs(shift - expected) < 0.2 * expected
    assert view.full_redraws <= 3


@pytest.mark.parametrize("sfreq", [250.0, 1000.0])
def test_drawing_piece_by_piece_matches_a_full_redraw(view, sfreq):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((20_000, len(NAMES))) * 10
    feed = Feed(lambda t: sine(7.0, 30.0)(t) + noise[np.round(t * sfreq).astype(int) % 20_000], sfreq)
    view.set_pipeline(feed.pipeline)
    feed.advance(12.0, view)  # refreshed after every chunk, like the timer
    pieces = view.trace_image()
    view.set_scale(50)
    view.refresh()
    view.set_scale(100)
    view.refresh()
    whole = view.trace_image()
    bg = background(view)
    a, b = lit(pieces, bg), lit(whole, bg)
    shift, overlap = best_shift(b, a, range(-2, 3))  # the two may differ by where a pixel column starts
    assert abs(shift) <= 1 and overlap > 0.8
    near = ndimage.binary_dilation(a[:, 5:-5]), ndimage.binary_dilation(b[:, 5:-5])
    assert (b[:, 5:-5] & near[0]).sum() > 0.98 * b[:, 5:-5].sum()
    assert (a[:, 5:-5] & near[1]).sum() > 0.98 * a[:, 5:-5].sum()


# -- source, span, scale, tint ----------------------------------------------------------------------

def test_raw_and_filtered_show_different_data_and_raw_is_centred(view):
    # 5000 µV of DC and a 0.2 Hz wave of 30 µV, which the 1-45 Hz band-pass removes, under a 10 Hz sine
    feed = Feed(lambda t: sine(10.0, 20.0, dc=5000.0)(t) + 30 * np.sin(2 * np.pi * 0.2 * t)[:, None])
    view.set_pipeline(feed.pipeline)
    feed.advance(6.0, view)
    filtered, filtered_extent = view.trace_image(), vertical_extent(view, 0)
    view.set_show_filtered(False)
    view.refresh()
    raw = view.trace_image()
    assert not view.show_filtered
    assert not np.array_equal(filtered, raw)
    assert vertical_extent(view, 0) > 1.6 * filtered_extent
    bg = background(view)
    for ch in range(len(NAMES)):  # each channel's mean is removed: the trace stays in its own row
        band = lit(row_band(view, raw, ch), bg)
        assert band.sum() > 100
        centroid = np.nonzero(band)[0].mean()
        assert abs(centroid - band.shape[0] / 2) < 0.1 * band.shape[0]


def test_span_and_scale_change_the_view(view, qtbot):
    feed = Feed(sine(10.0, 20.0))
    view.set_pipeline(feed.pipeline)
    feed.advance(12.0, view)
    assert view._plot.getViewBox().viewRange()[0] == pytest.approx([-10.0, 0.0])
    extent_100 = vertical_extent(view, 0)
    spans, scales = [], []
    view.span_changed.connect(spans.append)
    view.scale_changed.connect(scales.append)

    view.set_scale(50)
    view.refresh()
    assert view.scale_uv == 50 and scales == [50.0]
    assert vertical_extent(view, 0) == pytest.approx(2 * extent_100, rel=0.15)

    before = view.trace_image()
    view.set_span(20)
    view.refresh()
    assert view.span_s == 20 and spans == [20.0]
    assert view._plot.getViewBox().viewRange()[0] == pytest.approx([-20.0, 0.0])
    after = view.trace_image()
    assert not np.array_equal(before, after)
    # 12 s of signal: at 20 s span the left ~40% is empty, at 10 s none of it is
    bg = background(view)
    width = after.shape[1]
    assert not lit(after, bg)[:, : int(0.35 * width)].any()
    assert lit(before, bg)[:, : int(0.1 * width)].any()

    view.set_span(1)
    assert view.span_s == 2
    view.set_span(100)
    assert view.span_s == 20
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Plus)
    assert view.scale_uv == 20
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Minus)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Minus)
    assert view.scale_uv == 100
    qtbot.keyClick(view, QtCore.Qt.Key.Key_BracketLeft)
    assert view.span_s == 10


def test_quality_tints_each_channel_by_status(view):
    feed = Feed(sine(10.0, 20.0))
    view.set_pipeline(feed.pipeline)
    feed.advance(4.0, view)
    quality = [ChannelQuality(n, s, 1.0, 1.0, 0.0, 0.0) for n, s in
               zip(NAMES, ("good", "flat", "railed", "line_noise"))]
    redraws = view.full_redraws
    view.set_quality(quality)
    view.refresh()
    assert view.full_redraws == redraws + 1
    img = view.trace_image()
    bg = background(view)

    def brightest(ch):
        band = row_band(view, img, ch).reshape(-1, 3).astype(int)
        return band[np.abs(band - bg).sum(axis=1).argmax()]

    normal, flat, railed, mains = (brightest(ch) for ch in range(4))
    assert flat[0] == flat[1] == flat[2] and abs(int(flat[0]) - 153) < 10  # (Okabe & Ito grey)
    assert railed[0] > 200 and railed[1] < 100
    assert mains[0] > 200 and 100 < mains[1] < 200 and mains[2] < 60
    assert normal[2] > 200 and abs(int(normal[0]) - int(normal[2])) < 40
    axis_colors = view._axis._text_colors
    assert set(axis_colors) == {"Cz", "Pz", "Oz"}
    view.set_quality(quality)  # unchanged: no redraw
    view.refresh()
    assert view.full_redraws == redraws + 1


# -- markers --------------------------------------------------------------------------------------

def test_markers_of_a_real_replay_appear_as_labelled_lines(view, qtbot, shared_data):
    from bci_dream.acquisition.xdf_replay import XdfReplaySource

    live = LiveStream(XdfReplaySource(shared_data / "bci-essentials/ssvep_example.xdf", speed=10.0))
    live.open()
    texts = {m.text for m in live.source._markers}
    timer = QtCore.QTimer()
    timer.timeout.connect(view.refresh)
    view.set_pipeline(live.pipeline)
    live.start()
    timer.start(16)
    try:
        qtbot.waitUntil(lambda: len(view.visible_markers()) >= 3, timeout=8000)
        qtbot.wait(200)
        shown = view.visible_markers()
        lines = [item for item in view._marker_layer.childItems() if item.isVisible()]
    finally:
        timer.stop()
        live.stop()
    assert len(lines) == len(shown) >= 3
    assert all(-view.span_s - 1 <= x <= 0.5 for x, _ in shown)
    assert {text for _, text in shown} <= texts
    assert sorted(line.label.toPlainText() for line in lines) == sorted(text for _, text in shown)
    view.grab()


def test_marker_lines_scroll_and_are_reused(view):
    feed = Feed(sine())
    view.set_pipeline(feed.pipeline)
    markers = {i: f"stim {{{i}}}" for i in range(0, 250 * 30, 125)}  # every 0.5 s, braces in the text
    feed.advance(5.0, view, markers)
    shown = view.visible_markers()
    assert [text for _, text in shown][:2] == ["stim {0}", "stim {125}"]
    assert shown[0][0] == pytest.approx(-5.0, abs=0.05)
    feed.advance(25.0, view, markers)
    shown = view.visible_markers()
    assert 19 <= len(shown) <= 23 and all(x >= -11.0 for x, _ in shown)
    assert len(view._marker_layer.childItems()) <= 24  # 60 markers, lines recycled


# -- band power, clearing, bad data, resizing ---------------------------------------------------------

def test_band_power_panel_shows_alpha_for_a_10_hz_sine(view):
    rng = np.random.default_rng(1)
    feed = Feed(lambda t: sine(10.0, 20.0)(t) + rng.standard_normal((t.size, len(NAMES))))
    view.set_pipeline(feed.pipeline)
    feed.advance(3.0, view)
    assert view.band_power is None  # not computed while the panel is hidden
    view.set_band_power_visible(True)
    view.refresh()
    assert view.band_power_visible and view._band_widget.isVisible()
    assert view.band_power.shape == (len(NAMES), len(BANDS))
    assert (view.band_power.argmax(axis=1) == 2).all()
    alpha = view._band_bars[2].opts["width"]
    assert np.all(alpha > 0.8)
    view.grab()


def test_set_pipeline_none_clears(view):
    feed = Feed(sine())
    view.set_pipeline(feed.pipeline)
    feed.advance(3.0, view, {250: "go"})
    assert lit(view.trace_image(), background(view)).any() and view.visible_markers()
    view.set_pipeline(None)
    view.refresh()
    img = view.trace_image()
    assert not lit(img, img[0, 0]).any()
    assert view.visible_markers() == []
    assert not any(item.isVisible() for item in view._marker_layer.childItems())
    view.grab()
    view.set_pipeline(None)


@pytest.mark.parametrize("filtered", [True, False])
def test_nan_and_inf_do_not_break_drawing(view, filtered):
    def fn(t):
        x = sine()(t)
        x[(np.round(t * 250).astype(int) % 50) < 10, 1] = np.nan
        x[::7, 2] = np.inf
        x[::11, 3] = -np.inf
        return x

    feed = Feed(fn)
    view.set_show_filtered(filtered)
    view.set_pipeline(feed.pipeline)
    view.set_band_power_visible(True)
    feed.advance(4.0, view)
    view.set_scale(20)
    view.refresh()
    view.grab()
    img = view.trace_image()
    assert lit(row_band(view, img, 0), background(view)).sum() > 100
    assert np.isfinite(view.band_power).all()


def test_resizing_redraws_at_the_new_size(view, qtbot):
    feed = Feed(sine())
    view.set_pipeline(feed.pipeline)
    feed.advance(3.0, view)
    h0, w0, _ = view.trace_image().shape
    view.resize(600, 400)
    qtbot.waitUntil(lambda: view.trace_image().shape[1] < w0, timeout=2000)
    view.refresh()
    h1, w1, _ = view.trace_image().shape
    assert h1 < h0 and w1 < w0
    assert lit(view.trace_image(), background(view))[:, -20:].any()


def test_time_runs_on_between_chunks_but_not_past_a_stall(view):
    feed = Feed(sine())
    view.set_pipeline(feed.pipeline)
    feed.advance(3.0, view)
    img = view.trace_image()
    feed.clock.t += 0.1  # 100 ms after the last chunk: the picture scrolls on
    view.refresh()
    assert not np.array_equal(img, view.trace_image())
    feed.clock.t += 5.0  # a stall: scrolling stops after MAX_LEAD_S
    view.refresh()
    stalled = view.trace_image()
    drawn = view.frames_drawn
    feed.clock.t += 1.0
    view.refresh()
    assert np.array_equal(stalled, view.trace_image()) and view.frames_drawn == drawn
    t = time.monotonic()
    for _ in range(200):
        view.refresh()
    assert time.monotonic() - t < 0.5  # nothing new: refresh is nearly free


def test_a_long_pause_or_a_raw_dc_step_redraws_everything(view):
    step = {"dc": 0.0}
    feed = Feed(lambda t: sine()(t) + step["dc"])
    view.set_pipeline(feed.pipeline)
    feed.advance(3.0, view)
    redraws = view.full_redraws
    feed.advance(15.0)  # more than the span without a refresh (a hidden window)
    view.refresh()
    assert view.full_redraws == redraws + 1
    bg = background(view)
    assert lit(view.trace_image(), bg)[:, :50].any() and lit(view.trace_image(), bg)[:, -50:].any()

    view.set_show_filtered(False)
    feed.advance(1.0, view)
    redraws = view.full_redraws
    step["dc"] = 1000.0  # ten rows away at 100 µV per row: the raw view centres the channel again
    feed.advance(1.0, view)
    assert view.full_redraws > redraws
    band = lit(row_band(view, view.trace_image(), 0), bg)
    assert band[:, -50:].any()
    redraws = view.full_redraws
    feed.advance(1.0, view)
    assert view.full_redraws == redraws  # centred once, not at every frame
