"""Image files (stimuli, generated images) read as RGB, with one-line errors."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from bci_dream.core.errors import BciDreamError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)


#: File name endings of the images stimulus sets, pairs and image banks take.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageFileError(BciDreamError):
    """An image file is missing or cannot be decoded."""


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as an RGB PIL image, fully loaded (the file is closed).

    Raises:
        ImageFileError: the file is missing or not an image PIL can decode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        why = "it is empty" if os.path.isfile(path) and os.path.getsize(path) == 0 else first_line(e)
        raise ImageFileError(f"cannot read image {path} ({why}): it is damaged or not an image; replace it or leave "
                             "it out") from e


def is_readable_image(path: str | os.PathLike) -> bool:
    """Whether Pillow decodes the image at ``path`` (the reason it does not is logged at debug level)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        log.debug("cannot read image %s: %s", path, e)
        return False
    return True
