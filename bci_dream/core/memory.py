"""Giving freed memory back to the operating system during long sessions.

glibc's allocator keeps memory freed by a thread in that thread's arena; a generation thread that allocates and
frees tensors and images of varying sizes for hours leaves the process's resident size creeping up although
nothing is held. :func:`release_free_memory` asks glibc to return what it can (``malloc_trim``); elsewhere (macOS,
Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache


@cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap memory to the OS where glibc allows it; True if it was asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
