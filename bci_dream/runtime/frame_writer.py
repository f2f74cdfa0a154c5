"""Headless output of the engine: one PNG per image plus ``frames.jsonl``, and a closing summary."""

from __future__ import annotations

import json
import logging
import os
import threading
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
        self.records: list[FrameRecord] = []
        self._lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        record = frame.record
        if frame.image is not None:
            draw_labels(frame.image, record.labels).save(self.out / f"{record.index:06d}.png")
        with self._lock:
            self.records.append(record)
            self._log.write(json.dumps(record.to_dict()) + "\n")

    def close(self) -> None:
        self._log.close()


def summary(records: list[FrameRecord], seconds: float) -> str:
    """One line: frames, skipped, frames per second, latency p50 and p95."""
    made = [r for r in records if not r.skipped]
    skipped = len(records) - len(made)
    fps = len(made) / seconds if seconds > 0 else 0.0
    lat = np.array([r.latency_ms for r in made if r.latency_ms is not None])
    if lat.size:
        latency = f"latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms"
    else:
        latency = "no latency (no frames)" if not made else "no latency (the replay ran ahead of the clock)"
    labels = sorted({label for r in records for label in r.labels})
    return (f"{len(made)} frames, {skipped} skipped, {fps:.2f} frames/s, {latency}"
            + (f" [{'; '.join(labels)}]" if labels else ""))
