"""Numeric precision: which one runs (``resolve_precision``) and how (``autocast``).

``auto`` picks bf16 only where the hardware multiplies it natively — a CUDA device of
compute capability 8.0 or newer, or a CPU with AVX512_BF16 or AMX — and fp32 elsewhere:
on a CPU without them bf16 is emulated and about 100x slower than fp32. An explicit
``bf16`` is honoured everywhere, with one warning per reason when it is not native.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from echofm.runtime.hardware import Hardware, detect

# What runs, and what may be asked for.
PRECISIONS = ("fp32", "bf16")
PRECISION_CHOICES = ("auto",) + PRECISIONS

_warned: set[str] = set()


def native_bf16(device: str | torch.device, hardware: Hardware | None = None) -> tuple[bool, str]:
    """(whether ``device`` runs bf16 natively, the reason in words)."""
    hw = hardware or detect()
    dev = torch.device(device)
    if dev.type == "cuda":
        cuda = hw.cuda_device(dev)
        if cuda is None:
            return False, f"no CUDA device {dev} is visible"
        if cuda.bf16:
            return True, f"{cuda.name} supports bf16"
        return False, f"{cuda.name} has no native bf16 (needs compute capability 8.0 or newer)"
    if dev.type == "cpu":
        if hw.cpu_bf16:
            which = [f for f in ("avx512_bf16", "amx_bf16") if f in hw.cpu_flags]
            return True, f"the CPU has {' and '.join(f.upper() for f in which)}"
        return False, ("the CPU has neither AVX512_BF16 nor AMX, so bf16 is emulated "
                       "(about 100x slower than fp32)")
    return False, f"bf16 is not known to be native on {dev.type} devices"


def resolve_precision(requested: str, device: str | torch.device = "cpu",
                      hardware: Hardware | None = None) -> str:
    """``auto`` / ``fp32`` / ``bf16`` -> the precision that runs on ``device`` (fp32 or bf16).

    An explicit ``bf16`` where it is not native is kept (the user asked for it) but warns
    once per process and reason.
    """
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    if requested == "fp32":
        return "fp32"
    native, reason = native_bf16(device, hardware)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if not native and reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"--precision bf16 on {torch.device(device)}: {reason}; --precision auto would pick fp32",
                      RuntimeWarning, stacklevel=2)
    return "bf16"


def autocast(precision: str, device: str | torch.device = "cpu"):
    """Context manager running matrix work in ``precision`` (fp32, bf16; ``auto`` is
    resolved first) on ``device``. bf16 is torch autocast: weights stay fp32, matmuls
    and attention run in bf16."""
    precision = resolve_precision(precision, device) if precision == "auto" else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
