"""Style presets: small TOML prompt files (``prompt`` words added after the user's prompt, a ``negative_prompt``, a
``description``), shipped in ``bci_dream/styles/`` (``--style dreamlike``) or given as a file (``--style my.toml``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bci_dream.core.errors import BciDreamError
from bci_dream.core.toml_file import read_toml

STYLE_DIR = Path(__file__).resolve().parents[1] / "styles"
_KEYS = {"prompt", "negative_prompt", "description"}


class StyleError(BciDreamError):
    """A style preset that does not exist or cannot be read."""


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""
    description: str = ""

    def apply(self, prompt: str | None) -> str:
        """The user's ``prompt`` with the style's words after it (the style's alone without one)."""
        return ", ".join(p for p in (prompt or "", self.prompt) if p)


def list_styles() -> list[str]:
    """The shipped presets' names."""
    return sorted(p.stem for p in STYLE_DIR.glob("*.toml"))


def load_style(name_or_file: str | os.PathLike) -> Style:
    """A shipped preset by name, or a TOML file.

    Raises:
        StyleError: neither (the shipped names listed), an unreadable file, or an unknown key (named).
    """
    path = Path(name_or_file).expanduser()
    if not path.is_file():
        shipped = STYLE_DIR / f"{name_or_file}.toml"
        if not shipped.is_file():
            raise StyleError(f"unknown style '{name_or_file}'; styles: {', '.join(list_styles())}, or a .toml file "
                             "with prompt and negative_prompt")
        path = shipped
    data = read_toml(path, "style file", StyleError)
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise StyleError(f"style file {path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"a style has {', '.join(sorted(_KEYS))}")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise StyleError(f"style file {path}: {', '.join(bad)} must be text")
    return Style(path.stem, data.get("prompt", "").strip(), data.get("negative_prompt", "").strip(),
                 data.get("description", "").strip())
