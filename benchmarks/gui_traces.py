"""Frame rate and CPU of the scrolling EEG traces (``bci_dream.gui.traces.TraceView``), offscreen.

For each configuration (default 16 ch @ 250 Hz and 128 ch @ 1 kHz, 10 s span), in one process:

- a ``StreamPipeline`` (1-45 Hz band-pass + 50 Hz notch, quality every second) is fed in real time by a
  thread: a chunk every 20 ms of precomputed EEG-like signal (1/f noise plus a 10 Hz rhythm, some µV
  of DC), and a marker every ``--marker-interval`` seconds;
- a ``TraceView`` of ``--size`` (default 1200x800) is shown on Qt's offscreen platform and refreshed by
  a 16 ms ``QTimer`` (PreciseTimer) for ``--seconds`` after ``--warmup`` seconds.

Painting is real: Qt paints the widget into its backing store from the event loop, as on a screen.
The script counts the paints of the trace item (``frames_painted``) next to the refreshes that changed
the picture (``frames_drawn``), and prints both.

Figures: refreshes, frames drawn and frames painted per second; time of ``refresh()`` (p50/p95 ms);
CPU as % of one core of the whole process (``time.process_time``), of the GUI thread
(``time.thread_time`` on it: refresh, painting, the event loop) and of the feeder thread (pushing into
the pipeline, filters included). With ``--with-generation`` the ``tiny`` image model generates on the
CPU in another thread the whole time (``--torch-threads``, default 1, so that one core stays for the
rest) and the images per second are printed too. ``--band-power`` also shows the band-power panel.

Goal: >= 60 frames/s for 16 ch x 10 s at <= 25 % of one core (GUI thread) while images are generated.

Run: python benchmarks/gui_traces.py [--seconds 10] [--with-generation] [--band-power]
     [--configs 16x250,128x1000] [--span 10] [--size 1200x800]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PySide6 import QtCore, QtWidgets

from bci_dream.acquisition.pipeline import StreamPipeline
from bci_dream.core.types import Chunk, Marker, StreamInfo
from bci_dream.gui.traces import TraceView

GOAL_FPS = 60.0
GOAL_PERCENT = 25.0
CHUNK_S = 0.02
TIMER_MS = 16


def eeg_like(n_ch: int, sfreq: float, seconds: float, seed: int = 0) -> np.ndarray:
    """float32 [n, n_ch] µV: 1/f noise (~20 µV rms), a 10 Hz rhythm of 15 µV, a DC offset per channel."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    spec = rng.standard_normal((n // 2 + 1, n_ch)) + 1j * rng.standard_normal((n // 2 + 1, n_ch))
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec /= np.maximum(f, 1.0)[:, None]
    x = np.fft.irfft(spec, n, axis=0)
    x *= 20.0 / x.std()
    t = np.arange(n) / sfreq
    x += 15.0 * np.sin(2 * np.pi * 10.0 * t)[:, None]
    x += rng.uniform(-200, 200, n_ch)[None, :]
    return x.astype(np.float32)


