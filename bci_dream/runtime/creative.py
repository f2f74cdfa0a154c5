"""Creative mode: text prompts blended with the EEG, steered by band power, with a sham control.

- **Prompt anchor.** A prompt (``--prompt``), encoded once by the model's own text encoders, is blended with the EEG
  model's conditioning by the EEG influence ``w`` (0: the prompt alone, 1: the EEG alone). On the dreamdiffusion
  route the prompt embeddings and the EEG's are mixed linearly, the EEG's first scaled to the prompt's mean token
  norm (so that ``w`` sets the share of direction, not of magnitude); on the ip-adapter route the prompt goes beside
  the image embedding and ``w`` is the IP-Adapter's strength.
- **Steering** (:mod:`bci_dream.runtime.steering`): rules map z-scored band-power features (from a
  :class:`~bci_dream.runtime.feature_monitor.FeatureMonitor`) to prompt shares, the adapter's strength or the seed
  drift; the prompt given with ``--prompt`` joins the prompt rules as a neutral member (score 0). Frames can be held
  while artefacts (blinks, EMG, line noise) dominate.
- **Sham** (:class:`ShamSource`): the EEG model is fed a window from another time of the session (shifted by a
  fixed lag, or drawn at random), and steering the features of that time, so that a user can see what their live
  brain adds; every frame records it.

Everything here is per window and cheap (a weighted sum of a few cached prompt encodings); no text encoder runs on
the per-frame path.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from bci_dream.core.errors import BciDreamError
from bci_dream.generation.text_prompt import TextConditioning
from bci_dream.runtime.feature_monitor import FeatureMonitor
from bci_dream.runtime.steering import STEERED_LABEL, Steering, SteeringRule
from bci_dream.signal.feature_tracker import TrackedFeatures
from bci_dream.signal.windower import Window

log = logging.getLogger(__name__)

SHAM_MODES = ("shifted", "shuffled")
#: Seconds of windows the sham keeps beyond its lag (the shuffled sham draws from this much history).
SHAM_HISTORY_S = 300.0


class CreativeError(BciDreamError):
    """Creative-mode settings that cannot work (one line naming the setting)."""


@dataclass(frozen=True)
class CreativeSettings:
    """What creative mode does (see the module docstring).

    Attributes:
        prompt: the prompt anchor (None: none; with steering rules, the neutral member of the prompt blend).
        eeg_influence: 0-1, the EEG's share of the conditioning (1: the EEG alone, as without creative mode).
        rules: steering rules.
        hold_artefact: hold (skip) frames while the artefact share is above this (None: never).
        sham: ``"shifted"`` or ``"shuffled"`` to feed EEG from another time of the session (None: the live EEG).
        sham_shift_s: the shifted sham's lag in seconds.
    """

    prompt: str | None = None
    eeg_influence: float = 1.0
    rules: tuple[SteeringRule, ...] = ()
    hold_artefact: float | None = None
    sham: str | None = None
    sham_shift_s: float = 30.0

    def check(self) -> None:
        if not 0.0 <= self.eeg_influence <= 1.0:
            raise CreativeError(f"the EEG influence must be between 0 and 1, not {self.eeg_influence:g}")
        if self.sham is not None and self.sham not in SHAM_MODES:
            raise CreativeError(f"unknown sham '{self.sham}'; choose {', '.join(SHAM_MODES)}")
        if self.sham_shift_s <= 0:
            raise CreativeError(f"the sham's lag must be positive, not {self.sham_shift_s:g} s")
        if self.eeg_influence < 1 and not self.prompt and not any(r.target == "prompt" for r in self.rules):
            raise CreativeError("an EEG influence below 1 blends the EEG with a prompt: give --prompt (or a steering "
                                "rule FEATURE=PROMPT)")

    @property
    def active(self) -> bool:
        return bool(self.prompt or self.rules or self.sham or self.eeg_influence < 1 or self.hold_artefact)


@dataclass
class CreativeFrame:
    """Creative mode's part of one frame.

    Attributes:
        embeds: what the route generates from (on the dreamdiffusion route, the blend of prompt and EEG).
        text: the text side (prompt embeddings [1, 77, D], pooled [1, P] or None), or None for the generator's own.
        ip_scale: the IP-Adapter strength to use, or None to leave it.
        seed_mix: the noise drift to use, or None to leave it.
        hold: why the frame is held ("artefact"), or "".
        record: what frames.jsonl gets: eeg_influence, prompt_weights, features, sham.
    """

    embeds: torch.Tensor
    text: tuple[torch.Tensor, torch.Tensor | None] | None = None
    ip_scale: float | None = None
    seed_mix: float | None = None
    hold: str = ""
    record: dict = field(default_factory=dict)


def blend(text: torch.Tensor, eeg: torch.Tensor, influence: float) -> torch.Tensor:
    """``(1 − w) · text + w · eeg'`` with ``eeg'`` the EEG's embeddings scaled to the text's mean token norm; both
    [1, tokens, D] (the EEG's tokens are fitted to the text's count by repetition or truncation)."""
    if eeg.shape != text.shape:
        reps = -(-text.shape[1] // eeg.shape[1])
        eeg = eeg.repeat(1, reps, 1)[:, :text.shape[1]]
    scale = text.norm(dim=-1).mean() / eeg.norm(dim=-1).mean().clamp_min(1e-12)
    return torch.lerp(text, eeg * scale, float(influence))


class ShamSource:
    """Windows of another time of the session (see the module docstring), kept compactly (present rows only)."""

    def __init__(self, mode: str, shift_s: float = 30.0, seed: int = 0) -> None:
        self.mode, self.shift_s = mode, float(shift_s)
        self._history: deque[tuple[float, np.ndarray, np.ndarray, float]] = deque()  # t_end, rows, mask, gap_s
        self._rng = random.Random(seed)

    def swap(self, window: Window) -> tuple[Window, str, float]:
        """Keep ``window`` and give the one to feed instead, how it was chosen (``"shifted 30 s"``, ``"shifted 12.5 s
        (the session is younger than 30 s)"``, ``"shuffled from 40.2 s ago"``) and when that EEG ended (LSL s). The
        live window itself is fed only while there is no other (the first window: "shifted 0.0 s ...")."""
        earlier = list(self._history)  # (the windows before this one)
        self._history.append((window.t_end, window.data[window.mask].copy(), window.mask.copy(), window.gap_s))
        horizon = window.t_end - (self.shift_s + SHAM_HISTORY_S if self.mode == "shuffled" else self.shift_s + 5)
        while self._history and self._history[0][0] < horizon:
            self._history.popleft()
        earlier = [item for item in earlier if item[0] >= horizon] or [self._history[-1]]
        if self.mode == "shuffled":
            t, rows, mask, gap = earlier[self._rng.randrange(len(earlier))]
            said = f"shuffled from {window.t_end - t:.1f} s ago"
        else:
            target = window.t_end - self.shift_s
            t, rows, mask, gap = min(earlier, key=lambda item: abs(item[0] - target))
            lag = window.t_end - t
            said = f"shifted {self.shift_s:g} s" if abs(lag - self.shift_s) < 1.0 else \
                f"shifted {lag:.1f} s (the session is younger than {self.shift_s:g} s)"
        data = np.zeros_like(window.data)
        data[mask] = rows
        return Window(data, mask, window.t_end, window.sfreq, window.index_end, window.ch_names, gap), said, t


class Creative:
    """A session's creative mode: the encoded prompts, the EEG influence, the steering, the sham.

    The EEG influence and the prompt can change while the engine runs (:meth:`set_eeg_influence`,
    :meth:`set_prompt`; from the app or OSC).

    Args:
        generator: the session's generator (its :meth:`~bci_dream.generation.generator.Generator.encode_texts`
            encodes the prompts, once, here).
        settings: what to do.
        monitor: where the steering's features come from (needed with rules or ``hold_artefact``).
        clip_route: the route conditions through an IP-Adapter (the influence is its strength).
    """

    def __init__(self, generator, settings: CreativeSettings, *, monitor: FeatureMonitor | None = None,
                 clip_route: bool = False) -> None:
        settings.check()
        if (settings.rules or settings.hold_artefact is not None) and monitor is None:
            raise CreativeError("brain-state steering needs the live features (a FeatureMonitor)")
        self.generator, self.settings, self.monitor, self.clip_route = generator, settings, monitor, clip_route
        self.steering = Steering(settings.rules)
        self.base_ip_scale = float(getattr(generator, "ip_adapter_base_scale", 1.0))
        self._lock = threading.Lock()
        self.eeg_influence = float(settings.eeg_influence)
        self._texts: list[TextConditioning] = []
        self._stack = self._pooled_stack = None
        self._requests = 0
        self._blank: TextConditioning | None = None
        self._encode(settings.prompt)
        self.sham = ShamSource(settings.sham, settings.sham_shift_s) if settings.sham else None
        self._features: deque[TrackedFeatures] = deque(maxlen=int(4 * (settings.sham_shift_s + SHAM_HISTORY_S)))
        if monitor is not None and self.sham is not None:  # (a sham steers with the features of its EEG's time)
            monitor.add_listener(self._features.append)

    def close(self) -> None:
        """Stop taking the monitor's features (a new creative mode replaces this one)."""
        if self.monitor is not None:
            self.monitor.remove_listener(self._features.append)

    def describe(self) -> str:
        """One line: ``prompt 'a cat' · EEG influence 0.50 · steering alpha → 'calm ocean' · sham shifted 30 s``."""
        parts = [f"prompt '{self.prompt}'" if self.prompt else "no prompt", f"EEG influence {self.eeg_influence:.2f}"]
        if self.steering.rules:
            reference = "a baseline" if self.monitor is not None and self.monitor.tracker.baseline_state != "none" \
                else "the running session mean"
            parts.append("steering " + ", ".join(r.describe() for r in self.steering.rules) + f" (z against "
                         f"{reference}; {STEERED_LABEL}, not decoded)")
        if self.settings.hold_artefact is not None:
            parts.append(f"held while artefacts exceed {self.settings.hold_artefact:g}")
        if self.sham is not None:
            parts.append(f"sham {self.settings.sham}" + (f" {self.settings.sham_shift_s:g} s"
                                                         if self.settings.sham == "shifted" else ""))
        return " · ".join(parts)

    @property
    def labels(self) -> list[str]:
        """What every frame says of creative mode."""
        out = []
        if self.steering.rules:
            out.append(STEERED_LABEL)
        if self.sham is not None:
            out.append(f"sham EEG ({self.settings.sham})")
        return out

    def _encode(self, prompt: str | None) -> None:
        with self._lock:
            self._requests += 1
            request = self._requests
        prompts = ([prompt] if prompt else []) + self.steering.prompts
        texts = self.generator.encode_texts(prompts) if prompts else []
        if self.clip_route and not texts and self._blank is None:  # (a cleared prompt is the empty prompt there)
            self._blank = self.generator.encode_texts([""])[0]
        device = getattr(self.generator, "device", "cpu")
        stack = torch.cat([t.prompt_embeds for t in texts]).to(device) if texts else None  # [k, 77, D]
        pooled = torch.cat([t.pooled for t in texts]).to(device) if texts and texts[0].pooled is not None else None
        with self._lock:
            if request != self._requests:
                return  # (a later prompt was asked for meanwhile: it wins)
            self.prompt = prompt
            self._texts = texts
            self._stack, self._pooled_stack = stack, pooled

    def set_prompt(self, prompt: str | None) -> None:
        """Anchor to another prompt from now on (encoded here, off the frame path; cached for the next time)."""
        self._encode(prompt or None)

    def set_eeg_influence(self, influence: float) -> None:
        """The EEG's share from now on (clipped to 0-1)."""
        with self._lock:
            self.eeg_influence = min(1.0, max(0.0, float(influence)))

    def swap_window(self, window: Window) -> tuple[Window, str, float]:
        """The window to encode: ``window`` itself, or the sham's; how it was chosen; and when its EEG ended."""
        if self.sham is None:
            return window, "", window.t_end
        return self.sham.swap(window)

    def _features_at(self, t: float) -> TrackedFeatures | None:
        """The live features (or, for a sham, those nearest the time ``t`` it took its window from)."""
        if self.monitor is None:
            return None
        history = list(self._features)  # (a copy: the feature thread appends meanwhile)
        if self.sham is None or not history:
            return self.monitor.latest
        return min(history, key=lambda f: abs(f.t - t))

    def apply(self, embeds: torch.Tensor, t: float) -> CreativeFrame:
        """Creative mode's conditioning for the EEG model's output ``embeds`` of the window that ended at ``t``."""
        with self._lock:
            texts, influence, prompt = list(self._texts), self.eeg_influence, self.prompt
            stack, pooled_stack = self._stack, self._pooled_stack
        features = self._features_at(t)
        z = features.z if features is not None else {}
        state = self.steering.state(z, anchor=bool(prompt))
        record: dict = {"eeg_influence": influence}
        names = ([prompt] if prompt else []) + self.steering.prompts
        frame = CreativeFrame(embeds, record=record)
        if texts:
            shares = torch.tensor(state.prompt_weights, dtype=stack.dtype, device=stack.device)
            mix = torch.tensordot(shares, stack, dims=1)[None]  # [1, 77, D]: the prompts' weighted sum
            pooled = None if pooled_stack is None else (shares @ pooled_stack)[None]
            record["prompt_weights"] = {name: round(w, 4) for name, w in zip(names, state.prompt_weights)}
            frame.text = (mix, pooled)
            if not self.clip_route:
                # (in the prompts' dtype, the generator's: a bf16 EEG embedding would otherwise round the text's)
                frame.embeds = blend(mix, embeds.to(mix.device, mix.dtype), influence)
        elif self.clip_route and self._blank is not None:
            blank = self._blank
            frame.text = (blank.prompt_embeds.to(embeds.device),
                          None if blank.pooled is None else blank.pooled.to(embeds.device))
        if self.clip_route:
            frame.ip_scale = self.base_ip_scale * influence * (1.0 if state.ip_scale is None else state.ip_scale)
        frame.seed_mix = state.seed_mix
        if features is not None:
            used = {r.feature for r in self.steering.rules} | {"artefact"}
            record["features"] = {name: round(features.z.get(name, 0.0), 3) for name in sorted(used)}
            record["feature_reference"] = features.reference
            limit = self.settings.hold_artefact
            if limit is not None and features.smoothed.get("artefact", 0.0) > limit:
                frame.hold = "artefact"
        return frame


