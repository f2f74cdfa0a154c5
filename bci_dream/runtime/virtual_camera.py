"""The images as a virtual camera (pyvirtualcam, an optional extra: ``pip install 'bci-dream[show]'``), so that OBS,
Zoom, TouchDesigner or a browser can take them like a webcam.

pyvirtualcam needs a camera driver: v4l2loopback on Linux (``modprobe v4l2loopback``), OBS's virtual camera on
Windows and macOS. Without the library or the driver, the session does not start and one line says what to install.
Each generated image is sent as it comes; the camera repeats the last one in between.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)


class VirtualCameraError(BciDreamError):
    """No pyvirtualcam, or no virtual camera device to send to."""


def check_available() -> None:
    """Raise :class:`VirtualCameraError` (one line saying what to install) when pyvirtualcam is missing."""
    if importlib.util.find_spec("pyvirtualcam") is None:
        raise VirtualCameraError("the virtual camera needs pyvirtualcam: pip install 'bci-dream[show]' (and a "
                                 "camera driver: v4l2loopback on Linux, OBS's virtual camera on Windows and macOS)")


class VirtualCamera:
    """An engine listener that sends every generated image to a virtual camera of ``size`` x ``size`` pixels (None:
    the first image's size; the camera opens then).

    Raises:
        VirtualCameraError: pyvirtualcam is missing (here) or finds no camera device (here, or with the first image
            when the size comes from it); one line.
    """

    def __init__(self, size: int | None = None, fps: float = 30.0) -> None:
        check_available()
        self.size, self.fps, self.sent = size, float(fps), 0
        self._camera = None
        self._closed = False
        if size:
            self._open(int(size))

    def _open(self, size: int) -> None:
        import pyvirtualcam  # (optional: checked in __init__)

        try:
            self._camera = pyvirtualcam.Camera(width=size, height=size, fps=self.fps)
        except RuntimeError as e:
            raise VirtualCameraError(f"no virtual camera to send to: {e}; on Linux load v4l2loopback "
                                     "('sudo modprobe v4l2loopback'), elsewhere start OBS's virtual camera once") from e
        self.size = size
        log.info("virtual camera %s at %dx%d", self._camera.device, size, size)

    def __call__(self, frame) -> None:
        if frame.image is None or self._closed:
            return
        if self._camera is None:
            try:
                self._open(frame.image.size[0])
            except VirtualCameraError as e:  # (said once; the session and its other outputs go on)
                log.warning("%s", e)
                self._closed = True
                return
        image = frame.image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size))
        self._camera.send(np.asarray(image, dtype=np.uint8))
        self.sent += 1

    def close(self) -> None:
        self._closed = True
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()
