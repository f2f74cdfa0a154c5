"""Loading a model from a local folder or the Hugging Face hub: cache first, then the hub, one-line errors.

No torch or diffusers at import time: :mod:`bci_dream.generation.models` (``bci-dream models list``) uses
this module and stays quick.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from bci_dream.core.errors import BciDreamError, first_line

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_SUBFOLDER = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/([\w.-]+(?:/[\w.-]+)*)$")
T = TypeVar("T")


class ModelLoadError(BciDreamError):
    """A base model (diffusion pipeline, CLIP, classifier) is missing, incomplete or cannot be downloaded."""


def is_local(source: str | os.PathLike) -> bool:
    """True when ``source`` names a local folder (existing, or written like a path rather than a hub id)."""
    text = str(source)
    return Path(text).expanduser().exists() or not _HUB_ID.match(text) or text.startswith((".", "~"))


def hub_subfolder(source: str | os.PathLike) -> tuple[str, str] | None:
    """``("h94/IP-Adapter", "models/image_encoder")`` for a hub id with a subfolder (``owner/name/sub/...``) that
    is not a local path (neither it nor its first part exists here), else None."""
    text = str(source)
    match = _HUB_SUBFOLDER.match(text)
    if match is None or Path(text).expanduser().exists() or Path(text.split("/", 1)[0]).exists():
        return None
    return match.group(1), match.group(2)


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers (through the proxies huggingface_hub uses), within ``timeout`` s."""
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        if constants.HF_HUB_OFFLINE:
            return False
        get_session().head(constants.ENDPOINT, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not reachable now
        return False


def hub_error(source: str, what: str, reason: str) -> ModelLoadError:
    """The one line for a hub id that is neither a folder nor cached, and could not be downloaded."""
    return ModelLoadError(
        f"cannot load the {what} '{source}': it is not a local folder, not in the Hugging Face cache, and {reason}; "
        f"download it first with 'hf download {source}' (or 'huggingface-cli download {source}') "
        "or pass a local folder")


def load_from_folder_or_hub(source: str, what: str, load: Callable[[bool], T],
                            errors: tuple[type[BaseException], ...] = (OSError, ValueError)) -> T:
    """Run ``load(local_files_only)`` for a local folder, or for a hub id: from the cache first, then the hub.

    Turns the libraries' ``errors`` into one-line :class:`ModelLoadError` s naming ``what`` and ``source``
    (without waiting for the hub client's retries when the hub cannot be reached at all).
    """
    if is_local(source):
        try:
            return load(True)
        except ModelLoadError:
            raise
        except errors as e:
            raise ModelLoadError(f"cannot load the {what} from {source}: {first_line(e)}") from e
    try:
        return load(True)  # already in the Hugging Face cache: no network needed
    except ModelLoadError:
        raise
    except errors:
        pass
    if not hub_reachable():
        raise hub_error(source, what, "the Hugging Face hub cannot be reached from here")
    try:
        return load(False)
    except ModelLoadError:
        raise
    except errors as e:
        raise hub_error(source, what, f"the hub did not provide it ({first_line(e)})") from e


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Only errors from the named loggers while the block runs (for notes the libraries print by design)."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its per-load progress bars and notes (weights loading, shard reports) in the block."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with quiet("transformers"):
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
