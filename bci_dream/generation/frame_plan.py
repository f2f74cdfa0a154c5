"""A whole frame as one fixed computation, for the ``graph`` back end (``--backend graph``).

The eager path (:meth:`bci_dream.generation.generator.Generator._denoise`) asks the scheduler for its timesteps
and its step arithmetic on every frame: Python between every kernel. With the steps, the seed and the image size
fixed for a session, that arithmetic is the same every frame, so it is worked out once here:

- :func:`plan_steps` finds, for every step, the scheduler's input scale and its update as
  ``latents ← a·latents + b·noise_prediction + c`` (``c``: the noise an ancestral or LCM scheduler adds, fixed by
  the session's seed), by calling the scheduler itself on probe tensors, and checks the plan against it on random
  ones. A scheduler whose steps are not of that form cannot be planned (:class:`PlanError`).
- :class:`FrameGraph` runs the UNet steps of the plan, the decoder and the conversion to uint8 on static buffers,
  for a batch of embeddings at once (interpolation frames in one UNet call). On CUDA the whole frame is captured once
  in a CUDA graph (``torch.cuda.CUDAGraph``) and replayed: one launch instead of thousands, and the only host wait is
  the copy of the pixels into pinned memory. On the CPU the same computation runs eagerly (what the tests check
  against the eager path).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)

#: Relative tolerance of the plan against the scheduler on random probes.
PLAN_TOLERANCE = 1e-4


class PlanError(BciDreamError):
    """The scheduler's steps are not ``a·latents + b·noise + c``: the frame cannot be planned (eager instead)."""


@dataclass(frozen=True)
class PlannedStep:
    """One denoising step: the UNet sees ``input_scale · latents`` at ``timestep``; then
    ``latents ← latent_coef · latents + noise_coef · noise_prediction + offset``."""

    timestep: torch.Tensor
    input_scale: float
    latent_coef: float
    noise_coef: float
    offset: torch.Tensor | None  # [1, C, h, w] (float32), or None when the scheduler adds nothing


def _uniform(t: torch.Tensor, what: str) -> float:
    value = t.flatten()[0]
    if not torch.allclose(t, value.expand_as(t), rtol=PLAN_TOLERANCE, atol=1e-6):
        raise PlanError(f"the scheduler's {what} is not one number for every element")
    return float(value)


def plan_steps(scheduler, steps: int, shape: tuple[int, ...], *, seed: int, device: torch.device,
               accepts_generator: bool) -> tuple[float, list[PlannedStep]]:
    """The initial-noise scale and the planned steps of ``scheduler`` for ``steps`` steps on latents of ``shape``.

    The scheduler's noise generator is seeded with ``seed`` before each pass, as the eager path does every frame.

    Raises:
        PlanError: a step is not of the planned form, or the plan does not reproduce the scheduler.
    """
    rng = torch.Generator(device.type if device.type == "cuda" else "cpu")
    probe = torch.Generator("cpu").manual_seed(1234)
    random_latents = torch.randn(shape, generator=probe).to(device)
    random_noise = torch.randn(shape, generator=probe).to(device)
    zeros = torch.zeros(shape, device=device)
    ones = torch.ones(shape, device=device)
    probes = [(zeros, zeros), (ones, zeros), (zeros, ones), (random_latents, random_noise)]
    outputs: list[list[torch.Tensor]] = []
    scales: list[list[torch.Tensor]] = []
    timesteps: list[torch.Tensor] = []
    for latents, noise in probes:
        scheduler.set_timesteps(steps, device=device)
        rng.manual_seed(seed)
        kwargs = {"generator": rng} if accepts_generator else {}
        pass_out, pass_scale = [], []
        for t in scheduler.timesteps:
            pass_scale.append(scheduler.scale_model_input(latents.clone(), t).float())
            pass_out.append(scheduler.step(noise.clone(), t, latents.clone(), **kwargs, return_dict=False)[0].float())
            if len(timesteps) < len(scheduler.timesteps):
                timesteps.append(t)
        outputs.append(pass_out)
        scales.append(pass_scale)
    plan = []
    for k, t in enumerate(timesteps):
        offset = outputs[0][k]
        a = _uniform(outputs[1][k] - offset, "latent coefficient")
        b = _uniform(outputs[2][k] - offset, "noise coefficient")
        s = _uniform(scales[1][k], "input scale")
        expected = a * random_latents + b * random_noise + offset
        got = outputs[3][k]
        if not torch.allclose(got, expected, rtol=PLAN_TOLERANCE, atol=PLAN_TOLERANCE * float(got.abs().max() + 1)) \
                or not torch.allclose(scales[3][k], s * random_latents, rtol=PLAN_TOLERANCE, atol=1e-5):
            raise PlanError(f"step {k + 1} of {type(scheduler).__name__} is not a fixed linear update")
        plan.append(PlannedStep(t, s, a, b, offset if bool(offset.abs().max() > 0) else None))
    scheduler.set_timesteps(steps, device=device)  # (leave it as the eager path expects it)
    return float(scheduler.init_noise_sigma), plan


