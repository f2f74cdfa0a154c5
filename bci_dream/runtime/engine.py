"""The headless engine: EEG windows → encoder → conditioning head → generator, on worker threads.

::

    LiveStream ──(new samples)──► window thread: Windower.poll() every hop
                                      │  latest wins: a new window replaces the one waiting
                                      ▼
                                  generation thread: normalise → PromptEncoder (encoder + conditioning head)
                                      → similarity gate → (interpolation) → Generator.generate
                                      │
                                      ▼  Frame(image, FrameRecord) to every listener (GUI, writer)

No Qt here: the desktop app and the headless commands use the same object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from pylsl import local_clock

from bci_dream.acquisition.filter_settings import band_pass_mismatch
from bci_dream.acquisition.live import LiveStream
from bci_dream.core import defaults
from bci_dream.core.errors import CheckpointError
from bci_dream.core.listeners import notify
from bci_dream.core.memory import release_free_memory
from bci_dream.generation.session_models import check_widths
from bci_dream.models.channel_naming import naming_that_fits
from bci_dream.models.eeg_model import EegModel
from bci_dream.models.prompt_encoder import PromptEncoder
from bci_dream.models.window_spec import channel_mismatch
from bci_dream.runtime.creative import Creative, CreativeFrame
from bci_dream.runtime.routes import (
    DREAMDIFFUSION,
    RETRIEVAL,
    BankImages,
    RouteSettings,
    between,
    check_route,
    condition,
)
from bci_dream.signal.channels import ChannelNaming
from bci_dream.signal.normalize import normalize_window
from bci_dream.signal.windower import Window

log = logging.getLogger(__name__)

#: Seconds between hand-backs of freed memory to the OS by the generation thread (see bci_dream.core.memory).
TRIM_INTERVAL_S = 30.0
PREVIEW_LABEL = "untrained preview model"
UNTRAINED_CONDITIONING_LABEL = "untrained conditioning"
RETRIEVAL_LABEL = "retrieved from the image bank, not generated"


class ImageGenerator(Protocol):
    """What the engine needs of :class:`bci_dream.generation.generator.Generator`."""

    model_id: str
    is_preview: bool
    cross_attention_dim: int
    seed: int

    def generate(self, prompt_embeds: torch.Tensor) -> Any:
        """[1, 77, cross_attention_dim] → an object with ``image``, ``denoise_ms``, ``decode_ms``."""


@dataclass
class FrameRecord:
    """What happened to one window (written as one line of ``frames.jsonl``).

    Times are milliseconds except ``t_end`` (LSL clock seconds of the window's last EEG sample) and ``gap_s`` (the
    longest gap inside the window, seconds: samples that never arrived; 0 without one).
    ``latency_ms`` runs from that sample to the moment the image was ready (None when the stream's stamps
    run ahead of the clock, as in a replay faster than real time). ``reason`` says why a window made no image:
    ``non_finite``, ``similar`` (too like the last image), ``artefact`` (creative mode's hold) or ``driven`` (the
    device drove its own EEG: an impedance check). ``route`` is how the image was made
    (:data:`bci_dream.runtime.routes.ROUTES`); ``bank_images`` the bank images the embedding was pulled towards,
    nearest first (the one shown, for retrieval). Creative mode (:mod:`bci_dream.runtime.creative`) adds
    ``eeg_influence`` (the EEG's share, 0-1; None without creative mode), ``prompt_weights`` (prompt → share of the
    text conditioning), ``features`` (the steering features' z-scores, against ``feature_reference``: ``baseline``
    or ``running``) and ``sham`` (how the EEG fed instead of the live window was chosen; "" for the live EEG).
    """

    index: int
    t_end: float
    index_end: int
    skipped: bool = False
    reason: str = ""
    encode_ms: float = 0.0
    denoise_ms: float = 0.0
    decode_ms: float = 0.0
    latency_ms: float | None = 0.0
    similarity: float | None = None
    interpolated: bool = False
    model: str = ""
    seed: int = 0
    labels: list[str] = field(default_factory=list)
    gap_s: float = 0.0
    route: str = DREAMDIFFUSION
    bank_images: list[str] = field(default_factory=list)
    eeg_influence: float | None = None
    prompt_weights: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    feature_reference: str = ""
    sham: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Frame:
    """A generated image (None when the window was skipped) and its record."""

    image: Any
    record: FrameRecord


@dataclass
class EngineStats:
    windows: int = 0
    frames: int = 0
    skipped_similar: int = 0
    skipped_nonfinite: int = 0
    held_artefact: int = 0
    held_driven: int = 0
    dropped_stale: int = 0
    errors: int = 0


class LatestSlot:
    """A one-item hand-over where a new item replaces the one waiting (latest wins)."""

    def __init__(self) -> None:
        self._item: Any = None
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any) -> bool:
        """Offer ``item``; True if it replaced an item nobody had taken yet (that one is dropped)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any:
        """The waiting item (None after ``timeout`` or once closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _latency_ms(t_end: float) -> float | None:
    """Milliseconds since the window's last sample; None for a replay faster than real time, whose stamps run
    ahead of the clock."""
    latency = (local_clock() - t_end) * 1000
    return latency if latency >= 0 else None


def gate_tensor(embeds: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """The similarity gate on the device, not waited for: float [2] = [finite (1 or 0), cosine similarity with
    ``previous``; 2 without one, which :func:`read_gate` reads as no similarity]."""
    finite = torch.isfinite(embeds).all().float()[None]
    if previous is None:
        return torch.cat([finite, finite.new_full((1,), 2.0)])
    similarity = torch.nn.functional.cosine_similarity(embeds.flatten().float(), previous.flatten().float(), dim=0)
    return torch.cat([finite, similarity[None].float()])


def read_gate(values: Sequence[float]) -> tuple[bool, float | None]:
    """(finite, similarity or None) from :func:`gate_tensor`'s values, read back."""
    ok, value = values
    return ok > 0, None if value > 1.5 else min(1.0, max(-1.0, value))  # (rounding can step just past 1)


