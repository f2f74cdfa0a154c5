"""Calling listeners from a worker thread: one that fails is said once (with its traceback, in the log) and removed,
so that a broken display or output never stops acquisition, features or generation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def notify(listeners: list[Callable[[Any], None]], value: Any, what: str) -> None:
    """``listener(value)`` for each of ``listeners``; one that raises is logged (``what``: "frame", "feature" ...)
    and removed from the list."""
    for listener in list(listeners):
        try:
            listener(value)
        except Exception:
            log.exception("a %s listener failed; it is removed", what)
            if listener in listeners:
                listeners.remove(listener)
