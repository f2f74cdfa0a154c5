"""A session's outputs beside its images: OSC out and in, a video, a frame stream on LSL, and its marker inputs.

:class:`SessionOutputs` connects them to an engine, its feature monitor and its creative mode, for the headless
commands and the app alike. OSC commands act on the session: ``eeg_influence`` and ``prompt`` on creative mode,
``seed`` on the generator, ``generate`` starts or stops the engine, ``marker`` goes into the stream (the traces, a
recording) and ``markers.jsonl`` (LSL clock seconds) beside the frames; UDP and LSL markers go into the stream
(:mod:`bci_dream.acquisition.marker_inputs`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from pylsl import local_clock

from bci_dream.acquisition.marker_inputs import LslMarkers, UdpMarkers
from bci_dream.runtime.lsl_frames import FrameOutlet
from bci_dream.runtime.osc import OscReceiver, OscSender, parse_host_port

log = logging.getLogger(__name__)


class SessionOutputs:
    """OSC, video and markers of one session (see the module docstring); :meth:`close` ends them.

    Args:
        engine: the session's engine (frames go out as they leave it).
        monitor: its feature monitor (features go out every hop), or None.
        creative: its creative mode (OSC's ``eeg_influence`` and ``prompt``), or None.
        osc: ``HOST:PORT`` to send to, or None.
        osc_listen: a UDP port to take commands on, or None.
        video: a video file to write the images to, or None.
        lsl_frames: publish a frame stream on LSL (:mod:`bci_dream.runtime.lsl_frames`).
        live: the stream markers go into (:meth:`set_stream`), or None.
        markers_udp, markers_lsl: a UDP port and an LSL marker stream name markers come from, or None.
        virtual_camera: the side in pixels of a virtual camera the images go to (pyvirtualcam), or None.
        ndi: the name of an NDI source the images go to (ndi-python), or None.
        spout, syphon: the name of a Spout sender (Windows) or a Syphon server (macOS) the images go to, or None.
        markers: where received markers are appended (``markers.jsonl``), or None.
        on_generate: called with True / False for OSC's ``generate`` (default: start / stop the engine).
    """

    def __init__(self, engine=None, *, monitor=None, creative=None, osc: str | None = None,
                 osc_listen: int | None = None, video: str | os.PathLike | None = None,
                 markers: str | os.PathLike | None = None, on_generate=None, handlers: dict | None = None,
                 lsl_frames: bool = False, live=None, markers_udp: int | None = None,
                 markers_lsl: str | None = None, virtual_camera: int | None = None, ndi: str | None = None,
                 spout: str | None = None, syphon: str | None = None) -> None:
        self.engine = self.creative = self.monitor = self.live = None
        self.sender = self.receiver = self.video = self.frames = self.camera = self.ndi = None
        self.texture_shares: list = []  # Spout, Syphon
        self.marker_inputs: list = []
        self._markers_udp, self._markers_lsl = markers_udp, markers_lsl
        self._markers = Path(markers) if markers is not None else None
        self._lock = threading.Lock()
        self._on_generate = on_generate or self._generate
        self.markers_received = 0
        try:
            if osc:
                self.sender = OscSender(*parse_host_port(osc))
            if video is not None:
                from bci_dream.runtime.video_writer import VideoWriter  # (PyAV: a tenth of a second, when asked for)

                self.video = VideoWriter(video)
            if lsl_frames:
                self.frames = FrameOutlet()
            if virtual_camera is not None:
                from bci_dream.runtime.virtual_camera import VirtualCamera  # (an optional extra, when asked for)

                self.camera = VirtualCamera(virtual_camera or None)
            if ndi:
                from bci_dream.runtime.ndi_output import NdiOutput  # (an optional extra, when asked for)

                self.ndi = NdiOutput(ndi)
            if spout:
                from bci_dream.runtime.texture_share import SpoutOutput  # (an optional extra, when asked for)

                self.texture_shares.append(SpoutOutput(spout))
            if syphon:
                from bci_dream.runtime.texture_share import SyphonOutput  # (an optional extra, when asked for)

                self.texture_shares.append(SyphonOutput(syphon))
            if osc_listen is not None:
                self.receiver = OscReceiver(osc_listen, {**self._handlers(), **(handlers or {})})
            if live is not None:
                self.set_stream(live)
        except BaseException:
            self.close()
            raise
        self.set_monitor(monitor)
        if engine is not None:
            self.attach(engine, creative)

    def set_stream(self, live) -> None:
        """Markers (OSC's, UDP's, LSL's) go into ``live`` from now on (None: the stream closed).

        Raises:
            MarkerInputError: the UDP marker port cannot be opened.
        """
        for source in self.marker_inputs:
            source.close()
        self.marker_inputs, self.live = [], live
        if live is None:
            return
        if self._markers_udp is not None:
            self.marker_inputs.append(UdpMarkers(live, self._markers_udp))
        if self._markers_lsl:
            self.marker_inputs.append(LslMarkers(live, self._markers_lsl))

    def set_monitor(self, monitor) -> None:
        """Send the features of ``monitor`` (a new stream's) from now on."""
        self.monitor = monitor
        if monitor is not None and self.sender is not None:
            monitor.add_listener(self.sender.features)

    def attach(self, engine, creative=None) -> None:
        """Take the frames of ``engine`` (and OSC's creative commands to ``creative``) from now on: the app starts a
        new engine when its settings change; its outputs stay."""
        self.engine, self.creative = engine, creative
        if self.sender is not None:
            engine.add_listener(self.sender.frame)
        if self.video is not None:
            engine.add_listener(self.video)
        if self.frames is not None:
            engine.add_listener(self.frames)
        if self.camera is not None:
            engine.add_listener(self.camera)
        if self.ndi is not None:
            engine.add_listener(self.ndi)
        for share in self.texture_shares:
            engine.add_listener(share)

    def _handlers(self) -> dict:
        def creative(act):
            def handle(value) -> None:
                if self.creative is None:
                    log.warning("OSC: this session has no creative mode (start it with --prompt or --eeg-influence)")
                else:
                    act(self.creative, value)
            return handle

        def seed(value) -> None:
            if self.engine is not None:
                self.engine.generator.set_seed(int(value))

        return {"seed": seed, "generate": lambda v: self._on_generate(bool(int(v))), "marker": self.marker,
                "eeg_influence": creative(lambda c, v: c.set_eeg_influence(float(v))),
                "prompt": creative(lambda c, v: c.set_prompt(str(v)))}

    def _generate(self, on: bool) -> None:
        if self.engine is None:
            return
        if on:
            self.engine.start()
        else:
            self.engine.stop(timeout=0)

    def marker(self, value) -> None:
        """An OSC marker: into the stream, and with the LSL clock's time into ``markers.jsonl``."""
        self.markers_received += 1
        if self.live is not None:
            try:
                self.live.mark(str(value), stream="osc")
            except Exception as e:  # noqa: BLE001 - (a closed stream: the file below still keeps it)
                log.debug("OSC marker not added to the stream: %s", e)
        if self._markers is None:
            return
        with self._lock:
            with open(self._markers, "a") as f:
                f.write(json.dumps({"t": local_clock(), "marker": str(value), "source": "osc"}) + "\n")

    def quality(self, status) -> None:
        """A stream status's channel quality to OSC (call it about once a second)."""
        if self.sender is not None and status.quality:
            self.sender.quality(status.quality)

    def describe(self) -> str:
        parts = []
        if self.sender is not None:
            parts.append(f"OSC to {self.sender.host}:{self.sender.port}")
        if self.receiver is not None:
            parts.append(f"OSC commands on port {self.receiver.port}")
        if self.video is not None:
            parts.append(f"video {self.video.path}")
        if self.frames is not None:
            parts.append(f"frames on LSL as {self.frames.name}")
        if self.camera is not None:
            parts.append("virtual camera")
        if self.ndi is not None:
            parts.append(f"NDI source {self.ndi.name!r}")
        for share in self.texture_shares:
            parts.append(f"{type(share).__name__.removesuffix('Output')} sender {share.name!r}")
        if self._markers_udp is not None:
            parts.append(f"UDP markers on port {self._markers_udp}")
        if self._markers_lsl:
            parts.append(f"markers from LSL stream {self._markers_lsl!r}")
        return ", ".join(parts)

    def close(self) -> None:
        self.set_stream(None)
        if self.receiver is not None:
            self.receiver.close()
        if self.video is not None:
            self.video.close()
        if self.frames is not None:
            self.frames.close()
        if self.camera is not None:
            self.camera.close()
        if self.ndi is not None:
            self.ndi.close()
        for share in self.texture_shares:
            share.close()