def gate_values(embeds: torch.Tensor, previous: torch.Tensor | None) -> tuple[bool, float | None]:
    """Whether ``embeds`` are all finite, and their cosine similarity (flattened, in [-1, 1]) with ``previous``
    (None without one): both in one read from the device, the only wait for the GPU before generating."""
    return read_gate(gate_tensor(embeds, previous).tolist())


class Engine:
    """Turns the windows of a :class:`LiveStream` into images.

    Args:
        live: an opened stream.
        eeg_model: encoder + conditioning head; its head width must match the generator's UNet.
        generator: a resident diffusion pipeline.
        hop_s: seconds between windows.
        similarity_threshold: skip a window whose prompt embeddings have at least this cosine
            similarity with those of the last generated image (1.0 never skips).
        interpolation_steps: extra frames generated between successive embeddings (0 = none).
        untrained_conditioning: the EEG weights are random (labelled in every frame).
        encoder: a :class:`PromptEncoder` of ``eeg_model`` built beforehand (e.g. off the GUI thread).
        max_errors: generation stops after this many failed windows in a row (said to the error listeners).
        channel_naming: the naming the EEG model was trained with; used for the windows when the stream has no
            naming of its own and it fits the stream's channels.
        route: how embeddings become images (:class:`~bci_dream.runtime.routes.RouteSettings`: DreamDiffusion's
            prompt embeddings, the IP-Adapter's CLIP embedding with an optional image-bank prior, or retrieval).
        creative: creative mode (:class:`~bci_dream.runtime.creative.Creative`: a prompt blended with the EEG,
            brain-state steering, a sham), or None.
    """

    def __init__(self, live: LiveStream, eeg_model: EegModel, generator: ImageGenerator, *, hop_s: float = defaults.HOP_S,
                 similarity_threshold: float = defaults.SIMILARITY_THRESHOLD, interpolation_steps: int = 0,
                 untrained_conditioning: bool = False, device: str | torch.device = "cpu",
                 encoder: PromptEncoder | None = None, max_errors: int = 5,
                 channel_naming: ChannelNaming | None = None, route: RouteSettings | None = None,
                 creative: Creative | None = None) -> None:
        self.route = route if route is not None else RouteSettings()
        if self.route.uses_clip:
            check_route(self.route, eeg_model, generator)
        else:
            check_widths(eeg_model, generator)
        mismatch = band_pass_mismatch(eeg_model.config.preprocessing.bandpass, live.filters)
        if mismatch is not None and not untrained_conditioning:
            raise CheckpointError(mismatch)
        self.live = live
        self.device = torch.device(device)
        output = "clip_embeds" if self.route.uses_clip else "prompt_embeds"
        reuse = encoder is not None and encoder.model is eeg_model and encoder.output == output
        self.encoder = encoder if reuse else PromptEncoder(eeg_model, self.device, output=output)
        self._bank_images = BankImages(self.route.bank, generator.size) \
            if self.route.route == RETRIEVAL and self.route.bank is not None else None
        self.model = self.encoder.model
        self.max_errors = max_errors
        self.error: Exception | None = None  # what stopped generation, after max_errors in a row
        self._error_listeners: list[Callable[[Exception], None]] = []
        self.generator = generator
        enc = eeg_model.config.encoder
        naming = naming_that_fits(channel_naming, live.info.ch_names) if live.naming is None else None
        if naming is not None:
            log.info("windows named as the EEG model was trained: %s", naming.describe())
        self.windower = live.windower(window_s=enc.window_seconds, hop_s=hop_s, target_sfreq=enc.sfreq,
                                      ch_names=naming.apply(live.info.ch_names) if naming is not None else None)
        self._keep_trained_channels(eeg_model.config.preprocessing.channels, untrained_conditioning)
        self.similarity_threshold = similarity_threshold
        self.interpolation_steps = interpolation_steps
        retrieval = self.route.route == RETRIEVAL
        self.creative = creative
        self.labels = ([PREVIEW_LABEL] if generator.is_preview and not retrieval else []) + \
            ([UNTRAINED_CONDITIONING_LABEL] if untrained_conditioning else []) + \
            ([RETRIEVAL_LABEL] if retrieval else []) + (creative.labels if creative is not None else [])
        self.stats = EngineStats()
        self._listeners: list[Callable[[Frame], None]] = []
        self._slot = LatestSlot()
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the generation thread takes windows (after any warm-up)
        self._threads: list[threading.Thread] = []
        self._last_embeds: torch.Tensor | None = None
        #: Make frames while the gate is computed (None: on a planned back end on CUDA; tests set True on the CPU).
        self.speculate: bool | None = None
        self._bank_row = 0  # the nearest bank image of the last window (retrieval shows it)
        self._frame_index = 0

    def _keep_trained_channels(self, trained: Sequence[str] | None, untrained: bool) -> None:
        """Refuse a stream without the channels the model was calibrated on; leave out the others it maps."""
        montage = self.windower.montage
        problem, extra = channel_mismatch(trained, self.windower.mapping, montage.names)
        if problem is not None and not untrained:
            raise CheckpointError(problem)
        if extra and trained is not None:
            keep = np.isin(np.asarray([n.upper() for n in montage.names]), [n.upper() for n in trained])
            self.windower.mapping = self.windower.mapping.restricted_to(keep)
            log.warning("the stream's channels %s are left out of the windows: the EEG model was calibrated "
                        "without them", ", ".join(extra))

    def add_listener(self, listener: Callable[[Frame], None]) -> None:
        """Call ``listener(frame)`` for every frame, generated or skipped (on the generation thread)."""
        self._listeners.append(listener)

    def add_error_listener(self, listener: Callable[[Exception], None]) -> None:
        """Call ``listener(error)`` once when generation stops after ``max_errors`` failures in a row."""
        self._error_listeners.append(listener)

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return any(t.is_alive() for t in self._threads) and not self._stop.is_set()

    def start(self) -> None:
        """Start both threads (nothing happens while they run: one engine, one pair of threads)."""
        if self.running:
            return
        # (fresh stop flag and slot: threads of an earlier start that outlived stop()'s timeout stay stopped)
        self._stop = threading.Event()
        self._slot = LatestSlot()
        self.error = None
        self.ready.clear()
        self._threads = [threading.Thread(target=self._window_loop, name="engine:windows", daemon=True),
                         threading.Thread(target=self._generation_loop, name="engine:generate", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop both threads; wait up to ``timeout`` s for them (0: do not wait; a frame in progress finishes)."""
        self._stop.set()
        self._slot.close()
        if timeout:
            for t in self._threads:
                t.join(timeout)

    # -- window thread --------------------------------------------------------------------------------

    def _window_loop(self) -> None:
        stop, slot = self._stop, self._slot
        pipeline = self.live.pipeline
        seen = pipeline.raw.total_written
        while not stop.is_set():
            pipeline.wait_for_samples(seen, timeout=0.1)
            try:
                window = self.windower.poll()
            except Exception as e:  # (a bug in cutting windows stops generation with its reason, not a traceback)
                log.debug("cutting a window failed", exc_info=True)
                self._give_up(e)
                return
            seen = pipeline.raw.total_written  # (what the poll's own drain brought counts as seen)
            if window is None:
                continue
            self.stats.windows += 1
            if slot.put(window):
                self.stats.dropped_stale += 1

    # -- generation thread ------------------------------------------------------------------------------

    def _generation_loop(self) -> None:
        stop, slot = self._stop, self._slot
        if getattr(self.generator, "compiled", False):
            try:  # (torch.compile's CUDA graphs are recorded per thread: record them before the first window)
                self.generator.warmup()
            except Exception:
                log.exception("warming up the compiled generator failed")
        self.ready.set()
        failures = 0
        trimmed = time.monotonic()
        while not stop.is_set():
            window = slot.take(timeout=0.1)
            if time.monotonic() - trimmed > TRIM_INTERVAL_S:
                release_free_memory()  # (on this thread: it frees the tensors and images it made)
                trimmed = time.monotonic()
            if window is None or stop.is_set():
                continue
            try:
                self.process(window, stop)
                failures = 0
            except Exception as e:  # one bad frame must not end the session; a persistent failure does
                self.stats.errors += 1
                failures += 1
                log.debug("generating a frame failed", exc_info=True)
                if failures == 1:
                    log.warning("generating a frame failed: %s", e)
                if failures >= self.max_errors:
                    self._give_up(e)

    def _give_up(self, error: Exception) -> None:
        """Stop generation for ``error`` and tell the error listeners (once)."""
        if self.error is not None:
            return
        self.error = error
        self._stop.set()
        self._slot.close()
        for listener in list(self._error_listeners):
            listener(error)

    @torch.inference_mode()
    def encode(self, window: Window) -> torch.Tensor | None:
        """Normalised window → prompt embeddings [1, 77, D] (the CLIP embedding [1, P] on the CLIP routes) on the
        model's device (not waited for); None if the window is not finite."""
        data = normalize_window(window.data, window.mask)
        if not np.isfinite(data).all():
            return None
        return self.encoder(data, window.mask)

    def process(self, window: Window, stop: threading.Event | None = None) -> list[Frame]:
        """Encode one window and generate its image(s); returns the frames it produced (fewer once ``stop``
        is set: interpolated frames are not generated after a stop)."""
        record = self._record(window)
        t0 = time.perf_counter()
        creative = None
        source_t = window.t_end  # (when the EEG that is encoded was recorded: earlier for a sham)
        if self.creative is not None:
            window, record.sham, source_t = self.creative.swap_window(window)
        if self._driven(window, source_t):
            record.encode_ms = (time.perf_counter() - t0) * 1000
            self.stats.held_driven += 1
            return [self._emit(Frame(None, self._skipped(record, "driven")))]
        embeds = self.encode(window)
        if embeds is not None and self.route.bank is not None:
            conditioning = condition(self.route, embeds)
            embeds = conditioning.embeds
            record.bank_images = [self.route.bank.images[i] for i in conditioning.bank_rows]
            self._bank_row = conditioning.bank_rows[0]
        if embeds is not None and self.creative is not None:
            creative = self.creative.apply(embeds, source_t)
            embeds = creative.embeds
            record.eeg_influence = creative.record.get("eeg_influence")
            record.prompt_weights = creative.record.get("prompt_weights", {})
            record.features = creative.record.get("features", {})
            record.feature_reference = creative.record.get("feature_reference", "")
            if creative.hold:
                record.encode_ms = (time.perf_counter() - t0) * 1000
                self.stats.held_artefact += 1
                return [self._emit(Frame(None, self._skipped(record, creative.hold)))]
        previous = self._last_embeds
        if embeds is not None and self._speculates(creative, previous):
            return self._speculative(embeds, previous, record, t0)
        finite, record.similarity = gate_values(embeds, previous) if embeds is not None else (False, None)
        record.encode_ms = (time.perf_counter() - t0) * 1000
        skipped = self._gate(record, finite)
        if skipped is not None:
            return skipped
        frames = []
        if previous is not None and self.interpolation_steps > 0 and self._batches(creative):
            return self._generate_batch(previous, embeds, record, window)
        if previous is not None and self.interpolation_steps > 0:
            for k in range(1, self.interpolation_steps + 1):
                if stop is not None and stop.is_set():
                    break
                alpha = k / (self.interpolation_steps + 1)
                mid = self._interpolation_record(window, record)
                frames.append(self._generate(between(self.route, previous, embeds, alpha), mid, creative))
        self._last_embeds = embeds
        frames.append(self._generate(embeds, record, creative))
        return frames

    def _driven(self, window: Window, t_end: float) -> str:
        """Why the EEG of ``window`` (its last sample recorded at ``t_end``, LSL clock s) is partly the device's own
        test signal (an impedance check), or ""."""
        first = t_end - window.lag_s - window.duration_s - window.gap_s
        return self.live.source.driven_during(first, t_end)

    def _gate(self, record: FrameRecord, finite: bool) -> list[Frame] | None:
        """The skipped frame when the gate says skip (not finite, or too similar to the last image), else None."""
        if not finite:
            self.stats.skipped_nonfinite += 1
            return [self._emit(Frame(None, self._skipped(record, "non_finite")))]
        if record.similarity is not None and record.similarity >= self.similarity_threshold:
            self.stats.skipped_similar += 1
            return [self._emit(Frame(None, self._skipped(record, "similar")))]
        return None

    @staticmethod
    def _plain(creative: CreativeFrame | None) -> bool:
        """No creative text side, adapter strength or noise mix to set before the frame."""
        return creative is None or (creative.text is None and creative.ip_scale is None and creative.seed_mix is None)

    def _speculates(self, creative: CreativeFrame | None, previous: torch.Tensor | None) -> bool:
        """Whether the frame is made while the gate is still being computed (read back with the pixels, one wait
        for the GPU instead of two): a planned back end on CUDA (:attr:`speculate` overrides), on a route that
        generates, with no interpolation frame to make first."""
        if self.speculate is None:
            g = self.generator
            wanted = getattr(g, "planned", False) and getattr(getattr(g, "device", None), "type", "") == "cuda"
        else:
            wanted = self.speculate
        return bool(wanted) and hasattr(self.generator, "generate_gated") and self._bank_images is None \
            and (previous is None or self.interpolation_steps == 0) and self._plain(creative)

    def _speculative(self, embeds: torch.Tensor, previous: torch.Tensor | None, record: FrameRecord,
                     t0: float) -> list[Frame]:
        """The frame and the gate in one wait: the image is dropped when the gate says skip."""
        gate = gate_tensor(embeds, previous)
        record.encode_ms = (time.perf_counter() - t0) * 1000
        if self.route.uses_clip:
            out, values = self.generator.generate_gated(None, gate, embeds)
        else:
            out, values = self.generator.generate_gated(embeds, gate)
        finite, record.similarity = read_gate(values)
        skipped = self._gate(record, finite)
        if skipped is not None:
            return skipped
        self._last_embeds = embeds
        if out is None:  # (the generator could not make it ahead: as usual, now that the gate is known)
            return [self._generate(embeds, record)]
        return [self._emit_generated(out, record)]

    def _batches(self, creative: CreativeFrame | None) -> bool:
        """Whether interpolation frames and the window's frame go to the generator in one batched call: on the
        DreamDiffusion route, without a creative text side, with a generator that batches (a planned back end)."""
        return (getattr(self.generator, "planned", False) and hasattr(self.generator, "generate_batch")
                and not self.route.uses_clip and self._bank_images is None and self._plain(creative))

    def _interpolation_record(self, window: Window, record: FrameRecord) -> FrameRecord:
        mid = self._record(window)
        mid.interpolated, mid.bank_images = True, list(record.bank_images)
        mid.eeg_influence, mid.prompt_weights, mid.sham = record.eeg_influence, record.prompt_weights, record.sham
        return mid

    def _generate_batch(self, previous: torch.Tensor, embeds: torch.Tensor, record: FrameRecord,
                        window: Window) -> list[Frame]:
        """The interpolation frames between ``previous`` and ``embeds``, then ``embeds``' own, in one call."""
        n = self.interpolation_steps
        rows = [between(self.route, previous, embeds, k / (n + 1)) for k in range(1, n + 1)] + [embeds]
        self._last_embeds = embeds
        records = [self._interpolation_record(window, record) for _ in range(n)] + [record]
        return [self._emit_generated(out, rec)
                for out, rec in zip(self.generator.generate_batch(torch.cat(rows)), records)]

    def _generate(self, embeds: torch.Tensor, record: FrameRecord, creative: CreativeFrame | None = None) -> Frame:
        if self._bank_images is not None:  # retrieval: the nearest bank image itself
            record.latency_ms = _latency_ms(record.t_end)
            self.stats.frames += 1
            return self._emit(Frame(self._bank_images.image(self._bank_row), record))
        text = pooled = None
        if creative is not None:
            if creative.ip_scale is not None:
                self.generator.set_ip_adapter_scale(creative.ip_scale)
            if creative.seed_mix is not None:
                self.generator.set_noise_mix(creative.seed_mix)
            if creative.text is not None:
                text, pooled = creative.text
        if self.route.uses_clip:
            out = self.generator.generate_from_image_embeds(embeds, text, pooled)
        elif pooled is not None:
            out = self.generator.generate(embeds, pooled)
        else:
            out = self.generator.generate(embeds)
        return self._emit_generated(out, record)

    def _emit_generated(self, out: Any, record: FrameRecord) -> Frame:
        """A generated image (``generate``'s result) with its times, to the listeners."""
        record.denoise_ms, record.decode_ms = out.denoise_ms, out.decode_ms
        record.latency_ms = _latency_ms(record.t_end)
        self.stats.frames += 1
        return self._emit(Frame(out.image, record))

    def _record(self, window: Window) -> FrameRecord:
        return FrameRecord(index=-1, t_end=window.t_end, index_end=window.index_end, gap_s=window.gap_s,
                           model=self.generator.model_id, seed=self.generator.seed, labels=list(self.labels),
                           route=self.route.route)

    @staticmethod
    def _skipped(record: FrameRecord, reason: str) -> FrameRecord:
        record.skipped, record.reason = True, reason
        record.latency_ms = _latency_ms(record.t_end)
        return record

    def _emit(self, frame: Frame) -> Frame:
        frame.record.index = self._frame_index  # numbered in the order frames leave the engine
        self._frame_index += 1
        notify(self._listeners, frame, "frame")
        return frame
