"""Adapting an encoder to a task: the training loop, in one process or one rank of ``torchrun``.

``finetune(data, init, config, out_dir)`` trains a ``TaskModel`` on the ``train`` split,
validates on ``val`` (when present) after each epoch, and writes the run directory:

    out_dir/config.json      the resolved FinetuneConfig, task spec, data and init source
    out_dir/metrics.jsonl    one JSON line per epoch (loss, lr, validation metrics, time)
    out_dir/checkpoint.pt    latest full state (model, optimiser, epoch, best, every rank's RNG): resume
    out_dir/model.safetensors + task.json   the best model on validation (else the last)

Modes: ``linear`` / ``attentive`` probes on frozen features; ``full`` fine-tuning with
layer-wise learning-rate decay (block i of depth D gets ``lr * layer_decay**(D - i)``,
the embeddings ``lr * layer_decay**(D + 1)``, the head ``lr``). ``label_fraction`` keeps
a seeded, class-stratified (classification) or grouped share of the training split for
few-shot curves.

Distributed: under ``torchrun`` every process is one rank (the pretraining engine's
helpers, ``echofm.train.distributed``: NCCL on GPUs, gloo on CPUs). A DistributedSampler
shards each epoch's order, DistributedDataParallel averages gradients, the logged loss is
averaged over ranks, validation windows are shared out and their outputs gathered, and
only rank 0 writes files. ``batch_size`` is per process; the learning rate scales with
the global batch. The data order comes from (seed, epoch) and each clip's window from
(seed, epoch, index), so G processes with batch B train like one with batch G*B, and a
resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import random
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from echofm.datasets.base import DatasetIndex, Sample
from echofm.datasets.clips import ClipDataset
from echofm.errors import EchoFMError
from echofm.files import atomic_write
from echofm.model.echofm import VideoEncoder
from echofm.model.heads import POOLINGS
from echofm.precision import autocast
from echofm.tasks.registry import get_task
from echofm.tasks.adapter import MODES, SEG_HEADS, TaskModel, save_task_model
from echofm.tasks.base import EvalOptions, run_windows
from echofm.train.optim import adamw
from echofm.train import checkpoint as ckpt
from echofm.train.distributed import (DistContext, all_gather_objects, all_reduce_sum, barrier, broadcast_object,
                                      init_distributed, shutdown)

log = logging.getLogger("echofm.tasks")
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "echofm-finetune-checkpoint/1"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
# Base learning rates per mode (AdamW, scaled by batch_size / 64 as in MAE fine-tuning).
DEFAULT_LR = {"linear": 1e-2, "attentive": 1e-3, "full": 5e-4}
# The linear segmentation head learns a per-pixel map from thousands of pixels per clip and
# needs a larger step: on phantoms (echofm-tiny, 96 clips, 20 epochs) 1e-2 left it at LV
# Dice 0.43, 0.3 reached 0.84-0.88.
DEFAULT_LR_LINEAR_SEGMENTATION = 0.3


@dataclass
class FinetuneConfig:
    """Everything that defines an adaptation run (saved as ``config.json``).

    task: ef | view | segment | disease. mode: linear | attentive | full.
    target: which label of the samples to learn (default per task: ef, view, label).
    labels: disease label scheme (as4, as3, ar, multiclass, multilabel).
    batch_size: clips per step and process (under torchrun the global batch is
        batch_size x processes).
    lr: base learning rate (None: per mode, see DEFAULT_LR); the applied rate is
        lr * global batch / 64. warmup_epochs: linear warm-up, then cosine decay to 0.
    device: cpu, cuda (under torchrun each rank takes cuda:LOCAL_RANK) or auto.
    period: take every period-th frame of a video into a clip.
    eval_stride / eval_max_windows: evaluation windows (None: back to back, all).
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
    lr: Optional[float] = None
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_epochs: float = 1.0
    label_fraction: float = 1.0
    seed: int = 0
    period: int = 1
    eval_stride: Optional[int] = None
    eval_max_windows: Optional[int] = None
    pooling: Optional[str] = None
    seg_head: Optional[str] = None
    seg_layers: Optional[list[int]] = None
    attentive_queries: int = 1
    precision: str = "fp32"
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
        if self.epochs < 1 or self.batch_size < 1 or self.period < 1:
            raise ValueError("epochs, batch_size and period must be at least 1")

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

    def base_lr(self, world_size: int = 1) -> float:
        """The applied learning rate: lr (or the mode's default) x global batch / 64."""
        if self.lr is not None:
            base = self.lr
        elif self.task == "segment" and self.resolved_seg_head == "linear":
            base = DEFAULT_LR_LINEAR_SEGMENTATION
        else:
            base = DEFAULT_LR[self.mode]
        return base * self.batch_size * world_size / 64

    def eval_options(self) -> EvalOptions:
        return EvalOptions(period=self.period, stride=self.eval_stride, max_windows=self.eval_max_windows,
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


# --- optimisation ----------------------------------------------------------------------

def param_groups(model: TaskModel, base_lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: no decay on norms/biases/embeddings; layer-wise LR decay in full mode."""
    depth = model.cfg.depth
    groups: dict = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder.blocks."):
            layer = int(name.split(".")[2]) + 1
        elif name.startswith("encoder.norm."):
            layer = depth + 1
        elif name.startswith("encoder."):
            layer = 0  # patch embedding, positions, CLS
        else:
            layer = depth + 1  # the head
        no_decay = p.ndim <= 1 or "pos_embed" in name or "cls_token" in name or "queries" in name
        scale = layer_decay ** (depth + 1 - layer)
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr_scale": scale, "weight_decay": 0.0 if no_decay else weight_decay,
                           "lr": base_lr * scale}
        groups[key]["params"].append(p)
    return list(groups.values())


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to base over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# --- the run ---------------------------------------------------------------------------

def _build_encoder(init) -> tuple[VideoEncoder, str]:
    if isinstance(init, VideoEncoder):
        # A copy: adapting must not change the caller's encoder (full mode trains it,
        # the probes switch its gradients off), which may be adapted again.
        return copy.deepcopy(init), "<VideoEncoder object>"
    from echofm.model.weights import load_encoder

    return load_encoder(init), str(init)


def _write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _trim_epochs(path: Path, last_epoch: int) -> None:
    """Keep the records of epochs up to ``last_epoch`` (a resumed run rewrites the ones it repeats)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("epoch", 0)) <= last_epoch:
                kept.append(line)
        except (ValueError, AttributeError):
            continue  # a line cut short by a crash
    text = "".join(k + "\n" for k in kept)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()


class _TaskLoss(torch.nn.Module):
    """The task's loss as a module: DistributedDataParallel synchronises gradients only
    through ``forward``, and a task's loss calls several methods of the model."""

    def __init__(self, model: TaskModel, task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict) -> torch.Tensor:
        return self.task.loss(self.model, batch)


class _ReplayModel(torch.nn.Module):
    """Stands in for a TaskModel inside ``task.evaluate``: returns window outputs computed
    earlier (by all ranks), in the order ``run_windows`` asks for them."""

    def __init__(self, model: TaskModel, outputs: list[torch.Tensor]):
        super().__init__()
        self.cfg, self.spec, self.mode = model.cfg, model.spec, model.mode
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


def finetune(data: DatasetIndex, init, config: FinetuneConfig, out_dir: str | Path,
             resume: bool = False) -> FinetuneResult:
    """Adapt ``init`` (a model source for ``load_encoder`` or a ``VideoEncoder``) to ``config.task``.

    resume: continue from ``out_dir/checkpoint.pt`` (the config must match); without it an
    existing checkpoint there is an error, so a run is never overwritten by accident.
    Under ``torchrun`` call it on every rank (each joins the job's process group).
    """
    ctx = init_distributed(config.device)
    try:
        return _finetune(ctx, data, init, config, Path(out_dir), resume)
    finally:
        shutdown(ctx)


def _seed_rank(seed: int, rank: int) -> None:
    """Distinct, reproducible per-rank streams for what differs between ranks (drop-path)."""
    from echofm.train.data import stable_seed

    s = stable_seed(seed, "finetune-rank", rank)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def _load_resume_state(path: Path) -> dict:
    """The checkpoint's plain data, on the CPU (RNG states must be CPU tensors; load_state_dict
    copies weights to the model's device)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle
        raise EchoFMError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise EchoFMError(f"{path}: not an echofm fine-tuning checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


def _finetune(ctx: DistContext, data: DatasetIndex, init, config: FinetuneConfig, out: Path,
              resume: bool) -> FinetuneResult:
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise EchoFMError(f"{out}: holds a run already ({CHECKPOINT}); pass resume (--resume) or choose another --out")
    device = ctx.device
    # The same seed on every rank: identical head initialisation and label-fraction draw.
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    task = get_task(config.task)
    options = {"labels": config.labels, "seg_layers": config.seg_layers}
    train_all = data.split("train")
    if not train_all:
        raise EchoFMError(f"{data.root}: no samples in the train split (found {data.counts()})")
    spec = task.fit(train_all, config.target, options)
    spec.probe = "attentive" if config.mode == "attentive" else "linear"
    spec.attentive_queries = config.attentive_queries
    spec.pooling, spec.seg_head, spec.probe_norm = (config.resolved_pooling, config.resolved_seg_head,
                                                    config.resolved_probe_norm)
    train = usable_samples(task, train_all, spec, "train")
    strata = [int(task.encode(s, spec)) for s in train] if spec.kind == "multiclass" else None
    train = subsample(train, config.label_fraction, config.seed, strata)
    val = usable_samples(task, data.split("val"), spec, "val") if config.validate else []
    if not train:
        raise EchoFMError(f"{data.root}: no usable training samples for task {config.task}")
    encoder, init_name = _build_encoder(init)
    model = TaskModel(encoder, spec, config.mode).to(device)
    base_lr = config.base_lr(ctx.world_size)
    optimizer = adamw(param_groups(model, base_lr, config.weight_decay, config.layer_decay),
                      lr=base_lr, betas=(0.9, 0.999))
    cfg = model.cfg
    train_set = ClipDataset(train, cfg.num_frames, cfg.img_size, config.period,
                            encode_target=None if spec.kind == "segmentation" else functools.partial(task.encode, spec=spec),
                            segmentation=spec.kind == "segmentation", seed=config.seed)
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    loader = DataLoader(train_set, batch_size=min(config.batch_size, len(sampler)), sampler=sampler,
                        drop_last=False, num_workers=config.num_workers, pin_memory=device.type == "cuda")
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    eval_options = dataclasses.replace(config.eval_options(), device=str(device))
    run_info = {"finetune": dataclasses.asdict(config), "spec": dataclasses.asdict(spec), "init": init_name,
                "world_size": ctx.world_size,
                "data": {"format": data.name, "root": str(data.root), "train": len(train), "val": len(val),
                         "skipped": len(data.skipped), "preprocess": any(s.preprocess for s in data.samples)}}
    start_epoch, best = 0, None
    state = _load_resume_state(ckpt_path) if resume and ckpt_path.exists() else None
    if state is not None:
        saved = json.loads(state["run_info"])
        if saved["finetune"] != json.loads(json.dumps(run_info["finetune"], default=str)):
            raise EchoFMError(f"{ckpt_path}: was written with a different configuration; cannot resume it")
        if saved.get("world_size") != ctx.world_size:
            warnings.warn(f"{ckpt_path}: saved by {saved.get('world_size')} process(es), resumed by {ctx.world_size}: "
                          f"training continues, but the data order differs from an uninterrupted run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best = int(state["epoch"]), json.loads(state["best"]) if state["best"] else None
    if state is not None and ctx.rank < len(state["rng"]):
        ckpt.restore_rng_state(state["rng"][ctx.rank])
    else:
        _seed_rank(config.seed, ctx.rank)
    state = None  # free the loaded tensors

    loss_module: torch.nn.Module = _TaskLoss(model, task)
    if ctx.active:
        # Full fine-tuning for segmentation leaves the encoder's final norm unused (the decoder
        # reads intermediate blocks); DDP must be told, or it waits for those gradients.
        loss_module = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=spec.kind == "segmentation" and not model.frozen)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / CONFIG, run_info)
        _trim_epochs(out / METRICS, start_epoch)  # drop epochs a crash left without a checkpoint
        if start_epoch:
            log.info("resuming %s at epoch %d", out, start_epoch)
    barrier(ctx)

    from tqdm.auto import tqdm

    step = start_epoch * steps_per_epoch
    history: list[dict] = []
    bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True,
               desc=f"{config.task} {config.mode}" + (f" x{ctx.world_size}" if ctx.active else ""),
               disable=True if not (config.progress and ctx.is_main) else None)
    try:
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            model.train()
            t0 = time.time()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            lr = base_lr
            for batch in loader:
                lr = lr_at(step, total_steps, warmup, base_lr)
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                with autocast(config.precision, device):
                    loss = loss_module(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # One collective per step: the ranks' mean loss, which every rank checks, so a
                # NaN stops all of them together instead of leaving the others waiting.
                mean_loss = all_reduce_sum(ctx, loss.detach().double().reshape(())) / ctx.world_size
                value = float(mean_loss)
                if not math.isfinite(value):
                    raise EchoFMError(f"{config.task}: loss became {value} at epoch {epoch + 1}, step {step + 1}; "
                                      f"stopped before the update (lower --lr)")
                optimizer.step()
                loss_sum += mean_loss
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}", refresh=False)
            record = {"epoch": epoch + 1, "step": step, "train_loss": float(loss_sum) / steps_per_epoch, "lr": lr,
                      "seconds": round(time.time() - t0, 2)}
            improved = True  # without a validation split the latest model is the one kept
            if val:
                metrics, _ = evaluate_samples(ctx, task, model, val, eval_options)
                name, value, higher = task.main_metric(metrics)
                record.update({"val": metrics, "val_metric": name, "val_value": value})
                improved = best is None or (value > best["value"] if higher else value < best["value"])
                if improved:
                    best = {"epoch": epoch + 1, "metric": name, "value": value}
            history.append(record)
            _save_epoch(ctx, model, optimizer, out, run_info, record, best, improved, init_name)
            if ctx.is_main:
                log.info("epoch %d: %s", epoch + 1, {k: v for k, v in record.items() if k != "val"})
    finally:
        bar.close()
    barrier(ctx)  # rank 0 has written the model the others read next
    from echofm.tasks.adapter import load_task_model

    return FinetuneResult(run_dir=out, model=load_task_model(out), history=history, best=best)


def _save_epoch(ctx: DistContext, model: TaskModel, optimizer, out: Path, run_info: dict, record: dict,
                best: Optional[dict], improved: bool, init_name: str) -> None:
    """Rank 0 writes the epoch's record, the best model and the checkpoint (atomically),
    with every rank's RNG state; every rank learns whether that worked (a collective)."""
    rng = all_gather_objects(ctx, ckpt.capture_rng_state())
    error: Optional[str] = None
    if ctx.is_main:
        try:
            if improved:
                save_task_model(model, out, run_info["finetune"],
                                {"epoch": record["epoch"], "best": best, "init": init_name})
            _append_jsonl(out / METRICS, record)
            checkpoint = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "epoch": record["epoch"], "best": json.dumps(best), "rng": rng,
                          "run_info": json.dumps(run_info, default=str)}
            atomic_write(out / CHECKPOINT, lambda tmp: torch.save(checkpoint, tmp))
        except Exception as exc:  # report on every rank instead of leaving the others hanging
            error = f"{out}: epoch {record['epoch']} not saved ({type(exc).__name__}: {exc})"
    error = broadcast_object(ctx, error)
    if error:
        raise EchoFMError(error)


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
        saved = getattr(model, "finetune_config", {}) or {}
        options = EvalOptions(period=int(saved.get("period", 1)), stride=saved.get("eval_stride"),
                              max_windows=saved.get("eval_max_windows"))
    ctx = init_distributed(options.device)
    try:
        options = dataclasses.replace(options, device=str(ctx.device))
        model.to(ctx.device)
        out = Path(out_dir) if out_dir is not None else None
        metrics, records = evaluate_samples(ctx, task, model, samples, options,
                                            plots_dir=out if plots and ctx.is_main else None)
        metrics = {"task": spec.task, "split": split, "dataset": data.name, "samples": len(samples), **metrics}
        if out is not None and ctx.is_main:
            _write_json(out / "metrics.json", metrics)
            lines = "".join(json.dumps(r, default=str) + "\n" for r in records)
            atomic_write(out / "predictions.jsonl", lambda tmp: Path(tmp).write_text(lines))
        barrier(ctx)
    finally:
        shutdown(ctx)
    return metrics


def finetune_and_evaluate(data: DatasetIndex, init, config: FinetuneConfig, out_dir: str | Path,
                          split: str = "test") -> dict:
    """Adapt ``init`` then score it on ``split``: the metrics, with ``main_metric`` added.

    Comparing encoders is then a loop, e.g. pretrained vs random init on phantom EF::

        for name, init in {"pretrained": run_dir, "random": "echofm-tiny"}.items():
            scores[name] = finetune_and_evaluate(data, init, cfg, out / name)["main_metric"]["value"]

    Under ``torchrun`` call it on every rank (both stages run distributed).
    """
    out = Path(out_dir)
    ctx = init_distributed(config.device)  # one process group for both stages
    try:
        result = finetune(data, init, config, out / "run")
        metrics = evaluate(result.model, data, split=split, out_dir=out / "eval", options=config.eval_options())
        name, value, higher = get_task(config.task).main_metric(metrics)
        metrics["main_metric"] = {"name": name, "value": value, "higher_is_better": higher}
        if ctx.is_main:
            _write_json(out / "eval" / "metrics.json", metrics)
        barrier(ctx)
    finally:
        shutdown(ctx)
    return metrics
