"""Headless output of the engine: one PNG per image plus ``frames.jsonl``, and a closing summary."""

from __future__ import annotations

import json
import logging
import os
import threading
from array import array
from pathlib import Path

import numpy as np

from bci_dream.core.errors import BciDreamError
from bci_dream.runtime.engine import Frame, FrameRecord

log = logging.getLogger(__name__)


def draw_labels(image, labels: list[str]):
    """A copy of ``image`` (PIL) with ``labels`` written in its top-left corner on a dark band."""
    if not labels:
        return image
    from PIL import ImageDraw

    image = image.copy()
    draw = ImageDraw.Draw(image)
    text = " · ".join(labels)
    box = draw.textbbox((0, 0), text)
    draw.rectangle((0, 0, box[2] + 6, box[3] + 4), fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 0))
    return image


class FrameWriter:
    """Writes each generated image to ``out/{index:06d}.png`` and every record to ``out/frames.jsonl``.

    Images of a preview model or of untrained conditioning carry the label in the picture and in the record.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log = open(self.out / "frames.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise BciDreamError(f"cannot write to {self.out}: {e.strerror or e}; choose another --out folder") from e
        self.tally = FrameTally()
        self._lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        record = frame.record
        if frame.image is not None:
            draw_labels(frame.image, record.labels).save(self.out / f"{record.index:06d}.png")
        with self._lock:
            self.tally.add(record)
            self._log.write(json.dumps(record.to_dict()) + "\n")

    def close(self) -> None:
        self._log.close()


class FrameTally:
    """What the closing summary needs of the frames (counts, latencies, labels), without keeping the frames: a
    session of hours writes every record to ``frames.jsonl`` and holds only 8 bytes a frame here."""

    def __init__(self) -> None:
        self.made = 0
        self.skipped = 0
        self.latencies_ms = array("d")
        self.labels: set[str] = set()

    def add(self, record: FrameRecord) -> None:
        if record.skipped:
            self.skipped += 1
        else:
            self.made += 1
            if record.latency_ms is not None:
                self.latencies_ms.append(record.latency_ms)
        self.labels.update(record.labels)


def summary(tally: FrameTally, seconds: float) -> str:
    """One line: frames, skipped, frames per second, latency p50 and p95."""
    fps = tally.made / seconds if seconds > 0 else 0.0
    lat = np.frombuffer(tally.latencies_ms, dtype=np.float64) if len(tally.latencies_ms) else np.zeros(0)
    if lat.size:
        latency = f"latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms"
    else:
        latency = "no latency (no frames)" if not tally.made else "no latency (the replay ran ahead of the clock)"
    labels = sorted(tally.labels)
    return (f"{tally.made} frames, {tally.skipped} skipped, {fps:.2f} frames/s, {latency}"
            + (f" [{'; '.join(labels)}]" if labels else ""))


def write_session(out: str | os.PathLike, **fields) -> Path:
    """``out/session.json``: what the session generated with (model, route, seed, training, creative settings), so
    that its frames can be read later for what they were. Rules and other objects are written as text."""
    path = Path(out) / "session.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields, indent=2, ensure_ascii=False,
                               default=lambda o: o.describe() if hasattr(o, "describe") else str(o)))
    return path
