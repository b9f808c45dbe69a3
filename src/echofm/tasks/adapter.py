"""The adapted model: a video encoder plus one task head, saved and loaded as one file.

``TaskModel.forward(clips [N, 3, F, S, S])`` returns the head's output: ``[N, C]``
logits (classification), ``[N]`` values in target units (regression) or ``[N, K, F, S, S]``
logits (segmentation). In the frozen modes (``linear``, ``attentive``) the encoder runs
in eval mode without gradients; in ``full`` mode it trains with the head.

A saved task model is ``model.safetensors`` (encoder and head weights) whose metadata,
and ``task.json`` beside it, hold the encoder's ``ModelConfig``, the ``TaskSpec`` and
the fine-tuning config, so that ``load_task_model(dir)`` rebuilds it without the
original pretrained file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from echofm.config import ModelConfig
from echofm.errors import EchoFMError
from echofm.model.echofm import VideoEncoder
from echofm.choices import POOLINGS, SEG_HEADS
from echofm.choices import TRAINING_MODES as MODES
from echofm.model.heads import (AttentiveProbe, LinearProbe, LinearSegmentationProbe, RegressionHead,
                                SegmentationDecoder, default_layers)
from echofm.files import atomic_write

KINDS = ("regression", "multiclass", "multilabel", "segmentation")
TASK_FILE = "task.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_TAG = "echofm-task-model/1"


@dataclass
class TaskSpec:
    """What the head predicts, fitted on the training labels and saved with the model.

    task: ef | view | segment | disease. kind: regression | multiclass | multilabel |
    segmentation. target: the ``Sample.targets`` key read. classes: class names (index =
    output channel). scheme: label mapping of the disease task (as4, as3, ar, multiclass,
    multilabel). target_mean/std: standardisation of a regression target.
    probe: linear | attentive (the pooling of the classification/regression head).
    pooling: mean | stats, how the probe pools tokens over time (``echofm.model.heads``).
    probe_norm: batch (the linear probe standardises its input with batch statistics) |
        layer (per-sample layer norm: task models saved before batch norm was adopted).
    seg_head: linear (a linear map per token, ``LinearSegmentationProbe``) | unetr
        (``SegmentationDecoder``, which also reads the frames).
    seg_layers: encoder blocks feeding the segmentation head.
    """

    task: str
    kind: str
    target: str = ""
    classes: list[str] = field(default_factory=list)
    scheme: str = ""
    target_mean: float = 0.0
    target_std: float = 1.0
    probe: str = "linear"
    pooling: str = "mean"
    probe_norm: str = "batch"
    seg_head: str = "unetr"
    seg_layers: list[int] = field(default_factory=list)
    attentive_heads: int = 4
    attentive_queries: int = 1

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "regression" else len(self.classes)


def build_head(spec: TaskSpec, cfg: ModelConfig) -> nn.Module:
    """The head of ``spec`` for an encoder of config ``cfg``."""
    if spec.kind == "segmentation":
        if spec.seg_head == "linear":
            return LinearSegmentationProbe(cfg.embed_dim, cfg.patch_size, cfg.t_patch_size, cfg.grid_size,
                                           num_layers=len(spec.seg_layers), num_classes=len(spec.classes))
        if spec.seg_head != "unetr":
            raise ValueError(f"unknown segmentation head {spec.seg_head!r} ({' or '.join(SEG_HEADS)})")
        return SegmentationDecoder(cfg.embed_dim, cfg.patch_size, cfg.t_patch_size, cfg.grid_size,
                                   num_layers=len(spec.seg_layers), num_classes=len(spec.classes),
                                   in_chans=cfg.in_chans)
    if spec.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {spec.pooling!r} ({' or '.join(POOLINGS)})")
    pooling = dict(pooling=spec.pooling, tokens_per_step=cfg.grid_size ** 2)
    if spec.probe == "attentive":
        probe: nn.Module = AttentiveProbe(cfg.embed_dim, spec.out_dim, spec.attentive_heads, spec.attentive_queries,
                                          **pooling)
    elif spec.probe == "linear":
        probe = LinearProbe(cfg.embed_dim, spec.out_dim, norm=spec.probe_norm, **pooling)
    else:
        raise ValueError(f"unknown probe {spec.probe!r} (linear or attentive)")
    if spec.kind == "regression":
        return RegressionHead(probe, spec.target_mean, spec.target_std)
    return probe


class TaskModel(nn.Module):
    """Encoder + head. mode: linear / attentive (frozen encoder) or full (fine-tuned)."""

    def __init__(self, encoder: VideoEncoder, spec: TaskSpec, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if spec.kind == "segmentation" and not spec.seg_layers:
            # The linear probe reads the last block (as DINOv2's linear evaluation); the
            # UNETR decoder evenly spaced depths.
            depth = encoder.cfg.depth
            spec.seg_layers = [depth - 1] if spec.seg_head == "linear" else list(default_layers(depth))
        bad = [i for i in spec.seg_layers if not 0 <= i < encoder.cfg.depth]
        if bad:
            raise ValueError(f"segmentation layers {bad} outside the encoder's {encoder.cfg.depth} blocks")
        self.encoder, self.spec, self.mode = encoder, spec, mode
        self.head = build_head(spec, encoder.cfg)
        if self.frozen:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    @property
    def frozen(self) -> bool:
        return self.mode != "full"

    @property
    def cfg(self) -> ModelConfig:
        return self.encoder.cfg

    def train(self, mode: bool = True) -> "TaskModel":
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # frozen features: no dropout / drop-path noise
        return self

    def features(self, clips: torch.Tensor):
        """Encoder output: tokens [N, T*L, D], or (tokens, hidden list) for segmentation."""
        layers = tuple(self.spec.seg_layers) if self.spec.kind == "segmentation" else ()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.encoder(clips, return_layers=layers) if layers else self.encoder(clips)
        return out

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        feats = self.features(clips)
        if self.spec.kind == "segmentation":
            _, hidden = feats
            return self.head(clips, hidden)
        return self.head(feats)

    def head_loss_input(self, clips: torch.Tensor) -> torch.Tensor:
        """What the loss compares: standardised values for regression, else forward()."""
        if self.spec.kind == "regression":
            return self.head.standardised(self.features(clips))
        return self.forward(clips)


def save_task_model(model: TaskModel, path: str | Path, finetune_config: Optional[dict] = None,
                    extra: Optional[dict] = None) -> Path:
    """Write ``path/model.safetensors`` + ``path/task.json`` (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    info = {"format": FORMAT_TAG, "encoder": model.cfg.to_dict(), "spec": dataclasses.asdict(model.spec),
            "mode": model.mode, "finetune": finetune_config or {}, "extra": extra or {}}
    text = json.dumps(info, indent=2, sort_keys=True, default=str)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"task": text}))
    atomic_write(path / TASK_FILE, lambda tmp: Path(tmp).write_text(text))
    return path


