"""Numeric precision for training and inference: choosing it (auto, fp32, bf16) and applying it (autocast)."""

from __future__ import annotations

import contextlib

import torch

from echofm.errors import EchoFMError

PRECISIONS = ("fp32", "bf16")
PRECISION_CHOICES = ("auto",) + PRECISIONS


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> str:
    """``auto`` | ``fp32`` | ``bf16`` on ``device`` -> ``fp32`` or ``bf16``.

    auto: bf16 only on a CUDA device that supports it, fp32 elsewhere (a CPU without native
    bf16 runs bf16 autocast slower than fp32). bf16 asked for on a GPU without it is an error.
    """
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    device = torch.device(device)
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if requested == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if requested == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise EchoFMError("precision bf16 asked for but this GPU does not support bfloat16")
    return requested


def autocast(precision: str, device: str | torch.device = "cpu"):
    """Context manager running matrix work in ``precision`` on ``device``.

    ``bf16`` uses torch autocast (weights stay fp32; matmuls and attention run in bf16),
    which on AVX-512-BF16 CPUs and on GPUs is several times faster than fp32; ``auto`` is
    resolved first (``resolve_precision``).
    """
    if precision == "auto":
        precision = resolve_precision(precision, device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
