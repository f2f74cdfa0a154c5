"""Exceptions whose message is one line that names the problem and what to do about it.

The command line prints ``str(error)`` of these and exits non-zero; anything else is a bug.
"""


class BciDreamError(Exception):
    """Base class for expected failures caused by input, files or devices."""


class DeviceError(BciDreamError):
    """A headset or stream cannot be opened, or its profile is wrong."""


class StreamNotFoundError(DeviceError):
    """No LSL stream matched the query within the timeout."""


class RecordingError(BciDreamError):
    """A recording cannot be read or written."""


class ChunkError(BciDreamError):
    """A chunk does not fit its stream (wrong channel count, wrong dtype or shape)."""


class CheckpointError(BciDreamError):
    """A checkpoint is missing, damaged, or belongs to another model."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of a library exception's message (its type name when the message is empty), at most
    ``limit`` characters: what a one-line error of ours quotes of it."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[:limit] + "..."