def read_task_info(path: str | Path) -> dict[str, Any]:
    """task.json of a run / model directory."""
    path = Path(path)
    info_path = path / TASK_FILE
    if not info_path.is_file():
        raise EchoFMError(f"{path}: no {TASK_FILE} (not a fine-tuned echofm model; run `echofm finetune` first)")
    info = json.loads(info_path.read_text())
    if info.get("format") != FORMAT_TAG:
        raise EchoFMError(f"{info_path}: unknown format {info.get('format')!r} (expected {FORMAT_TAG})")
    return info


def load_task_model(path: str | Path, map_location: str = "cpu") -> TaskModel:
    """Rebuild a saved TaskModel (encoder + head) from its directory."""
    from safetensors.torch import load_file

    path = Path(path)
    info = read_task_info(path)
    cfg = ModelConfig.from_dict(info["encoder"], strict=False)
    # Task models saved before these fields existed: layer-normed probes, the UNETR decoder.
    spec = TaskSpec(**{"probe_norm": "layer", "seg_head": "unetr", **info["spec"]})
    model = TaskModel(VideoEncoder(cfg), spec, info["mode"])
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise EchoFMError(f"{path}: {WEIGHTS_FILE} is missing")
    state = load_file(str(weights), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EchoFMError(f"{weights}: does not match its task.json (missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.finetune_config = info.get("finetune", {})
    return model.eval()
