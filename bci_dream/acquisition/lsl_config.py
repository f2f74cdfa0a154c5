"""liblsl's own log lines (``INFO| Loaded default config``, ``ERR| Stream transmission broke off``) kept off the
terminal: the sources say what matters in their own words.

liblsl reads its settings from the first of ``$LSLAPICFG``, ``./lsl_api.cfg``, ``~/lsl_api/lsl_api.cfg`` and
``/etc/lsl_api/lsl_api.cfg`` (its documentation); when none exists, :func:`quiet_liblsl` points ``LSLAPICFG`` at
this package's ``lsl_api.cfg``, which logs fatal errors only. A user's own file (multicast, KnownPeers ...) is never
replaced. No liblsl call happens here: it must run before the library's first use.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The settings used when the user has none: liblsl's default network settings, its log at errors only.
QUIET_CONFIG = Path(__file__).with_name("lsl_api.cfg")


def user_config() -> Path | None:
    """The liblsl settings file of the user, where liblsl would find one; None without one."""
    candidates = [os.environ.get("LSLAPICFG", ""), "lsl_api.cfg", "~/lsl_api/lsl_api.cfg", "/etc/lsl_api/lsl_api.cfg"]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


def quiet_liblsl() -> bool:
    """Keep liblsl's log to fatal errors, unless the user has settings of their own; True when it did."""
    if user_config() is not None:
        return False
    os.environ["LSLAPICFG"] = str(QUIET_CONFIG)
    return True
