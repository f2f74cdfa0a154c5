"""One window at a time through encoder + conditioning head (or CLIP head), as fast as the device allows.

The live engine encodes a single window [C, T] every hop. At batch 1 a transformer is bound by
kernel launches rather than arithmetic, so on CUDA the model runs in bf16 and its whole forward
is captured once in a CUDA graph (``torch.cuda.CUDAGraph``) and replayed for every window: one
launch instead of hundreds. On the CPU it runs eagerly, with bf16 weights where the CPU has bf16
arithmetic (AVX-512 BF16, AMX: the ``dreamdiffusion`` encoder 3-4x faster) and in float32 elsewhere
(:mod:`bci_dream.models.precision`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from bci_dream.core import defaults
from bci_dream.models.eeg_model import EegModel
from bci_dream.models.precision import compute_dtype, dtype_name

log = logging.getLogger(__name__)

#: What the encoder can output: the DreamDiffusion route's prompt embeddings or the IP-Adapter route's CLIP vector.
OUTPUTS = ("prompt_embeds", "clip_embeds")


class PromptEncoder:
    """Callable ``(window [C, T] float32, mask [C] bool) → prompt_embeds [1, 77, D]`` on ``device`` (or, with
    ``output="clip_embeds"``, the CLIP image embedding [1, P] of the IP-Adapter route).

    Args:
        model: an :class:`EegModel` with the head ``output`` needs (it is moved to ``device``, converted to the
            precision's dtype and put in eval mode).
        output: ``"prompt_embeds"`` (the conditioning head) or ``"clip_embeds"`` (the CLIP head).
        device: where the model runs.
        precision: ``auto`` (bf16 where the device has bf16 arithmetic, else float32), ``fp32`` or ``bf16``; the
            embeddings of bf16 stay within :data:`~bci_dream.models.precision.BF16_TOLERANCE` of float32's.
        cuda_graph: capture the forward in a CUDA graph on CUDA (falls back to eager, said once, if the
            capture fails).

    The returned tensor is a fresh copy: callers may keep it while the next window is encoded.
    """

    def __init__(self, model: EegModel, device: str | torch.device = "cpu", *, precision: str = defaults.PRECISION,
                 cuda_graph: bool = True, output: str = "prompt_embeds") -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        self.output = output
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = compute_dtype(self.device, precision)
        self.model = model.eval().to(self.device, self.dtype)
        self._forward = getattr(self.model, output)
        cfg = model.config.encoder
        self.shape = (cfg.n_channels, cfg.n_samples)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._x = self._mask = self._out = None
        if self.cuda and cuda_graph:
            try:
                self._capture()
            except RuntimeError as e:  # (an op that cannot be captured; eager still works)
                log.warning("CUDA graph capture of the EEG encoder failed (%s); encoding eagerly", e)
                self._graph = None

    @property
    def precision(self) -> str:
        """``bf16`` or ``fp32``: what the encoder computes in."""
        return dtype_name(self.dtype)

    @property
    def graphed(self) -> bool:
        """Whether windows are encoded by replaying a CUDA graph."""
        return self._graph is not None

    @torch.inference_mode()
    def _capture(self) -> None:
        self._x = torch.zeros((1, *self.shape), device=self.device, dtype=self.dtype)
        self._mask = torch.ones((1, self.shape[0]), device=self.device, dtype=self.dtype)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as torch.cuda.graphs asks
            for _ in range(3):
                self._forward(self._x, self._mask)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self._forward(self._x, self._mask)
        self._graph = graph

    @torch.inference_mode()
    def __call__(self, window: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """``window`` [C, T] (normalised, float32) and ``mask`` [C] (bool) → [1, 77, D] (or [1, P]) in the model's
        dtype."""
        if tuple(window.shape) != self.shape:
            self.model.encoder.check_input(torch.from_numpy(np.asarray(window, np.float32)), None)  # raises, names both
        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None]
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
        if self._graph is None:
            return self._forward(x.to(self.device, self.dtype), m.to(self.device, self.dtype))
        self._x.copy_(x)
        self._mask.copy_(m)
        self._graph.replay()
        return self._out.clone()
