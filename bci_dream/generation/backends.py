"""How the UNet and decoder run (``--backend``): the kernels and the way a frame is launched.

=============  ===========================================================================================
``eager``      diffusers' modules called step by step (every device; the reference the others are checked against)
``graph``      the whole frame planned and, on CUDA, replayed as one CUDA graph (:mod:`.frame_plan`)
``compile``    ``torch.compile`` of the UNet and decoder (mode ``reduce-overhead``: CUDA graphs of its own)
``int8``       int8 weights and activations through torchao (``Int8DynamicActivationInt8WeightConfig``), then ``graph``
``fp8``        float8 weights and activations through torchao (CUDA GPUs of compute capability 8.9 or more), then
               ``graph``
``tensorrt``   the UNet through torch-tensorrt's ``torch.compile`` back end (CUDA); frames run step by step
``auto``       on CUDA: ``tensorrt`` when torch-tensorrt is installed, else ``graph``; on the CPU: ``eager``
=============  ===========================================================================================

A back end that cannot run here (its library is missing, the device cannot) falls back with one line that says why
and what to install (:func:`choose_backend`). After loading, the first frame of a non-eager back end is compared with
the eager one (:meth:`bci_dream.generation.generator.Generator.check_backend`): the largest pixel difference is
logged and kept.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from bci_dream.core.defaults import BACKENDS
from bci_dream.core.errors import BciDreamError

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "QUANTIZED", "choose_backend", "quantize_unet", "unavailable"]
#: Back ends that change the UNet's weights or kernels before the frame is planned.
QUANTIZED = ("int8", "fp8")


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def unavailable(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device`` here (one phrase), or None when it can."""
    cuda = device.type == "cuda"
    if backend in ("eager", "graph"):
        return None
    if backend == "compile":
        return None if cuda else "torch.compile pays only on a CUDA GPU here"
    if backend in QUANTIZED:
        if _missing("torchao"):
            return "torchao is not installed (pip install torchao)"
        if backend == "fp8":
            if not cuda:
                return "float8 kernels need a CUDA GPU"
            major, minor = torch.cuda.get_device_capability(device)
            if (major, minor) < (8, 9):
                return f"float8 kernels need compute capability 8.9 or more, not {major}.{minor}"
        return None
    if backend == "tensorrt":
        if not cuda:
            return "TensorRT needs a CUDA GPU"
        if _missing("torch_tensorrt"):
            return "torch-tensorrt is not installed (pip install torch-tensorrt)"
        return None
    return f"there is no back end '{backend}' (choose from {', '.join(BACKENDS)})"


def choose_backend(requested: str, device: torch.device) -> tuple[str, str | None]:
    """The back end to use for ``requested`` on ``device``, and the one line said when it falls back (else None).

    ``auto`` never says anything.

    Raises:
        BciDreamError: a name that is no back end (a scene file's typo), the known ones named.
    """
    requested = str(requested).lower()
    if requested not in BACKENDS:
        raise BciDreamError(unavailable(requested, device))
    if requested == "auto":
        if device.type == "cuda":
            return ("tensorrt" if unavailable("tensorrt", device) is None else "graph"), None
        return "eager", None
    why = unavailable(requested, device)
    if why is None:
        return requested, None
    fallback = "graph" if device.type == "cuda" else "eager"
    return fallback, f"back end '{requested}' is not available: {why}; using '{fallback}'"


def quantize_unet(unet, backend: str) -> None:
    """Quantize ``unet``'s linear layers in place with torchao (``int8`` or ``fp8``)."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        quantize_,
    )

    config = Int8DynamicActivationInt8WeightConfig() if backend == "int8" else \
        Float8DynamicActivationFloat8WeightConfig()
    quantize_(unet, config)

