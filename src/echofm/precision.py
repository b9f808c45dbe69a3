"""Numeric precision for training and inference: fp32, or bf16 autocast (CPU and GPU)."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: str | torch.device = "cpu"):
    """Context manager running matrix work in ``precision`` on ``device``.

    ``bf16`` uses torch autocast (weights stay fp32; matmuls and attention run in bf16),
    which on AVX-512-BF16 CPUs and on GPUs is several times faster than fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