def creative_settings(options: dict) -> CreativeSettings:
    """:class:`CreativeSettings` from plain ``options`` (see :func:`start_creative`); not checked yet."""
    return CreativeSettings(prompt=options.get("prompt"), eeg_influence=float(options.get("eeg_influence", 1.0)),
                            rules=tuple(options.get("rules", ())), hold_artefact=options.get("hold_artefact"),
                            sham=options.get("sham"), sham_shift_s=float(options.get("sham_shift_s", 30.0)))


def start_creative(live, generator, route: str, options: dict, *, features: bool = False,
                   commands: bool = False, monitor: FeatureMonitor | None = None
                   ) -> tuple[Creative | None, FeatureMonitor | None]:
    """Creative mode for a session from plain ``options`` (those of the command line or the app: ``prompt``,
    ``eeg_influence``, ``rules``, ``baseline_s``, ``hold_artefact``, ``sham``, ``sham_shift_s``): the
    :class:`Creative` (None when nothing asks for it, and ``commands`` — OSC that may set a prompt later — does not
    either) and the started :class:`FeatureMonitor` it steers with (None without steering, baseline, artefact hold
    or ``features``: OSC sends them). ``monitor``: one that runs already (the app's), used instead of a new one.

    Raises:
        CreativeError, ModelLoadError: settings that cannot work, a prompt that cannot be encoded (one line).
    """
    settings = creative_settings(options)
    baseline = float(options.get("baseline_s") or 0.0)
    if route == "retrieval" and (settings.prompt or settings.rules or settings.eeg_influence < 1):
        raise CreativeError("the retrieval route shows bank images: prompts and steering do not apply to it")
    settings.check()
    own = monitor is None and (features or settings.rules or settings.hold_artefact is not None or baseline > 0)
    if own:
        monitor = FeatureMonitor(live)
        monitor.start()
    if monitor is not None and baseline > 0 and monitor.tracker.baseline_state == "none":
        monitor.start_baseline(baseline)
    if not settings.active and not (commands and route != "retrieval"):
        return None, monitor
    try:
        return Creative(generator, settings, monitor=monitor, clip_route=route == "ip-adapter"), monitor
    except BaseException:
        if own:
            monitor.stop()
        raise
