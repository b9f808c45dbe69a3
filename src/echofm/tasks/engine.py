"""Fine-tuning configuration, training-data selection and evaluation of task models.

``FinetuneConfig`` describes an adaptation run (trained by ``echofm.tasks.finetuning``
on the shared training loop); ``subsample`` and ``usable_samples`` choose the training
clips; ``evaluate`` scores a task model on a split, in one process or every rank of a
``torchrun`` job (``evaluate_samples``: videos shared out, outputs gathered, rank 0
scores and writes).

Modes: ``linear`` / ``attentive`` probes on frozen features; ``full`` fine-tuning with
layer-wise learning-rate decay. ``label_fraction`` keeps a seeded, class-stratified
(classification) or grouped share of the training split for few-shot curves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from echofm.datasets.base import DatasetIndex, Sample
from echofm.errors import EchoFMError
from echofm.files import atomic_write
from echofm.model.heads import POOLINGS
from echofm.tasks.registry import get_task
from echofm.tasks.adapter import MODES, SEG_HEADS, TaskModel
from echofm.tasks.base import EvalOptions, run_windows, saved_eval_options
from echofm.train.distributed import (DistContext, all_gather_objects, barrier, broadcast_object, init_distributed,
                                      shutdown)
from echofm.train.optim import scaled_lr

log = logging.getLogger("echofm.tasks")
CONFIG = "config.json"
# Base learning rates per mode (AdamW), applied as blr x effective batch / 256 (the one rule,
# echofm.train.optim.scaled_lr); at the default batch of 8: linear 1.25e-3, full 1e-3.
# Full mode was 2e-3 (6.25e-5 at batch 8), far too small for echofm's small encoders: from
# random init on phantoms (echofm-tiny, 48 px, view, 128 clips, 240 steps, measured on a
# busy CPU) base rates 2e-3 / 8e-3 / 3.2e-2 / 1.28e-1 ended at training loss 0.34 / 0.06 /
# 0.02 / 0.33 and held-out accuracy 0.90 / 0.93 / 0.95 / 0.77; after 40 steps the old rate
# had barely moved the loss (1.40 -> 1.10, tests/test_finetune_learns.py).
DEFAULT_BLR = {"linear": 4e-2, "attentive": 4e-3, "full": 3.2e-2}
# The linear segmentation head learns a per-pixel map from thousands of pixels per clip and
# needs a larger step: on phantoms (echofm-tiny, 96 clips, 20 epochs) a base rate of 4e-2
# left it at LV Dice 0.43, 1.2 reached 0.84-0.88 (measured as 1e-2 and 0.3 under batch / 64).
DEFAULT_BLR_LINEAR_SEGMENTATION = 1.2
# Full fine-tuning with the linear segmentation head: the head still learns per pixel, the
# encoder must not move at the probe's rate. From random init (echofm-tiny, 48 px, 32 A4C
# clips, 60 steps, busy CPU) base rates 2e-3 / 3.2e-2 / 1.28e-1 gave LV Dice 0.29 / 0.65 / 0.76.
DEFAULT_BLR_FULL_LINEAR_SEGMENTATION = 1.28e-1


@dataclass
class FinetuneConfig:
    """Everything that defines an adaptation run (saved as ``config.json``).

    task: ef | view | segment | disease. mode: linear | attentive | full.
    target: which label of the samples to learn (default per task: ef, view, label).
    labels: disease label scheme (as4, as3, ar, multiclass, multilabel).
    batch_size: clips per step and process (under torchrun the global batch is
        batch_size x processes).
    blr: base learning rate (None: per mode, see DEFAULT_BLR); the applied rate is
        blr * batch_size * accum_steps * processes / 256. lr: the applied rate itself
        (overrides blr). warmup_epochs: linear warm-up, then cosine decay to 0.
    head_only_epochs: full mode trains only the head for this many epochs first, then the
        encoder too (linear probing then fine-tuning, LP-FT); 0: all from the first step.
    accum_steps: micro-batches accumulated per optimiser step. clip_grad: clip the
        gradient norm to this (0: off). compile: torch.compile the model.
    device: cpu, cuda (under torchrun each rank takes cuda:LOCAL_RANK) or auto.
    frame_step: take every Nth frame of a video into a clip (None: the step the --init
        model's input contract asks for each video's frame rate; see ``echofm.contract``).
    window_step / max_windows: evaluation windows (None: back to back, all).
    pooling: how a probe pools the tokens, mean or stats (per time step, then mean and
        standard deviation over time); None: stats for ef (a change over the cycle), mean
        for the other tasks.
    seg_head: segmentation head, linear (a linear map per token) or unetr (decoder that
        also reads the frames); None: linear in linear mode, unetr otherwise.
    seg_layers: encoder blocks feeding the segmentation head (None: the last block for the
        linear head, 4 evenly spaced for unetr).
    """

    task: str = "ef"
    mode: str = "linear"
    target: Optional[str] = None
    labels: Optional[str] = None
    epochs: int = 10
    batch_size: int = 8
    accum_steps: int = 1
    blr: Optional[float] = None
    lr: Optional[float] = None
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_epochs: float = 1.0
    head_only_epochs: float = 0.0
    label_fraction: float = 1.0
    seed: int = 0
    frame_step: Optional[int] = None
    window_step: Optional[int] = None
    max_windows: Optional[int] = None
    pooling: Optional[str] = None
    seg_head: Optional[str] = None
    seg_layers: Optional[list[int]] = None
    attentive_queries: int = 1
    clip_grad: float = 0.0
    compile: bool = False
    precision: str = "auto"
    device: str = "cpu"
    num_workers: int = 0
    validate: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.seg_head is not None and self.seg_head not in SEG_HEADS:
            raise ValueError(f"seg_head must be one of {', '.join(SEG_HEADS)}, got {self.seg_head!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.accum_steps < 1:
            raise ValueError("epochs, batch_size and accum_steps must be at least 1")
        for name in ("frame_step", "window_step", "max_windows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.clip_grad < 0:
            raise ValueError(f"clip_grad must be >= 0 (0 disables), got {self.clip_grad}")
        if not 0.0 <= self.head_only_epochs < self.epochs:
            raise ValueError(f"head_only_epochs must be in [0, epochs={self.epochs}), got {self.head_only_epochs}")

    @property
    def resolved_pooling(self) -> str:
        return self.pooling or ("stats" if self.task == "ef" else "mean")

    @property
    def resolved_probe_norm(self) -> str:
        # Frozen features: batch-norm standardisation (MAE's linear probing); fine-tuning: a
        # per-sample layer norm (MAE's fc_norm), which does not depend on the batch.
        return "batch" if self.mode == "linear" else "layer"

    @property
    def resolved_seg_head(self) -> str:
        return self.seg_head or ("linear" if self.mode == "linear" else "unetr")

    @property
    def resolved_blr(self) -> float:
        """The base learning rate: blr, or the default of the mode (and segmentation head)."""
        if self.blr is not None:
            return self.blr
        if self.task == "segment" and self.resolved_seg_head == "linear":
            return DEFAULT_BLR_LINEAR_SEGMENTATION if self.mode == "linear" else DEFAULT_BLR_FULL_LINEAR_SEGMENTATION
        return DEFAULT_BLR[self.mode]

    def peak_lr(self, world_size: int = 1) -> float:
        """The applied learning rate: lr, or blr x batch_size x accum_steps x processes / 256."""
        if self.lr is not None:
            return self.lr
        return scaled_lr(self.resolved_blr, self.batch_size * self.accum_steps * world_size)

    def eval_options(self) -> EvalOptions:
        return EvalOptions(frame_step=self.frame_step, window_step=self.window_step, max_windows=self.max_windows,
                           batch_size=self.batch_size, device=self.device, precision=self.precision,
                           num_workers=self.num_workers)


@dataclass
class FinetuneResult:
    run_dir: Path
    model: TaskModel
    history: list[dict] = field(default_factory=list)
    best: Optional[dict] = None


# --- data selection --------------------------------------------------------------------

def subsample(samples: Sequence[Sample], fraction: float, seed: int, strata: Optional[Sequence] = None) -> list[Sample]:
    """A seeded share of samples: per stratum (class) when given, whole groups when samples
    have groups (so a study is never split), at least one per stratum."""
    if fraction >= 1.0:
        return list(samples)
    rng = random.Random(seed)
    keys = list(strata) if strata is not None else [None] * len(samples)
    by_stratum: dict = defaultdict(list)
    for s, k in zip(samples, keys):
        by_stratum[k].append(s)
    kept: list[Sample] = []
    for k in sorted(by_stratum, key=str):
        members = by_stratum[k]
        units: dict = defaultdict(list)
        for s in members:
            units[s.group if s.group is not None else s.id].append(s)
        names = sorted(units, key=str)
        rng.shuffle(names)
        n = max(1, int(round(fraction * len(names))))
        for name in names[:n]:
            kept.extend(units[name])
    order = {id(s): i for i, s in enumerate(samples)}
    return sorted(kept, key=lambda s: order[id(s)])


def usable_samples(task, samples: list[Sample], spec, split: str) -> list[Sample]:
    """Samples the task can use; the others are logged once (skip policy of the readers)."""
    kept = []
    for s in samples:
        reason = task.usable(s, spec)
        if reason is None:
            kept.append(s)
        else:
            log.warning("%s split: skipping %s: %s", split, s.id, reason)
    return kept


# --- evaluation ------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


class _ReplayModel(torch.nn.Module):
    """Stands in for a TaskModel inside ``task.evaluate``: returns window outputs computed
    earlier (by all ranks), in the order ``run_windows`` asks for them."""

    def __init__(self, model: TaskModel, outputs: list[torch.Tensor]):
        super().__init__()
        self.cfg, self.spec, self.mode, self.contract = model.cfg, model.spec, model.mode, model.contract
        self.outputs = torch.cat(outputs) if outputs else torch.empty(0)
        self.position = 0

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        n = clips.shape[0]
        out = self.outputs[self.position:self.position + n]
        if out.shape[0] != n:
            raise RuntimeError(f"gathered evaluation outputs ran out at window {self.position}")
        self.position += n
        return out


def evaluate_samples(ctx: DistContext, task, model: TaskModel, samples: list[Sample], options: EvalOptions,
                     plots_dir: Optional[Path] = None) -> tuple[dict, list[dict]]:
    """``task.evaluate`` over every rank of a job (a collective: call it on every rank).

    One process: the task's own evaluation. Several: each rank runs the model on every
    world_size-th video, the window outputs are gathered, and rank 0 scores them all
    (and draws the plots); every rank returns the same (metrics, records). Segmentation
    outputs (per-pixel, per-frame) are too large to gather, so rank 0 scores those alone.
    """
    if not ctx.active:
        return task.evaluate(model, samples, options, plots_dir=plots_dir)
    result = None
    if model.spec.kind == "segmentation":
        if ctx.is_main:
            result = task.evaluate(model, samples, options, plots_dir=plots_dir)
        return broadcast_object(ctx, result)
    mine = list(range(ctx.rank, len(samples), ctx.world_size))
    outputs = {i: out for i, (_, _, out) in zip(mine, run_windows(model, [samples[i] for i in mine], options))}
    gathered = all_gather_objects(ctx, outputs)
    if ctx.is_main:
        merged = {i: out for part in gathered for i, out in part.items()}
        replay = _ReplayModel(model, [merged[i] for i in range(len(samples))])
        result = task.evaluate(replay, samples, options, plots_dir=plots_dir)
    return broadcast_object(ctx, result)


def evaluate(model_dir: str | Path | TaskModel, data: DatasetIndex, split: str = "test",
             out_dir: Optional[str | Path] = None, options: Optional[EvalOptions] = None,
             plots: bool = True) -> dict:
    """Evaluate a fine-tuned model on one split; with out_dir write metrics.json,
    predictions.jsonl and the plots there. Returns the metrics.

    Under ``torchrun`` call it on every rank: the videos are shared out, the outputs
    gathered, and rank 0 writes the files.
    """
    from echofm.tasks.adapter import load_task_model

    model = model_dir if isinstance(model_dir, TaskModel) else load_task_model(model_dir)
    spec = model.spec
    task = get_task(spec.task)
    samples = usable_samples(task, data.split(split), spec, split)
    if not samples:
        raise EchoFMError(f"{data.root}: no usable samples in split {split!r} (found {data.counts()}; "
                          f"use --split all to evaluate every sample)")
    if options is None:
        options = saved_eval_options(model)
    ctx = init_distributed(options.device)
    try:
        options = dataclasses.replace(options, device=str(ctx.device))
        model.to(ctx.device)
        out = Path(out_dir) if out_dir is not None else None
        metrics, records = evaluate_samples(ctx, task, model, samples, options,
                                            plots_dir=out if plots and ctx.is_main else None)
        metrics = {"task": spec.task, "split": split, "dataset": data.name, "samples": len(samples), **metrics}
        if out is not None and ctx.is_main:
            write_json(out / "metrics.json", metrics)
            lines = "".join(json.dumps(r, default=str) + "\n" for r in records)
            atomic_write(out / "predictions.jsonl", lambda tmp: Path(tmp).write_text(lines))
        barrier(ctx)
    finally:
        shutdown(ctx)
    return metrics
