"""Which floating-point format the EEG encoder computes in, on which device.

bf16 halves the memory traffic of the encoder's weights and runs its matrix products on the bf16 units of GPUs and
of CPUs with AVX-512 BF16 or AMX: the ``dreamdiffusion`` encoder at batch 1 runs 3-4x faster than in float32 on
such a CPU (benchmarks/README.md). Its embeddings stay within ``BF16_TOLERANCE`` of float32's (measured on the
shipped presets; tests/test_precision.py checks it). Where the CPU has no bf16 arithmetic, bf16 would be emulated
(slower than float32), so ``auto`` keeps float32 there.
"""

from __future__ import annotations

import torch

from bci_dream.core import defaults
from bci_dream.core.errors import BciDreamError

#: Largest difference of a bf16 embedding from the float32 one, as a fraction of the float32 embedding's largest
#: absolute value (measured: 0.011 tiny, 0.012 small, 0.023 dreamdiffusion, random weights; cosine ≥ 0.9999).
BF16_TOLERANCE = 0.05


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` does bf16 arithmetic in hardware (a CUDA GPU that supports it; a CPU with AVX-512 BF16
    or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # (private in torch.cpu; absent before 2.3)
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def compute_dtype(device: str | torch.device, precision: str = defaults.PRECISION) -> torch.dtype:
    """The dtype for ``precision`` (``auto``, ``fp32`` or ``bf16``) on ``device``: ``auto`` is bf16 where
    :func:`native_bf16`, else float32."""
    if precision not in defaults.PRECISIONS:
        raise BciDreamError(f"unknown precision {precision!r}; use one of {', '.join(defaults.PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``bf16``, ``fp16`` or ``fp32`` (as the options spell them)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}.get(dtype, str(dtype))
