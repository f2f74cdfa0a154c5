"""A frame stream on LSL: every generated image as a sample, so that any recording (LabRecorder, ``bci-dream
record``) lines the images up with the EEG.

Stream ``bci-dream-frames`` (type ``Markers``, irregular rate, 2 float64 channels ``frame_index`` and ``t_end``): one
sample per generated image, stamped with the LSL clock when the image was ready; ``t_end`` is the LSL time of the
last EEG sample of the window it was made from (so ``timestamp - t_end`` is the frame's latency).
"""

from __future__ import annotations

import pylsl

STREAM_NAME = "bci-dream-frames"
CHANNELS = ("frame_index", "t_end")


class FrameOutlet:
    """An engine listener that pushes each generated frame to the LSL stream :data:`STREAM_NAME`."""

    def __init__(self, name: str = STREAM_NAME) -> None:
        info = pylsl.StreamInfo(name, "Markers", len(CHANNELS), pylsl.IRREGULAR_RATE, "double64",
                                f"{name}-{pylsl.local_clock():.0f}")
        channels = info.desc().append_child("channels")
        for label in CHANNELS:
            channels.append_child("channel").append_child_value("label", label)
        self._outlet = pylsl.StreamOutlet(info)
        self.name = name
        self.pushed = 0

    def __call__(self, frame) -> None:
        outlet = self._outlet  # (close() may run meanwhile, on another thread)
        if frame.image is None or outlet is None:
            return
        outlet.push_sample([float(frame.record.index), float(frame.record.t_end)], pylsl.local_clock())
        self.pushed += 1

    def close(self) -> None:
        self._outlet = None
