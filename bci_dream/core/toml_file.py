"""Reading TOML settings files (device profiles, calibration protocols) with one-line errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from bci_dream.core.errors import BciDreamError


def read_toml(path: str | os.PathLike, what: str, error: type[BciDreamError] = BciDreamError) -> dict[str, Any]:
    """The table in ``path``; ``error`` naming ``what`` (e.g. "device profile") and the file if it cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {path} is not valid TOML: {e}") from e
