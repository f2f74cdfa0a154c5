"""Scenes: one TOML file with everything an installation runs (``bci-dream app --scene gallery.toml``).

::

    [source]                      # the device (as 'bci-dream devices' names it) and its connection, or a replay
    device = "cyton"
    params = { serial_port = "/dev/ttyUSB0" }
    bandpass = [1, 45]            # filters (default: the device profile's); [] and notch = 0 turn them off
    notch = 50
    # replay = "session.xdf"; speed = 1.0

    [model]                       # what generates: the options of 'bci-dream app' of the same names
    model = "auto"
    checkpoint = "subjects/s01"
    route = "dreamdiffusion"      # also ip_adapter, ip_adapter_scale, bank, seed, size, steps, hop, similarity ...

    [creative]                    # creative mode
    prompt = "a lighthouse"
    style = "dreamlike"
    eeg_influence = 0.6
    steer = ["alpha=calm ocean at dusk", "beta=busy city at noon"]
    baseline_s = 45

    [outputs]
    osc = "192.168.1.20:9000"
    osc_listen = 9001
    show_screen = 1
    video = "gallery.mp4"
    lsl_frames = true
    ndi = "gallery"               # also virtual_camera = true, spout = "gallery" (Windows), syphon = "gallery" (macOS)

    [auto]                        # unattended: connect and generate at start, reconnect when the device is lost
    connect = true
    start = true
    reconnect = true
    reconnect_s = 5

Every key is optional; an unknown section or key, or a value of the wrong type, is named in one line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bci_dream.core.errors import BciDreamError
from bci_dream.core.toml_file import read_toml

_NUM = (int, float)
#: section → key → accepted types.
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "source": {"device": (str,), "params": (dict,), "replay": (str,), "speed": _NUM, "bandpass": (list,),
               "notch": _NUM},
    "model": {"model": (str,), "checkpoint": (str,), "gpu": (str,), "size": (int,), "steps": (int,), "seed": (int,),
              "route": (str,), "ip_adapter": (str,), "ip_adapter_scale": _NUM, "bank": (str,), "hop": _NUM,
              "similarity": _NUM, "interpolate": (int,), "compile": (str,), "backend": (str,),
              "encoder_precision": (str,)},
    "creative": {"prompt": (str,), "negative_prompt": (str,), "guidance": _NUM, "style": (str,),
                 "eeg_influence": _NUM, "steer": (list,), "baseline_s": _NUM, "hold_artefact": _NUM, "sham": (str,),
                 "sham_shift_s": _NUM},
    "outputs": {"osc": (str,), "osc_listen": (int,), "video": (str,), "lsl_frames": (bool,), "show_screen": (int,),
                "virtual_camera": (bool,), "ndi": (str,), "spout": (str,), "syphon": (str,)},
    "auto": {"connect": (bool,), "start": (bool,), "reconnect": (bool,), "reconnect_s": _NUM},
}
#: (section, key) → (test, what the value must be): numbers the session cannot run with.
_LIMITS = {
    ("source", "speed"): (lambda v: v >= 0, "0 (as fast as possible) or more"),
    ("source", "notch"): (lambda v: v > 0, "a frequency above 0 Hz"),
    ("model", "size"): (lambda v: 64 <= v <= 4096, "between 64 and 4096 pixels"),
    ("model", "steps"): (lambda v: 1 <= v <= 1000, "between 1 and 1000"),
    ("model", "hop"): (lambda v: v > 0, "above 0 s"),
    ("model", "interpolate"): (lambda v: v >= 0, "0 or more"),
    ("model", "ip_adapter_scale"): (lambda v: v >= 0, "0 or more"),
    ("creative", "guidance"): (lambda v: v >= 0, "0 or more"),
    ("creative", "eeg_influence"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("creative", "baseline_s"): (lambda v: v >= 0, "0 s or more"),
    ("creative", "hold_artefact"): (lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("outputs", "osc_listen"): (lambda v: 1 <= v <= 65535, "a port between 1 and 65535"),
    ("auto", "reconnect_s"): (lambda v: v > 0, "above 0 s"),
}
_PATHS = {("source", "replay"), ("model", "checkpoint"), ("model", "ip_adapter"), ("model", "bank"),
          ("outputs", "video")}


class SceneError(BciDreamError):
    """A scene file that cannot be read or holds an unknown key or a wrong value (named)."""


def load_scene(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The scene in ``path``, checked against :data:`SCHEMA`; relative paths in it are made relative to its folder.

    Raises:
        SceneError: the file is missing or not TOML, or a section, key or value is not what a scene takes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise SceneError(f"scene file {path} does not exist")
    data = read_toml(path, "scene file", SceneError)
    scene: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise SceneError(f"scene file {path}: unknown section [{section}]; sections: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise SceneError(f"scene file {path}: {section} must be a section ([{section}])")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise SceneError(f"scene file {path}: unknown key '{key}' in [{section}]; keys there: "
                                 f"{', '.join(SCHEMA[section])}")
            types = SCHEMA[section][key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise SceneError(f"scene file {path}: [{section}] {key} must be "
                                 f"{' or '.join(_type_name(t) for t in types)}, not {value!r}")
            limit = _LIMITS.get((section, key))
            if limit is not None and not (math.isfinite(value) and limit[0](value)):
                raise SceneError(f"scene file {path}: [{section}] {key} must be {limit[1]}, not {value!r}")
            if (section, key) in _PATHS and not Path(value).expanduser().is_absolute():
                value = str((path.parent / value).resolve())
            scene.setdefault(section, {})[key] = value
    band = scene.get("source", {}).get("bandpass")
    if band is not None and not (band == [] or (len(band) == 2 and all(isinstance(f, _NUM) for f in band)
                                                and 0 <= band[0] < band[1])):
        raise SceneError(f"scene file {path}: [source] bandpass must be [LOW, HIGH] in Hz (or [] for none), not {band}")
    for rule in scene.get("creative", {}).get("steer", []):
        if not isinstance(rule, str):
            raise SceneError(f"scene file {path}: [creative] steer must be a list of rules (text), not {rule!r}")
    return scene


def save_scene(scene: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``scene`` (sections of plain values; None values left out) as TOML to ``path``.

    Raises:
        SceneError: the file cannot be written.
    """
    path = Path(path)
    lines = ["# a bci-dream scene: 'bci-dream app --scene " + path.name + "'"]
    for section in SCHEMA:
        table = {k: v for k, v in scene.get(section, {}).items() if v is not None}
        if not table:
            continue
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    try:
        path.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise SceneError(f"cannot write the scene file {path}: {e.strerror or e}") from e
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # (a JSON string is a TOML basic string)


def _type_name(t: type) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false", list: "a list",
            dict: "a table"}.get(t, t.__name__)
