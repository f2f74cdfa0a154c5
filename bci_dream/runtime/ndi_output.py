"""The images as an NDI source (ndi-python, an optional extra: ``pip install 'bci-dream[show]'``), for video mixers,
OBS, vMix, Resolume and TouchDesigner on the local network.

NDI needs its runtime (the NDI SDK's library, which ndi-python's wheels bundle on Windows, macOS and Linux x86-64).
Without the library the session does not start and one line says what to install. Each generated image is sent as it
comes (BGRX); receivers keep showing the last one in between.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)

SOURCE_NAME = "bci-dream"


class NdiError(BciDreamError):
    """No ndi-python, or the NDI runtime cannot start."""


class NdiOutput:
    """An engine listener that sends every generated image as the NDI source ``name``.

    Raises:
        NdiError: ndi-python is missing or the NDI runtime does not start (one line).
    """

    def __init__(self, name: str = SOURCE_NAME) -> None:
        if importlib.util.find_spec("NDIlib") is None:
            raise NdiError("NDI output needs ndi-python: pip install 'bci-dream[show]'")
        import NDIlib as ndi  # (optional: checked above)

        if not ndi.initialize():
            raise NdiError("the NDI runtime did not start (this CPU or system is not supported by NDI)")
        settings = ndi.SendCreate()
        settings.ndi_name = name
        self._ndi = ndi
        self._sender = ndi.send_create(settings)
        if self._sender is None:
            ndi.destroy()
            raise NdiError(f"cannot create the NDI source {name!r}")
        self._frame = ndi.VideoFrameV2()
        self._frame.FourCC = ndi.FOURCC_VIDEO_TYPE_BGRX
        self.name, self.sent = name, 0
        log.info("NDI source %r", name)

    def __call__(self, frame) -> None:
        if frame.image is None or self._sender is None:
            return
        rgb = np.asarray(frame.image.convert("RGB"), dtype=np.uint8)
        bgrx = np.empty((*rgb.shape[:2], 4), np.uint8)
        bgrx[..., 0], bgrx[..., 1], bgrx[..., 2], bgrx[..., 3] = rgb[..., 2], rgb[..., 1], rgb[..., 0], 255
        self._frame.data = bgrx
        self._ndi.send_send_video_v2(self._sender, self._frame)
        self.sent += 1

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            self._ndi.send_destroy(sender)
            self._ndi.destroy()
