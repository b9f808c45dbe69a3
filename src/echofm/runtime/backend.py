"""Which engine runs a model: torch (default) or ONNX Runtime (an ``echofm export`` folder).

``load_inference_model`` is the one switch: the same call gives a torch model or an
``OnnxModel`` answering the same calls (``model(clips)``, ``model.embed(clips)``, ``.cfg``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from echofm.choices import BACKENDS
from echofm.errors import EchoFMError


def onnx_available() -> bool:
    """True when onnx and onnxruntime are importable (the ``onnx`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def load_inference_model(source: str | Path, backend: str = "torch", kind: str = "encoder",
                         device: str = "cpu", quantized: bool = False):
    """A model ready for inference on ``device``.

    kind ``encoder``: ``source`` is a preset, echofm model or public checkpoint (torch), or
    an export folder (onnx); kind ``task``: a fine-tuned run folder (torch) or its export.
    ``quantized`` picks the export's int8 copy (onnx only).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if kind not in ("encoder", "task"):
        raise ValueError(f"kind must be encoder or task, got {kind!r}")
    if backend == "onnx":
        from echofm.runtime.onnx import OnnxModel, is_onnx_export

        if not is_onnx_export(source):
            raise EchoFMError(f"{source}: --backend onnx needs a folder written by `echofm export --format onnx` "
                              f"(or one of its .onnx files)")
        model = OnnxModel(source, quantized=quantized, device=device)
        if model.kind != kind:
            raise EchoFMError(f"{source}: an exported {model.kind} model, but this command needs a {kind} model")
        return model
    if quantized:
        raise ValueError("an int8 model runs on the onnx backend only (export with --quantize int8)")
    if kind == "task":
        from echofm.tasks.adapter import load_task_model

        return load_task_model(source).to(device).eval()
    from echofm.model import load_model

    return load_model(source).eval().to(device)
