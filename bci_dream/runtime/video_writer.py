"""Video export (PyAV): the images as they come, at their own times, with a sidecar of frame times.

:class:`VideoWriter` is an engine listener (``--video out.mp4``): each generated image becomes one video frame whose
presentation time is when it was made (a variable frame rate, milliseconds time base), so that the video plays the
session as it happened; ``out.mp4.frames.csv`` lists each video frame's engine index and ``t_end`` (LSL seconds of
its window's last EEG sample), which lines the video up with any recording of the EEG. :func:`render` makes the same
from a headless run's folder afterwards (``bci-dream render FRAMES_DIR -o out.mp4``), timed by ``t_end``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bci_dream.core.errors import BciDreamError
from bci_dream.io.image_file import ImageFileError, read_image

log = logging.getLogger(__name__)

CODECS = ("libx264", "h264", "mpeg4")
SIDECAR_SUFFIX = ".frames.csv"


class VideoError(BciDreamError):
    """A video that cannot be written (folder, codec, frames)."""


def _codec() -> str:
    for name in CODECS:
        if name in av.codecs_available:
            return name
    raise VideoError("this PyAV has no H.264 or MPEG-4 encoder; install the 'av' wheel from PyPI")


class VideoWriter:
    """Writes frames to ``path`` as they come (see the module docstring); :meth:`close` finishes the file.

    Args:
        path: the video file (``.mp4``, ``.mkv`` or ``.mov``).
        fps: frame rate the container announces (frames keep their own times).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise VideoError(f"{self.path}: give a .mp4, .mkv or .mov file for the video")
        self._codec, self._fps = _codec(), fps  # (before anything is opened)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), "w")
            self._sidecar_file = open(str(self.path) + SIDECAR_SUFFIX, "w", newline="")  # noqa: SIM115 - closed in close()
        except OSError as e:
            where = f" ({e.filename} is in the way)" if getattr(e, "filename", None) else ""
            raise VideoError(f"cannot write the video {self.path}: {e.strerror or e}{where}; give another path") from e
        self._sidecar = csv.writer(self._sidecar_file)
        self._sidecar.writerow(["video_frame", "pts_ms", "engine_index", "t_end"])
        self._stream = None
        self._t0: float | None = None
        self._last_pts = -1
        self.frames = 0
        self.failed = False
        self._lock = threading.Lock()
        self._closed = False

    def _open_stream(self, width: int, height: int) -> None:
        stream = self._container.add_stream(self._codec, rate=Fraction(self._fps).limit_denominator(1000))
        stream.width, stream.height = width + width % 2, height + height % 2  # (4:2:0 needs even sides)
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if self._codec == "libx264":  # (no B-frames or look-ahead: frames go out as they come, in order)
            stream.codec_context.options = {"tune": "zerolatency", "preset": "veryfast"}
        self._stream = stream

    def write(self, image, *, at_s: float | None = None, index: int = -1, t_end: float = float("nan")) -> None:
        """One image (PIL or RGB uint8 array) at ``at_s`` seconds from the first (default: now)."""
        with self._lock:
            if self._closed:
                return
            pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
            if self._stream is None:
                self._open_stream(pixels.shape[1], pixels.shape[0])
            if pixels.shape[1] != self._stream.width or pixels.shape[0] != self._stream.height:
                from PIL import Image

                pixels = np.asarray(Image.fromarray(pixels).resize((self._stream.width, self._stream.height)))
            now = time.monotonic() if at_s is None else float(at_s)
            if self._t0 is None:
                self._t0 = now
            pts = max(self._last_pts + 1, int(round((now - self._t0) * 1000)))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = pts, self._stream.time_base
            try:
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
            except av.error.FFmpegError as e:  # (said once; the session and its other outputs go on)
                self._fail(e)
                return
            self._sidecar.writerow([self.frames, pts, index, f"{t_end:.6f}"])
            self._last_pts = pts
            self.frames += 1

    def _fail(self, error: Exception) -> None:
        if not self.failed:
            log.warning("the video %s cannot take more frames (%s); %d frames are in it", self.path, error,
                        self.frames)
        self.failed = True
        self._closed = True

    def __call__(self, frame) -> None:
        """Engine listener: generated frames only (skipped windows have no image)."""
        if frame.image is not None:
            self.write(frame.image, index=frame.record.index, t_end=frame.record.t_end)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._stream is not None and not self.failed:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            except av.error.FFmpegError as e:
                self._fail(e)
            self._sidecar_file.close()
        if self.frames == 0:
            log.warning("no frames were generated: %s holds no video", self.path)


def render(frames_dir: str | os.PathLike, output: str | os.PathLike, *, fps: float = 30.0) -> int:
    """Render a headless run's folder (PNG images and ``frames.jsonl``) to a video timed by each frame's ``t_end``;
    returns the number of frames.

    Raises:
        VideoError: no ``frames.jsonl`` or no images in the folder, or the video cannot be written.
    """
    if not fps > 0:
        raise VideoError(f"--fps must be a positive frame rate, not {fps:g}")
    folder = Path(frames_dir)
    log_file = folder / "frames.jsonl"
    if not log_file.is_file():
        raise VideoError(f"{folder} has no frames.jsonl: give the --out folder of 'bci-dream run --headless' or "
                         "'bci-dream replay --headless'")
    records, missing = [], []
    for n, line in enumerate(log_file.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
            index, t_end = int(record.get("index", -1)), float(record.get("t_end", 0.0))
        except (ValueError, TypeError, AttributeError):
            log.warning("%s line %d is not a frame record (a run cut short?); skipped", log_file, n)
            continue
        if record.get("skipped"):
            continue
        image = folder / f"{index:06d}.png"
        (records if image.is_file() else missing).append((t_end, index, image))
    if missing:
        log.warning("%d generated image(s) are missing from %s (%s ...); the video leaves them out", len(missing),
                    folder, missing[0][2].name)
    if not records:
        raise VideoError(f"{folder} holds no generated images to render")
    records.sort(key=lambda r: r[1])
    unreadable = []
    writer = VideoWriter(output, fps=fps)
    try:
        for t_end, index, image in records:
            try:
                picture = read_image(image)
            except ImageFileError:
                unreadable.append(image.name)
                continue
            writer.write(picture, at_s=t_end, index=index, t_end=t_end)
    finally:
        writer.close()
    if unreadable:
        log.warning("%d image(s) in %s are damaged (%s ...); the video leaves them out", len(unreadable), folder,
                    unreadable[0])
    return writer.frames
