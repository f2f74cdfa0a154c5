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
