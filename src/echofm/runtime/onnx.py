"""ONNX export of echofm models and their ONNX Runtime twin, ``OnnxModel``.

``export_onnx(model, out_dir)`` writes ``model.onnx`` (the encoder with the time-step
projector of an ``EchoFM``, or a ``TaskModel`` with its head), a JSON sidecar
``onnx.json`` (input contract, output names and shapes, opset, echofm version, the model
configuration) and, with ``quantize="int8"``, ``model.int8.onnx``: a copy whose weight
matrices are int8 (ONNX Runtime dynamic quantisation; activations are quantised per call).
``OnnxModel(out_dir)`` answers the calls inference makes on a torch model —
``model(clips)`` for a task model, ``model.embed(clips)`` for an encoder, ``.cfg``,
``.spec`` — so that ``--backend onnx`` is one switch.

onnx and onnxruntime come with the ``onnx`` extra (``pip install 'echofm[onnx]'``); they
are imported only here and only when used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from echofm.choices import QUANTIZATIONS as QUANTIZE_CHOICES
from echofm.config import ModelConfig
from echofm.errors import EchoFMError

FORMAT_TAG = "echofm-onnx/1"
SIDECAR = "onnx.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OPSET = 17
INPUT_NAME = "clips"


def require(module: str):
    """Import ``onnx`` or ``onnxruntime``, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EchoFMError(f"the ONNX backend needs the {module!r} package: pip install 'echofm[onnx]' "
                          f"(or pip install onnx onnxruntime)") from exc


class _EmbedGraph(nn.Module):
    """Encoder + projector as one graph: clips -> (video [N, D], frames [N, T, D][, tokens])."""

    def __init__(self, model, tokens: bool):
        super().__init__()
        self.encoder, self.projector, self.tokens = model.encoder, model.projector, tokens

    def forward(self, clips: torch.Tensor):
        tokens = self.encoder(clips)
        out = (tokens.mean(dim=1), self.projector(tokens))
        return out + (tokens,) if self.tokens else out


def _is_task_model(model) -> bool:
    from echofm.tasks.adapter import TaskModel

    return isinstance(model, TaskModel)


def _contract(model, cfg: ModelConfig) -> dict:
    """The input contract a consumer must meet: the model's own when it has one."""
    contract = getattr(model, "contract", None)
    values = contract.to_dict() if hasattr(contract, "to_dict") else {}
    base = {"num_frames": cfg.num_frames, "img_size": cfg.img_size, "channels": cfg.in_chans,
            "layout": "[N, C, T, H, W]", "dtype": "float32", "intensity": "[0, 1]"}
    return {**base, **values}


def _outputs(model, cfg: ModelConfig, tokens: bool) -> list[dict]:
    D, T = cfg.embed_dim, cfg.t_grid_size
    if not _is_task_model(model):
        out = [{"name": "video", "shape": ["N", D]}, {"name": "frames", "shape": ["N", T, D]}]
        if tokens:
            out.append({"name": "tokens", "shape": ["N", T * cfg.num_spatial, D]})
        return out
    spec = model.spec
    if spec.kind == "segmentation":
        shape = ["N", len(spec.classes), cfg.num_frames, cfg.img_size, cfg.img_size]
    elif spec.kind == "regression":
        shape = ["N"]
    else:
        shape = ["N", len(spec.classes)]
    return [{"name": "output", "shape": shape}]


@dataclass
class ExportResult:
    """Where an export went: the folder, the model files written and the sidecar's content."""

    out_dir: Path
    files: dict[str, Path]
    sidecar: dict


