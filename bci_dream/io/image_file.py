"""Image files (stimuli, generated images) read as RGB, with one-line errors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bci_dream.core.errors import BciDreamError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


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
