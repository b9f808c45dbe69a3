"""Numeric precision: kept as an import path; the one definition is ``echofm.runtime.precision``."""

from echofm.runtime.precision import PRECISION_CHOICES, PRECISIONS, autocast, native_bf16, resolve_precision

__all__ = ["PRECISIONS", "PRECISION_CHOICES", "autocast", "native_bf16", "resolve_precision"]
