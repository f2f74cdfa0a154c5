"""The Qt side of :class:`~bci_dream.runtime.stream_controller.StreamController`: its events as Qt signals.

The controller calls its listeners on worker threads; this object emits them as signals, which Qt queues to
the GUI thread where the window (or wizard) handles them. Nothing else about streams is decided here.
"""

from __future__ import annotations

from PySide6 import QtCore

from bci_dream.runtime.stream_controller import StreamController, StreamEvents


class QtStreamController(QtCore.QObject):
    """A :class:`StreamController` (``controller``) whose events arrive as signals on the GUI thread."""

    opened = QtCore.Signal(int, object)  # request number, LiveStream
    failed = QtCore.Signal(int, str)  # request number, one line
    state = QtCore.Signal(int, str, str)  # request number, source state, reason
    recorded = QtCore.Signal(object)  # RecordingSummary of a recording closed with its stream

    def __init__(self, parent: QtCore.QObject | None = None, *, name: str = "gui") -> None:
        super().__init__(parent)
        self.controller = StreamController(
            StreamEvents(opened=self.opened.emit, failed=self.failed.emit, state=self.state.emit,
                         recorded=self.recorded.emit), name=name)