class FrameGraph:
    """A frame of ``generator`` for ``batch`` embeddings at once: static buffers, planned steps, decoder, uint8.

    Args:
        generator: a :class:`~bci_dream.generation.generator.Generator` (its pipeline, size, seed, latents, guidance
            and text side as they are now; build a new graph when they change).
        batch: embeddings per call.
        cuda_graph: capture a CUDA graph on CUDA (falls back to running the planned frame eagerly, said once).

    Raises:
        PlanError: the scheduler cannot be planned.
    """

    def __init__(self, generator, batch: int = 1, *, cuda_graph: bool = True) -> None:
        g = generator
        self.generator, self.batch = g, int(batch)
        self.device, self.dtype = g.device, g.dtype
        self.cfg = g.cfg
        latents = g._latents
        init_sigma, self.plan = plan_steps(g.pipe.scheduler, g.steps, tuple(latents.shape), seed=g.seed,
                                           device=g.device, accepts_generator=g._accepts_generator)
        n = self.batch
        self._latents0 = (latents.float() * init_sigma).to(self.dtype).repeat(n, 1, 1, 1) \
            .contiguous(memory_format=torch.channels_last)
        self._offsets = [None if s.offset is None else s.offset.to(self.dtype) for s in self.plan]
        self.embeds = torch.zeros(n, *g._no_prompt.shape[1:], device=self.device, dtype=self.dtype)
        self.pooled = None if g.pooled_dim is None else torch.zeros(n, g.pooled_dim, device=self.device,
                                                                      dtype=self.dtype)
        self.image = None if g.image_embed_dim is None else torch.zeros(n, 1, g.image_embed_dim, device=self.device,
                                                                         dtype=self.dtype)
        self._time_ids = None if g._time_ids is None else g._time_ids.repeat(n, 1)
        self._timestep_cond = None if g._timestep_cond is None else g._timestep_cond.repeat(n, 1)
        self.pixels: torch.Tensor | None = None  # [N, H, W, 3] uint8 on the device, written by every run
        self._graph: torch.cuda.CUDAGraph | None = None
        self._cuda = self.device.type == "cuda"
        self._host = torch.empty((n, g.size, g.size, 3), dtype=torch.uint8, pin_memory=self._cuda)
        if self._cuda and cuda_graph:
            try:
                self._capture()
            except RuntimeError as e:  # (an op that cannot be captured; the planned frame still runs eagerly)
                log.warning("CUDA graph capture of the frame failed (%s); running it without a graph", e)
                self._graph = None

    @property
    def graphed(self) -> bool:
        return self._graph is not None

    def _unet_inputs(self, latents: torch.Tensor, step: PlannedStep):
        g = self.generator
        model_input = latents * step.input_scale
        embeds, pooled, image, time_ids = self.embeds, self.pooled, self.image, self._time_ids
        timestep_cond = self._timestep_cond
        if self.cfg:
            model_input = torch.cat([model_input, model_input])
            negative = g._negative_embeds if g._negative_embeds is not None and \
                g._negative_embeds.shape[1] == embeds.shape[1] else torch.zeros_like(embeds[:1])
            embeds = torch.cat([negative.expand_as(embeds), embeds])
            if pooled is not None:
                neg_pooled = g._negative_pooled if g._negative_pooled is not None else torch.zeros_like(pooled[:1])
                pooled = torch.cat([neg_pooled.expand_as(pooled), pooled])
            if image is not None:
                image = torch.cat([torch.zeros_like(image), image])
            time_ids = time_ids.repeat(2, 1) if time_ids is not None else None
            timestep_cond = timestep_cond.repeat(2, 1) if timestep_cond is not None else None
        added = {"text_embeds": pooled, "time_ids": time_ids} if pooled is not None else {}
        if image is not None:
            added["image_embeds"] = [image]
        return model_input, embeds, timestep_cond, added or None

    def _frame(self) -> torch.Tensor:
        """The planned frame on the static buffers → uint8 [N, H, W, 3] on the device."""
        g = self.generator
        latents = self._latents0
        for step, offset in zip(self.plan, self._offsets):
            model_input, embeds, timestep_cond, added = self._unet_inputs(latents, step)
            noise = g.pipe.unet(model_input, step.timestep, encoder_hidden_states=embeds, timestep_cond=timestep_cond,
                                added_cond_kwargs=added, return_dict=False)[0]
            if self.cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + g.guidance * (cond - uncond)
            latents = step.latent_coef * latents + step.noise_coef * noise
            if offset is not None:
                latents = latents + offset
        latents = latents.to(g._vae_dtype)
        if g._scale != 1.0 or g._shift:
            latents = latents / g._scale + g._shift
        image = g.vae.decode(latents, return_dict=False)[0]  # [N, 3, H, W] in [-1, 1]
        return (image.float() * 127.5 + 128.0).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    @torch.inference_mode()
    def _capture(self) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the default stream (cuDNN autotuning, lazy allocations)
            for _ in range(3):
                self._frame()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.pixels = self._frame()
        self._graph = graph

    @torch.inference_mode()
    def run(self, embeds: torch.Tensor, pooled: torch.Tensor | None = None,
            image: torch.Tensor | None = None,
            extra: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float] | None]:
        """Frames for ``embeds`` [n ≤ N, tokens, D] (``pooled`` [n, P] for SDXL, ``image`` [n, 1, E] for the
        IP-Adapter route; missing rows repeat the last one) → uint8 [n, H, W, 3] in host memory (the one wait for
        the device; the buffer is reused by the next call: copy what is kept), and the values of ``extra`` (a small
        tensor on the device, such as the engine's similarity gate, copied to the host in the same wait; None
        without it)."""
        n = int(embeds.shape[0])
        if not 1 <= n <= self.batch:
            raise ValueError(f"{n} embeddings for a frame graph of batch {self.batch}")
        self._fill(self.embeds, embeds, n)
        if self.pooled is not None:
            self._fill(self.pooled, pooled if pooled is not None else self.generator._pooled_default, n)
        if self.image is not None:
            self._fill(self.image, image, n)
        if self._graph is not None:
            self._graph.replay()
        else:
            self.pixels = self._frame()
        self._host.copy_(self.pixels, non_blocking=self._cuda)
        values = None
        if extra is not None:
            values = torch.empty(extra.shape, dtype=torch.float32, pin_memory=self._cuda)
            values.copy_(extra.float(), non_blocking=self._cuda)
        if self._cuda:
            torch.cuda.current_stream(self.device).synchronize()
        return self._host[:n], None if values is None else values.tolist()

    @staticmethod
    def _fill(buffer: torch.Tensor, values: torch.Tensor, n: int) -> None:
        values = values.to(buffer.device, buffer.dtype, non_blocking=True)
        if values.shape[0] == 1 and n > 1:
            values = values.expand(n, *values.shape[1:])
        buffer[:n].copy_(values[:n])
        if n < buffer.shape[0]:
            buffer[n:].copy_(buffer[n - 1:n].expand(buffer.shape[0] - n, *buffer.shape[1:]))
