"""What ``echofm doctor`` prints: the machine, and the precision and backend each command picks."""

from __future__ import annotations

import importlib.util

import torch

from echofm.runtime.backend import onnx_available
from echofm.runtime.hardware import detect
from echofm.runtime.precision import native_bf16, resolve_precision
from echofm.runtime.threads import compute_threads

# Commands that run a model, and the backends each offers (the first is the default).
MODEL_COMMANDS: dict[str, tuple[str, ...]] = {
    "pretrain": ("torch",), "finetune": ("torch",), "evaluate": ("torch",), "embed": ("torch", "onnx"),
    "predict": ("torch", "onnx"), "phase": ("torch",), "reconstruct": ("torch",), "diagnose": ("torch",),
}


def _onnx_runtime() -> dict:
    info = {"available": onnx_available(), "install": "pip install 'echofm[onnx]'"}
    if info["available"]:
        import onnxruntime

        info.update(version=onnxruntime.__version__, providers=onnxruntime.get_available_providers())
    return info


def fastest_inference(backends: tuple[str, ...], device: str, native: bool, precision: str) -> str:
    """The fastest way to run a command's model here at a cosine >= 0.99 to fp32, as measured
    (docs/runtime.md): on a CPU without native bf16, ONNX Runtime's int8 copy where the
    command offers ONNX; elsewhere torch in the precision ``auto`` picks."""
    if "onnx" in backends and torch.device(device).type == "cpu" and not native:
        return "onnx int8 (echofm export MODEL --format onnx --quantize int8; --backend onnx --model DIR/model.int8.onnx)"
    return f"torch {precision}"


def machine_report(device: str = "cpu", refresh: bool = True) -> dict:
    """A JSON-ready account of the machine and of each model command's choices on ``device``."""
    hw = detect(refresh=refresh)
    precision = resolve_precision("auto", device, hw)
    native, reason = native_bf16(device, hw)
    return {
        "torch": torch.__version__,
        "hardware": {**hw.to_dict(), "torch_threads": torch.get_num_threads()},
        "device": str(device),
        "precision": {"auto": precision, "bf16_native": native, "reason": reason},
        "threads": {"model": compute_threads(), "with_4_workers": compute_threads(4)},
        "onnx": _onnx_runtime(),
        "torch_compile": importlib.util.find_spec("torch._inductor") is not None,
        "commands": {name: {"precision": precision, "backend": backends[0], "backends": list(backends),
                            "fastest": fastest_inference(backends, device, native, precision)}
                     for name, backends in MODEL_COMMANDS.items()},
    }


def format_report(report: dict) -> str:
    """The report as a few lines of text."""
    hw = report["hardware"]
    lines = [
        f"CPU: {hw['cpu_model']} | {hw['cores']} cores | torch threads {hw['torch_threads']} | "
        f"flags: {' '.join(hw['cpu_flags']) or 'none of interest'} (torch capability {hw['cpu_capability']})",
        "CUDA: " + ("; ".join(f"cuda:{d['index']} {d['name']} {d['memory_gib']} GiB bf16={'yes' if d['bf16'] else 'no'}"
                              for d in hw["cuda_devices"]) or "no devices"),
        f"precision auto on {report['device']} -> {report['precision']['auto']} ({report['precision']['reason']})",
        "ONNX Runtime: " + (f"{report['onnx']['version']} ({', '.join(report['onnx']['providers'])})"
                            if report["onnx"]["available"] else f"not installed ({report['onnx']['install']})"),
        f"torch {report['torch']}",
        "commands:",
    ]
    for name, choice in report["commands"].items():
        extra = f" (also: --backend {' '.join(choice['backends'][1:])})" if len(choice["backends"]) > 1 else ""
        fastest = choice.get("fastest", "")
        hint = f"; fastest here: {fastest.split(' (')[0]}" if fastest.startswith("onnx") else ""
        lines.append(f"  {name:<12} precision {choice['precision']:<5} backend {choice['backend']}{extra}{hint}")
    return "\n".join(lines)
