"""Can Qt open a window here? Asked before Qt is asked: Qt aborts the whole process (a core dump, no message a
user can act on) when its platform plugin cannot load, most often because a fresh Linux desktop lacks the xcb
libraries the plugin links to."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: Debian/Ubuntu package of each library Qt 6's xcb platform plugin loads (the ones a desktop may lack).
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-sync.so.1": "libxcb-sync1", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-util.so.1": "libxcb-util1", "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1", "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def display_error() -> str | None:
    """One line saying why no window can open here (no display, or libraries Qt needs are missing), else None."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform or sys.platform in ("win32", "darwin"):
        return None  # (offscreen, vnc, wayland ... chosen on purpose; other systems ship what Qt needs)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display to open a window on (DISPLAY is not set)"
    if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
        return None  # (Qt's wayland plugin; its libraries come with the desktop)
    missing = missing_xcb_libraries()
    if not missing:
        return None if x_server_answers() else f"the X display '{os.environ['DISPLAY']}' does not answer"
    packages = " ".join(dict.fromkeys(XCB_PACKAGES.get(lib, lib) for lib in missing))
    return (f"Qt's X11 plugin needs the system libraries {', '.join(missing)}, which are not installed "
            f"(Debian/Ubuntu: sudo apt-get install {packages})")


def missing_xcb_libraries() -> list[str]:
    """The shared libraries Qt's xcb platform plugin needs that the dynamic loader cannot find (``ldd``); empty
    when all are there, or when that cannot be told (no ``ldd``, no plugin file)."""
    plugin = _xcb_plugin()
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return not_found_in_ldd_output(out)


def x_server_answers() -> bool:
    """Whether the X server of ``$DISPLAY`` accepts a connection (through libxcb, as Qt connects); True when
    that cannot be told."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return True
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(None, None)
    try:
        return xcb.xcb_connection_has_error(connection) == 0
    finally:
        xcb.xcb_disconnect(connection)


def not_found_in_ldd_output(text: str) -> list[str]:
    """The ``NAME => not found`` libraries of ``ldd``'s output, each once, in order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(text)))


def _xcb_plugin() -> Path | None:
    try:
        import PySide6
    except ImportError:  # pragma: no cover - PySide6 is a dependency
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None
