"""The torch device the models run on: ``--gpu auto|cpu|cuda|cuda:1`` in every command."""

from __future__ import annotations

import torch

from bci_dream.core.errors import BciDreamError


class ComputeDeviceError(BciDreamError):
    """The compute device asked for is not a device, or is not available here."""


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given (checked).

    Raises:
        ComputeDeviceError: not a device name, or CUDA asked for where torch sees no GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ComputeDeviceError(f"--gpu {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ComputeDeviceError(f"--gpu {name} asked for CUDA, but torch sees no CUDA GPU here; use --gpu cpu")
    return device