def export_onnx(model, out_dir: str | Path, quantize: Optional[str] = None, tokens: bool = False,
                opset: int = OPSET) -> ExportResult:
    """Write ``model`` (an ``EchoFM`` or a ``TaskModel``) to ``out_dir`` as ONNX (see module doc).

    The batch axis is dynamic; every other input size is the model's (its contract).
    ``tokens`` adds the token embeddings [N, T*L, D] to an encoder's outputs.
    """
    onnx = require("onnx")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    task = _is_task_model(model)
    if task and tokens:
        raise ValueError("tokens are an encoder output; a task model exports its head's output only")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    graph = model if task else _EmbedGraph(model, tokens)
    graph = graph.eval().float().cpu()
    outputs = _outputs(model, cfg, tokens)
    names = [o["name"] for o in outputs]
    example = torch.rand(2, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    fp32_path = out_dir / FP32_FILE
    tmp = fp32_path.with_name(fp32_path.name + ".tmp")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is the robust path for this graph; its deprecation
        # notice and tracer warnings about shape arithmetic are expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), str(tmp), input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={INPUT_NAME: {0: "N"}, **{n: {0: "N"} for n in names}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(tmp))
    tmp.replace(fp32_path)
    files = {"fp32": fp32_path}
    if quantize == "int8":
        files["int8"] = quantize_int8(fp32_path, out_dir / INT8_FILE)
    from echofm import __version__

    sidecar: dict[str, Any] = {
        "format": FORMAT_TAG, "kind": "task" if task else "encoder", "echofm_version": __version__,
        "opset": opset, "files": {k: p.name for k, p in files.items()},
        "inputs": [{"name": INPUT_NAME, "shape": ["N", cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size],
                    "dtype": "float32"}],
        "outputs": outputs, "contract": _contract(model, cfg), "config": cfg.to_dict(),
    }
    if task:
        sidecar["task"] = {"spec": dataclasses.asdict(model.spec), "mode": model.mode,
                           "finetune": getattr(model, "finetune_config", {}) or {}}
    from echofm.files import write_json_atomic

    write_json_atomic(out_dir / SIDECAR, sidecar)
    return ExportResult(out_dir=out_dir, files=files, sidecar=sidecar)


def quantize_int8(source: Path, target: Path) -> Path:
    """A dynamically quantised copy of ``source``: int8 weights for MatMul/Gemm, activations
    quantised per call (no calibration data needed).

    Weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without VNNI (AVX2 only)
    ONNX Runtime multiplies uint8 activations by int8 weights with ``vpmaddubsw``, whose
    int16 sums saturate with full-range weights. Measured on echofm-small (AVX2 CPU): the
    video embedding's cosine to fp32 was 0.966 with full-range weights and 0.9997 with
    reduce_range, at the same speed. The export may run on another machine than the one
    that made it, so the range is reduced everywhere."""
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(target.name + ".tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs advice to run a shape-inference pass first; not needed here
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         reduce_range=True)
    finally:
        root.setLevel(level)
    require("onnx").checker.check_model(str(tmp))
    tmp.replace(target)
    return target


def read_sidecar(path: str | Path) -> tuple[Path, dict]:
    """(folder, sidecar) of an export: ``path`` is its folder or one of its .onnx files."""
    path = Path(path)
    folder = path.parent if path.suffix == ".onnx" else path
    sidecar_path = folder / SIDECAR
    if not sidecar_path.is_file():
        raise EchoFMError(f"{path}: no {SIDECAR} beside it (not written by `echofm export --format onnx`)")
    info = json.loads(sidecar_path.read_text())
    if info.get("format") != FORMAT_TAG:
        raise EchoFMError(f"{sidecar_path}: unknown format {info.get('format')!r} (expected {FORMAT_TAG})")
    return folder, info


def is_onnx_export(path: str | Path) -> bool:
    path = Path(path)
    return (path.suffix == ".onnx" and (path.parent / SIDECAR).is_file()) or (path / SIDECAR).is_file()


class OnnxModel:
    """An exported echofm model run by ONNX Runtime, called like the torch model it came from.

    ``path``: the export folder (runs ``model.onnx``, or ``model.int8.onnx`` with
    ``quantized=True``) or one .onnx file in it. Inputs are float clips
    [N, C, T, H, W] in [0, 1] (torch or numpy); outputs are float32 CPU torch tensors.
    ``spinning=False``: idle worker threads sleep rather than spin between calls (for
    measurements beside other work; spinning is ONNX Runtime's default, a little faster).
    """

    def __init__(self, path: str | Path, quantized: bool = False, threads: Optional[int] = None,
                 device: str = "cpu", spinning: bool = True):
        ort = require("onnxruntime")
        folder, info = read_sidecar(path)
        path = Path(path)
        if path.suffix == ".onnx":
            file = path
        else:
            key = "int8" if quantized else "fp32"
            if key not in info["files"]:
                raise EchoFMError(f"{folder}: no {key} model in this export (export it with --quantize int8)")
            file = folder / info["files"][key]
        if not file.is_file():
            raise EchoFMError(f"{file}: missing (listed in {folder / SIDECAR})")
        self.path, self.info, self.kind = file, info, info["kind"]
        self.cfg = ModelConfig.from_dict(info["config"], strict=False)
        from echofm.contract import contract_for

        # The sidecar holds the model's InputContract fields (plus layout facts); exports
        # without them get the default of a model saved before the contract (every frame).
        saved = info.get("contract") or {}
        self.contract = contract_for(self.cfg, saved if "frame_step" in saved else None)
        self.output_names = [o["name"] for o in info["outputs"]]
        if self.kind == "task":
            from echofm.tasks.adapter import TaskSpec

            self.spec = TaskSpec(**info["task"]["spec"])
            self.mode = info["task"]["mode"]
            self.finetune_config = info["task"].get("finetune", {})
        options = ort.SessionOptions()
        from echofm.runtime.threads import compute_threads

        options.intra_op_num_threads = threads or compute_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spinning:  # idle threads sleep instead of spinning (fairer to other work on the cores)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(file), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise EchoFMError(f"{file}: ONNX Runtime cannot load it: {exc}") from exc

    # torch-module manners, so callers need not tell the backends apart.
    def eval(self) -> "OnnxModel":
        return self

    def to(self, *args, **kwargs) -> "OnnxModel":
        return self

    def run(self, clips) -> dict[str, torch.Tensor]:
        """All outputs by name for clips [N, C, T, H, W]."""
        array = clips.detach().float().cpu().numpy() if isinstance(clips, torch.Tensor) else np.asarray(clips, np.float32)
        c = self.cfg
        want = (c.in_chans, c.num_frames, c.img_size, c.img_size)
        if array.ndim != 5 or tuple(array.shape[1:]) != want:
            raise ValueError(f"clips must be [N, {', '.join(map(str, want))}], got {list(array.shape)}")
        values = self.session.run(self.output_names, {INPUT_NAME: np.ascontiguousarray(array, dtype=np.float32)})
        return {name: torch.from_numpy(v) for name, v in zip(self.output_names, values)}

    def __call__(self, clips) -> torch.Tensor:
        """A task model's output (logits, values or segmentation logits); an encoder's video embedding."""
        out = self.run(clips)
        return out["output"] if self.kind == "task" else out["video"]

    def embed(self, clips):
        """An encoder's ``Embedding`` (tokens only when the export has them, else None)."""
        from echofm.model.echofm import Embedding

        if self.kind != "encoder":
            raise EchoFMError(f"{self.path}: a task model export has no embeddings; export the encoder")
        out = self.run(clips)
        return Embedding(tokens=out.get("tokens"), frames=out["frames"], video=out["video"])

    def fingerprint(self) -> str:
        """BLAKE2b-128 of the .onnx file: another file, another model."""
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @property
    def has_tokens(self) -> bool:
        return "tokens" in self.output_names


def export_source(source: str | Path, out_dir: str | Path, quantize: Optional[str] = None,
                  tokens: bool = False, opset: int = OPSET) -> ExportResult:
    """Export what ``source`` names: a fine-tuned run folder (task.json) exports the task
    model with its head; anything ``load_model`` reads (preset, echofm model, public
    checkpoint) exports the encoder with the projector."""
    from echofm.tasks.adapter import TASK_FILE, load_task_model

    path = Path(str(source))
    if path.is_dir() and (path / TASK_FILE).is_file():
        model = load_task_model(path)
    else:
        from echofm.model import load_model

        model = load_model(source)
    return export_onnx(model.eval(), out_dir, quantize=quantize, tokens=tokens, opset=opset)
