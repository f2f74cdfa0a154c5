"""Small file helpers shared by every layer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``path`` (hidden, with the same suffix: writers that pick the
    format by it still do), then rename it to ``path``: a reader never sees a half-written file, and a write that
    fails leaves the old file as it was (and no temporary file)."""
    path = Path(path)
    tmp = path.with_name(f".partial-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_file():
            tmp.unlink()
        raise
