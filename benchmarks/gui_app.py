"""The whole desktop app while it generates: GUI event-loop delay, trace frame rate and CPU.

Opens the real MainWindow offscreen on BrainFlow's synthetic board (16 channels at 250 Hz) with the
tiny image model generating on the CPU, lets it settle, then for ``--seconds``:

- event-loop delay: a 10 ms QTimer on the GUI thread records how late each tick fires; p50 / p95 /
  max (goal: p95 <= 30 ms);
- frames per second: the window's 60 Hz refresh timer's ticks that ran (each brings every view up to date: traces,
  spectrum, spectrogram, head map), and of them the trace pictures that changed (repainted). A trace picture changes
  when the stream's time moves it by a pixel or a chunk of samples arrives, so the changes are bounded by the scroll
  speed (canvas px / span s) plus the chunk rate (the synthetic board's 50/s), whatever the app can draw;
  ``--span`` sets the traces' span;
- CPU of the GUI thread (``time.thread_time`` sampled on it) and of the whole process, as % of one core
  (the whole process includes acquisition, the encoder and the diffusion model on the CPU);
- images shown per second.

``--outputs`` adds what a show runs: the full-screen show window (offscreen, screen 0) with its crossfade, OSC out
(features every hop, frame events) to a local UDP port, video export to a temporary MP4, the frame stream on LSL,
and creative mode (a prompt at EEG influence 0.5 and two steering rules).

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_app.py [--seconds 20] [--no-generate] [--outputs]
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import statistics
import tempfile
import time


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=5.0, help="seconds before measuring (model load, warm-up)")
    p.add_argument("--no-generate", action="store_true")
    p.add_argument("--device", default="synthetic")
    p.add_argument("--outputs", action="store_true", help="show window, OSC, video, LSL frames and creative mode on")
    p.add_argument("--span", type=float, help="the traces' span in s (default: the settings', 10 s)")
    p.add_argument("--size", default="1400x800", help="the window's size in px, WIDTHxHEIGHT (default 1400x800)")
    args = p.parse_args()

    from PySide6 import QtCore, QtWidgets

    from bci_dream.gui.main_window import AppOptions, MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    tmp = tempfile.mkdtemp(prefix="bci-dream-bench-")
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(tmp, "cache"))
    settings = QtCore.QSettings(os.path.join(tmp, "settings.ini"), QtCore.QSettings.Format.IniFormat)
    extra = {}
    if args.outputs:
        from bci_dream.runtime.steering import parse_rule

        extra = dict(osc="127.0.0.1:9", video=os.path.join(tmp, "show.mp4"), lsl_frames=True, show_screen=0,
                     creative={"prompt": "a red cat", "eeg_influence": 0.5,
                               "rules": (parse_rule("alpha=calm ocean at dusk"), parse_rule("beta=busy city"))})
    window = MainWindow(AppOptions(device=args.device, model="tiny", gpu="cpu", generate=not args.no_generate,
                                   **extra), settings=settings)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()

    def wait(seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.001)

    wait(60, lambda: window.live is not None and (args.no_generate or window.frames_received > 0))
    if args.span:
        window.traces.set_span(args.span)
    wait(args.settle)
    refreshes = [0]
    window.trace_timer.timeout.connect(lambda: refreshes.__setitem__(0, refreshes[0] + 1))
    delays: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        delays.append(max(0.0, (now - last[0]) * 1000 - 10.0))
        last[0] = now

    timer = QtCore.QTimer(interval=10, timerType=QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    frames0, images0 = window.traces.frames_drawn, window.images.images_shown
    cpu0, t0 = time.process_time(), time.perf_counter()
    gui0 = time.thread_time()
    timer.start()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        app.sendPostedEvents()
        time.sleep(0.0005)  # (exec() would block in the OS wait; this loop does the same between events)
    timer.stop()
    elapsed = time.perf_counter() - t0
    gui_cpu_pct = (time.thread_time() - gui0) / elapsed * 100
    proc_cpu_pct = (time.process_time() - cpu0) / elapsed * 100
    fps = refreshes[0] / elapsed
    changes = (window.traces.frames_drawn - frames0) / elapsed
    px_per_s = window.traces.scroll_px_per_s
    ips = (window.images.images_shown - images0) / elapsed
    n_ch = window.live.info.n_channels if window.live else 0
    print(f"window {width}x{height} offscreen; {args.device} {n_ch} channels; span {window.traces.span_s:g} s; "
          f"generation {'off' if args.no_generate else 'tiny model on the CPU'}; outputs "
          f"{'show window + OSC + video + LSL frames + creative mode' if args.outputs else 'none'}; "
          f"{elapsed:.1f} s measured", flush=True)
    print(f"event-loop delay (10 ms timer): p50 {statistics.median(delays):.1f} ms, p95 {pct(delays, 95):.1f} ms, "
          f"max {max(delays):.1f} ms (n={len(delays)})", flush=True)
    print(f"frames: {fps:.1f} refreshes/s (every view up to date each time); trace pictures changed {changes:.1f}/s "
          f"(the traces scroll {px_per_s:.0f} px/s: {px_per_s * window.traces.span_s:.0f} px over "
          f"{window.traces.span_s:g} s); "
          f"images: {ips:.2f}/s; CPU: GUI thread {gui_cpu_pct:.1f} % of one core, whole process {proc_cpu_pct:.1f} %",
          flush=True)
    if args.outputs:
        print(f"show window frames {window.show_window.frames_shown if window.show_window else 0}; OSC messages "
              f"{window.outputs.sender.sent}; video frames {window.outputs.video.frames}", flush=True)
    print(f"SUMMARY gui_app.py{' --outputs' if args.outputs else ''}: event-loop delay p95 {pct(delays, 95):.1f} ms "
          f"(goal <= 30 ms); {fps:.1f} frames/s (goal >= 60; trace pictures changed {changes:.1f}/s) at "
          f"{gui_cpu_pct:.1f} % of one core on the GUI thread while "
          f"{'not ' if args.no_generate else ''}generating ({ips:.2f} images/s)", flush=True)
    window.close()


if __name__ == "__main__":
    main()
