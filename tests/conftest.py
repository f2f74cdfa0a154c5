"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Qt tests run without a display

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real recordings (``$BCI_DREAM_DATA``, default ``<repo root>/../shared/data``); skips if absent."""
    path = Path(os.environ.get("BCI_DREAM_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        message = f"shared test data not found at {path} (set BCI_DREAM_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must test against the real recordings, never skip them
        pytest.skip(message)
    return path
