"""The images as a Spout sender (Windows, SpoutGL) or a Syphon server (macOS, syphon-python): GPU texture sharing
with TouchDesigner, Resolume, MadMapper, OBS and VJ tools on the same machine. Both are optional extras
(``pip install 'bci-dream[show]'`` installs the one for the system it runs on).

Each generated image is shared as it comes (RGBA, 8 bits); receivers keep showing the last one in between. On another
system, or without the library, the session does not start and one line says what to use instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import numpy as np

from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)

SENDER_NAME = "bci-dream"


class TextureShareError(BciDreamError):
    """Spout or Syphon is not available on this system, or its sender cannot start."""


def _rgba(image) -> np.ndarray:
    """A PIL image as a C-contiguous uint8 [H, W, 4] RGBA array (alpha 255)."""
    return np.ascontiguousarray(np.asarray(image.convert("RGBA"), dtype=np.uint8))


def _library(what: str, module: str, system: str, platform: str, package: str, instead: str):
    """The module ``module`` that ``what`` output needs, imported (it runs on ``platform`` only)."""
    if sys.platform != platform:
        raise TextureShareError(f"{what} output is {system}-only; here use {instead}")
    if importlib.util.find_spec(module) is None:
        raise TextureShareError(f"{what} output needs {package}: pip install 'bci-dream[show]'")
    return importlib.import_module(module)


class SpoutOutput:
    """An engine listener that shares every generated image as the Spout sender ``name`` (Windows).

    Spout needs an OpenGL context on the thread that sends; SpoutGL makes a hidden one itself, so the sender is
    made on the first frame, on the engine's thread, which sends all the frames after it.

    Raises:
        TextureShareError: not Windows, or SpoutGL is missing (one line).
    """

    def __init__(self, name: str = SENDER_NAME) -> None:
        self._spout = _library("Spout", "SpoutGL", "Windows", "win32", "SpoutGL",
                               "--syphon on macOS, --ndi or --virtual-camera elsewhere")
        self._gl_rgba = importlib.import_module("SpoutGL.enums").GL_RGBA
        self.name, self.sent, self._sender = name, 0, None
        log.info("Spout sender %r", name)

    def __call__(self, frame) -> None:
        if frame.image is None:
            return
        if self._sender is None:
            self._sender = self._spout.SpoutSender()
            self._sender.setSenderName(self.name)
        rgba = _rgba(frame.image)
        height, width = rgba.shape[:2]
        if not self._sender.sendImage(rgba, width, height, self._gl_rgba, False, 0):
            log.warning("Spout did not take frame %d (no OpenGL context on this system?)", frame.record.index)
            return
        self._sender.setFrameSync(self.name)
        self.sent += 1

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.releaseSender()


class SyphonOutput:
    """An engine listener that shares every generated image as the Syphon server ``name`` (macOS, Metal).

    Raises:
        TextureShareError: not macOS, syphon-python is missing, or the server does not start (one line).
    """

    def __init__(self, name: str = SENDER_NAME) -> None:
        syphon = _library("Syphon", "syphon", "macOS", "darwin", "syphon-python",
                          "--spout on Windows, --ndi or --virtual-camera elsewhere")
        self._raw = importlib.import_module("syphon.utils.raw")
        self._numpy = importlib.import_module("syphon.utils.numpy")
        try:
            self._server = syphon.SyphonMetalServer(name)
        except Exception as e:  # noqa: BLE001 - (PyObjC's errors: said in one line)
            raise TextureShareError(f"cannot start the Syphon server {name!r}: {e}") from e
        self.name, self.sent, self._texture, self._size = name, 0, None, None
        log.info("Syphon server %r", name)

    def __call__(self, frame) -> None:
        if frame.image is None or self._server is None:
            return
        rgba = _rgba(frame.image)
        size = rgba.shape[1], rgba.shape[0]
        if size != self._size:  # (a texture per image size: the first frame, and after a change of --size)
            self._texture, self._size = self._raw.create_mtl_texture(self._server.device, *size), size
        self._numpy.copy_image_to_mtl_texture(rgba, self._texture)
        self._server.publish_frame_texture(self._texture)
        self.sent += 1

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