class Feeder(threading.Thread):
    """Pushes ``CHUNK_S`` chunks of a looped signal into the pipeline at real-time pace."""

    def __init__(self, pipeline: StreamPipeline, signal: np.ndarray, sfreq: float, marker_interval: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.pipeline = pipeline
        self.signal = signal
        self.sfreq = sfreq
        self.marker_interval = marker_interval
        self.stop_event = threading.Event()
        self.cpu_s = 0.0
        self.samples = 0

    def run(self) -> None:
        cpu0 = time.thread_time()
        t0 = time.monotonic()
        per_chunk = max(1, int(round(CHUNK_S * self.sfreq)))
        n_sig = self.signal.shape[0]
        next_marker = t0 + self.marker_interval
        k = 0
        while not self.stop_event.is_set():
            due = t0 + (self.samples + per_chunk) / self.sfreq
            wait = due - time.monotonic()
            if wait > 0:
                self.stop_event.wait(wait)
            idx = np.arange(self.samples, self.samples + per_chunk)
            ts = t0 + (idx + 1) / self.sfreq
            markers = []
            if self.marker_interval > 0 and ts[-1] >= next_marker:
                k += 1
                markers.append(Marker(float(next_marker), f"stim {k}"))
                next_marker += self.marker_interval
            self.pipeline.push(Chunk(self.signal[idx % n_sig], ts, markers))
            self.samples += per_chunk
        self.cpu_s = time.thread_time() - cpu0


class GenerationLoop(threading.Thread):
    """Generates images with the ``tiny`` model on the CPU, one after the other, until stopped."""

    def __init__(self, torch_threads: int) -> None:
        super().__init__(name="generation", daemon=True)
        import torch

        from bci_dream.generation.generator import load_generator

        torch.set_num_threads(torch_threads)
        self.torch = torch
        self.generator = load_generator("tiny", device="cpu")
        self.embeds = torch.randn(1, 77, self.generator.cross_attention_dim)
        self.generator.generate(self.embeds)  # warm up
        self.stop_event = threading.Event()
        self.count_event = threading.Event()
        self.images = 0
        self.cpu_s = 0.0

    def run(self) -> None:
        cpu0 = time.thread_time()
        while not self.stop_event.is_set():
            self.generator.generate(self.embeds)
            if self.count_event.is_set():
                self.images += 1
        self.cpu_s = time.thread_time() - cpu0


@dataclass
class Result:
    label: str
    refresh_hz: float
    drawn_fps: float
    painted_fps: float
    refresh_p50_ms: float
    refresh_p95_ms: float
    process_pct: float
    gui_pct: float
    feeder_pct: float
    images_per_s: float | None
    full_redraws: int


def run_config(app: QtWidgets.QApplication, n_ch: int, sfreq: float, args, generation: GenerationLoop | None) -> Result:
    info = StreamInfo(f"bench{n_ch}", tuple(f"E{i + 1}" for i in range(n_ch)), sfreq)
    pipeline = StreamPipeline(info, buffer_seconds=30.0)
    feeder = Feeder(pipeline, eeg_like(n_ch, sfreq, 20.0), sfreq, args.marker_interval)
    w, h = (int(v) for v in args.size.split("x"))
    view = TraceView()
    view.resize(w, h)
    view.set_span(args.span)
    view.set_band_power_visible(args.band_power)
    view.show()
    app.processEvents()
    view.set_pipeline(pipeline)
    refresh_times: list[float] = []
    measuring = [False]

    def tick() -> None:
        t = time.perf_counter()
        view.refresh()
        if measuring[0]:
            refresh_times.append(time.perf_counter() - t)

    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    feeder.start()
    timer.start(TIMER_MS)
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(args.warmup * 1000), loop.quit)
    loop.exec()

    drawn0, painted0, redraws0 = view.frames_drawn, view.frames_painted, view.full_redraws
    images0 = generation.images if generation else 0
    if generation:
        generation.count_event.set()
    measuring[0] = True
    wall0, proc0, gui0 = time.monotonic(), time.process_time(), time.thread_time()
    QtCore.QTimer.singleShot(int(args.seconds * 1000), loop.quit)
    loop.exec()
    wall = time.monotonic() - wall0
    proc = time.process_time() - proc0
    gui = time.thread_time() - gui0
    measuring[0] = False
    timer.stop()
    feeder.stop_event.set()
    feeder.join()
    images = (generation.images - images0) if generation else None
    refresh_ms = np.array(refresh_times) * 1e3
    result = Result(
        label=f"{n_ch} ch @ {sfreq:g} Hz, {args.span:g} s span",
        refresh_hz=len(refresh_times) / wall,
        drawn_fps=(view.frames_drawn - drawn0) / wall,
        painted_fps=(view.frames_painted - painted0) / wall,
        refresh_p50_ms=float(np.percentile(refresh_ms, 50)),
        refresh_p95_ms=float(np.percentile(refresh_ms, 95)),
        process_pct=100 * proc / wall,
        gui_pct=100 * gui / wall,
        feeder_pct=100 * feeder.cpu_s / (wall + args.warmup),
        images_per_s=None if images is None else images / wall,
        full_redraws=view.full_redraws - redraws0,
    )
    view.set_pipeline(None)
    view.close()
    view.deleteLater()
    app.processEvents()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--configs", default="16x250,128x1000", help="channels x Hz, comma separated")
    ap.add_argument("--span", type=float, default=10.0)
    ap.add_argument("--size", default="1200x800")
    ap.add_argument("--marker-interval", type=float, default=1.0, help="seconds between markers (0: none)")
    ap.add_argument("--band-power", action="store_true", help="also show the band-power panel")
    ap.add_argument("--with-generation", action="store_true", help="generate images with the tiny model meanwhile")
    ap.add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args()

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    print(f"platform {app.platformName()}, {os.cpu_count()} CPUs, widget {args.size}, timer {TIMER_MS} ms, "
          f"markers every {args.marker_interval:g} s, band power {'on' if args.band_power else 'off'}")
    generation = None
    if args.with_generation:
        generation = GenerationLoop(args.torch_threads)
        generation.start()
        print(f"generating with {generation.generator!r} on the CPU, {args.torch_threads} torch thread(s)")
    results = []
    for cfg in args.configs.split(","):
        n_ch, sfreq = cfg.lower().split("x")
        r = run_config(app, int(n_ch), float(sfreq), args, generation)
        results.append(r)
        gen = f", images {r.images_per_s:.1f}/s" if r.images_per_s is not None else ""
        print(f"{r.label}: refresh {r.refresh_hz:.1f}/s, drawn {r.drawn_fps:.1f} fps, painted {r.painted_fps:.1f} fps, "
              f"refresh() p50 {r.refresh_p50_ms:.2f} ms p95 {r.refresh_p95_ms:.2f} ms, full redraws {r.full_redraws}")
        print(f"    CPU % of one core: GUI thread {r.gui_pct:.1f}, feeder+filters {r.feeder_pct:.1f}, "
              f"whole process {r.process_pct:.1f}{gen}")
    if generation is not None:
        generation.stop_event.set()
        generation.join()
    first = results[0]
    parts = [f"{r.label.split(',')[0]}: {r.painted_fps:.0f} fps at {r.gui_pct:.1f}% GUI thread "
             f"({r.process_pct:.0f}% process)" for r in results]
    verdict = "met" if first.painted_fps >= GOAL_FPS * 0.95 and first.gui_pct <= GOAL_PERCENT else "not met"
    gen = " with generation" if args.with_generation else ""
    print(f"SUMMARY gui_traces.py: {'; '.join(parts)}{gen}; goal (>= {GOAL_FPS:.0f} fps, <= {GOAL_PERCENT:.0f}% "
          f"for {first.label.split(',')[0]}) {verdict}")


if __name__ == "__main__":
    main()
