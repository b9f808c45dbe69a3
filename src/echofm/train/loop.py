"""The one training loop behind pretraining and fine-tuning: ``run_loop``.

What is trained, and how a batch becomes a loss, is the caller's: pretraining passes the
EchoFM model and a step computing its masked-video + periodic loss; fine-tuning passes a
task model, a step computing the task's loss and an end-of-epoch hook that validates.
Everything else happens here, once:

- data order: a DistributedSampler(seed, epoch) over ``(index, item)`` pairs, resumable
  mid-epoch at the exact item; DataLoader workers seeded from (seed, rank, epoch, position);
- optimiser: AdamW over MAE's parameter groups (no weight decay on norms, biases,
  embeddings and tokens; layer-wise LR decay when the caller names the layers);
- schedule: linear warm-up then cosine decay, per optimiser step; the peak rate follows
  the one scaling rule ``lr = blr * effective_batch / 256`` (``optim.scaled_lr``);
- gradient accumulation (micro-batches weighted by their share of the step's items, so k
  micro-batches of b items equal one batch of k*b), gradient clipping, autocast precision,
  optional ``torch.compile``, DistributedDataParallel under ``torchrun`` (gradients
  reduced on the last micro-batch only);
- a non-finite loss stops every rank before the update;
- per-rank seeding; atomic checkpoints holding every rank's RNG state, and exact resume;
- ``metrics.jsonl`` (per step or per epoch) trimmed to the resumed step, TensorBoard when
  installed, progress with percent, rate and ETA; only rank 0 writes.

So G processes with batch B train like one with batch G*B, and a run stopped and resumed
repeats an uninterrupted one. Every call is collective under ``torchrun``.

Why one module over 400 lines: resume is only exact when the data order, the RNG states,
the schedule position and the metrics log are saved and restored by the same code that
advances them; split across modules, each piece would need the others' internals. The
optimiser groups and the schedule, which stand alone, already live in ``train/optim.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from echofm.errors import EchoFMError
from echofm.precision import autocast, resolve_precision
from echofm.train import checkpoint as ckpt
from echofm.train.data import IndexedClips, stable_seed
from echofm.train.distributed import DistContext, all_reduce_sum, barrier
from echofm.train.logging import RunLogger
from echofm.train.optim import LayerOf, WarmupCosine, build_optimizer, scaled_lr

CHECKPOINT_DIR = "checkpoints"

# (training module — DDP-wrapped and/or compiled —, batch, dataset indices [N], epoch)
# -> {"loss": scalar to minimise, other parts: scalars to log}.
Step = Callable[[torch.nn.Module, Any, torch.Tensor, int], dict]
# (epoch number, 1-based; the epoch's record, to extend in place, e.g. with validation).
EpochEnd = Callable[[int, dict], None]
# (the loaded checkpoint) -> None, raising EchoFMError when it cannot continue this run.
ResumeCheck = Callable[[dict], None]


@dataclass
class LoopConfig:
    """How to optimise, whatever is trained. Batch sizes are per process.

    Schedule length: ``steps`` optimiser steps, or ``epochs`` passes when steps is 0.
    Peak rate: ``lr`` when set, else ``scaled_lr(blr, effective batch)``. Warm-up:
    ``warmup_steps``, else ``warmup_epochs`` x steps per epoch, else ``warmup_fraction`` of
    all steps. ``head_only_epochs``: for that many epochs' steps first only the head learns
    (the layer-wise groups below it stay at rate 0; needs ``layer_of``). ``drop_last``: drop an epoch's last incomplete step (pretraining) or train
    on it (fine-tuning on small sets). ``metrics_per``: one metrics.jsonl record per
    optimiser ``step`` or per ``epoch``. ``rank_stream`` names the per-rank RNG streams
    (kept distinct between pretraining and fine-tuning so each repeats its earlier runs).
    """

    name: str = "train"
    epochs: int = 1
    steps: int = 0
    batch_size: int = 8
    accum_steps: int = 1
    blr: float = 1.0e-3
    lr: Optional[float] = None
    min_lr: float = 0.0
    warmup_steps: Optional[int] = None
    warmup_epochs: Optional[float] = None
    warmup_fraction: float = 0.0
    weight_decay: float = 0.05
    layer_decay: float = 1.0
    head_only_epochs: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 0.0
    precision: str = "auto"
    compile: bool = False
    workers: int = 0
    drop_last: bool = True
    seed: int = 0
    rank_stream: str = "rank"
    checkpoint_every: int = 0
    checkpoint_each_epoch: bool = False
    keep_last: int = 3
    progress: bool = True
    print_every: int = 10
    metrics_per: str = "step"
    show: tuple[str, ...] = ("loss",)
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.accum_steps < 1:
            raise ValueError("batch_size and accum_steps must be at least 1")
        if self.steps < 0 or self.epochs < 0 or (self.steps == 0 and self.epochs == 0):
            raise ValueError("set steps or epochs to a positive number")
        if self.clip_grad < 0:
            raise ValueError("clip_grad must be >= 0 (0 disables)")
        if self.head_only_epochs < 0:
            raise ValueError("head_only_epochs must be >= 0 (0: the encoder learns from the first step)")
        if self.metrics_per not in ("step", "epoch"):
            raise ValueError(f"metrics_per must be step or epoch, got {self.metrics_per!r}")

    def peak_lr(self, effective_batch: int) -> float:
        return self.lr if self.lr is not None else scaled_lr(self.blr, effective_batch)


@dataclass
class LoopResult:
    """What a call did: the step reached, per-step and per-epoch records (ranks averaged)."""

    step: int
    total_steps: int
    steps_per_epoch: int
    effective_batch: int
    peak_lr: float
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per step done here
    epochs: list[dict[str, Any]] = field(default_factory=list)  # one per epoch finished here
    checkpoint: Optional[Path] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


class NonFiniteLossError(EchoFMError):
    """The loss became NaN/inf; names the step and every loss part. Checkpoints are kept."""

    def __init__(self, step: int, parts: dict[str, float], checkpoints: Optional[Path]):
        self.step, self.parts = step, parts
        listed = ", ".join(f"{k}={v:.6g}" for k, v in parts.items())
        last = ckpt.list_checkpoints(checkpoints) if checkpoints is not None else []
        kept = f"last checkpoint {last[-1][1]}" if last else "no checkpoint written yet"
        super().__init__(f"non-finite loss at step {step} ({listed}); stopped before the update; "
                         f"{kept} (nothing deleted). Lower the learning rate or enable clip_grad.")


class SkipSampler(Sampler):
    """The first ``skip`` indices of ``inner`` dropped: resumes mid-epoch at the exact item."""

    def __init__(self, inner: Sampler, skip: int):
        self.inner, self.skip = inner, skip

    def __iter__(self) -> Iterator[int]:
        it = iter(self.inner)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return max(len(self.inner) - self.skip, 0)


def seed_rank(seed: int, rank: int, stream: str = "rank") -> None:
    """Distinct, reproducible global RNG streams per rank (drop-path, augmentation)."""
    s = stable_seed(seed, stream, rank)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


@dataclass
class _Plan:
    """Steps and items of one epoch on one rank."""

    items: int  # the sampler's items per rank and epoch
    batch_size: int
    accum: int
    drop_last: bool

    @property
    def micro_batches(self) -> int:
        full, rest = divmod(self.items, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    @property
    def steps(self) -> int:
        if self.drop_last:
            return self.micro_batches // self.accum
        return math.ceil(self.micro_batches / self.accum)

    def step_items(self, into_epoch: int) -> int:
        """Items of optimiser step ``into_epoch`` (the last one may hold fewer)."""
        per_step = self.batch_size * self.accum
        return per_step if self.drop_last else min(per_step, self.items - into_epoch * per_step)

    def step_micro_batches(self, into_epoch: int) -> int:
        return math.ceil(self.step_items(into_epoch) / self.batch_size)


def steps_per_epoch(cfg: LoopConfig, items_per_rank: int) -> int:
    """Optimiser steps in one epoch of ``items_per_rank`` items (the sampler's length)."""
    batch_size = cfg.batch_size if cfg.drop_last else min(cfg.batch_size, items_per_rank)
    return _Plan(items_per_rank, batch_size, cfg.accum_steps, cfg.drop_last).steps


def run_loop(cfg: LoopConfig, ctx: DistContext, model: torch.nn.Module, dataset: Dataset, step_fn: Step, *,
             run_dir: Optional[Path], loss_module: Optional[torch.nn.Module] = None,
             layer_of: Optional[LayerOf] = None, num_layers: int = 0,
             on_epoch_end: Optional[EpochEnd] = None, resume: Union[None, str, dict] = None,
             check_resume: Optional[ResumeCheck] = None, run_config: Optional[dict] = None,
             extra: Optional[dict] = None, stop_after: Optional[int] = None,
             describe: str = "") -> LoopResult:
    """Train ``model`` on ``dataset`` for ``cfg``'s schedule (or until ``stop_after`` steps).

    model: what the optimiser updates and checkpoints hold (its trainable parameters).
    loss_module: the module whose forward the step calls, when it is not ``model`` (it
    must contain it); DDP and compile wrap this one. step_fn: see ``Step``.
    run_dir: where checkpoints (``run_dir/checkpoints/step-N.pt``) and metrics.jsonl go;
    None writes nothing. layer_of / num_layers: layer-wise LR decay (``optim.param_groups``).
    on_epoch_end: called on every rank after each epoch, before its record is written and
    checkpointed. resume: None, ``"auto"``, a checkpoint path, or a state already loaded.
    check_resume: refuses a checkpoint of another run. run_config: plain data saved in each
    checkpoint as ``config``. extra: the caller's plain-data state (e.g. the best epoch so
    far), saved in checkpoints and restored into this dict on resume.
    """
    loss_module = model if loss_module is None else loss_module
    extra = {} if extra is None else extra
    device = ctx.device
    precision = resolve_precision(cfg.precision, device)
    loss_module.to(device)
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR if run_dir is not None else None
    if ckpt_dir is not None and ctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    barrier(ctx)

    items = IndexedClips(dataset)
    sampler = DistributedSampler(items, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=False)
    batch_size = cfg.batch_size if cfg.drop_last else min(cfg.batch_size, len(sampler))
    plan = _Plan(len(sampler), batch_size, cfg.accum_steps, cfg.drop_last)
    steps_per_epoch = plan.steps
    if steps_per_epoch == 0:
        raise EchoFMError(f"the data holds {len(dataset)} items, fewer than one optimiser step needs "
                          f"(batch_size {cfg.batch_size} x accum_steps {cfg.accum_steps} x "
                          f"{ctx.world_size} processes)")
    total = cfg.steps or cfg.epochs * steps_per_epoch
    effective_batch = cfg.batch_size * cfg.accum_steps * ctx.world_size
    peak_lr = cfg.peak_lr(effective_batch)
    if cfg.warmup_steps is not None:
        warmup = cfg.warmup_steps
    elif cfg.warmup_epochs is not None:
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    else:
        warmup = int(cfg.warmup_fraction * total)
    schedule = WarmupCosine(peak_lr, total, warmup, cfg.min_lr, int(round(cfg.head_only_epochs * steps_per_epoch)))
    optimizer = build_optimizer(model, peak_lr, cfg.weight_decay, cfg.betas, cfg.layer_decay, layer_of, num_layers)
    params = [p for p in model.parameters() if p.requires_grad]

    state = resume if isinstance(resume, dict) else (
        ckpt.find_resume(ctx, resume, ckpt_dir) if ckpt_dir is not None else None)
    start = 0
    epoch_sums: dict[str, float] = {}
    if state is not None:
        if check_resume is not None:
            check_resume(state)
        _warn_other_layout(state, ctx.world_size, cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        extra.clear()
        extra.update(json.loads(state.get("extra") or "{}"))
        epoch_sums = dict(state.get("epoch_sums") or {})
    # RNG: per-rank streams; a resumed rank continues exactly where it stopped.
    if state is not None and ctx.rank < len(state["rng"]):
        ckpt.restore_rng_state(state["rng"][ctx.rank])
    else:
        if state is not None:
            warnings.warn(f"no saved RNG state for rank {ctx.rank}; seeding it afresh")
        seed_rank(cfg.seed, ctx.rank, cfg.rank_stream)
    state = None  # free the loaded tensors

    train_module = loss_module
    ddp = None
    if ctx.active:
        ddp = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)
        train_module = ddp
    if cfg.compile:
        train_module = torch.compile(train_module)

    saver = ckpt.RunCheckpointer(ctx, ckpt_dir, model, optimizer, schedule, steps_per_epoch, cfg.keep_last,
                                 run_config or {}, extra,
                                 {"seed": cfg.seed, "batch_size": cfg.batch_size, "accum_steps": cfg.accum_steps})
    logger = RunLogger(run_dir, ctx.is_main, total, start, progress=cfg.progress, print_every=cfg.print_every,
                       name=cfg.name, show=cfg.show, write_steps=cfg.metrics_per == "step")
    logger.message(f"{cfg.name}{': ' + describe if describe else ''}: {total} steps ({steps_per_epoch}/epoch), "
                   f"effective batch {effective_batch}, lr {peak_lr:.3g}, {precision} on {device} x "
                   f"{ctx.world_size}" + (f", resumed at step {start}" if start else ""))
    stop = total if stop_after is None else min(total, stop_after)
    result = LoopResult(step=start, total_steps=total, steps_per_epoch=steps_per_epoch,
                        effective_batch=effective_batch, peak_lr=peak_lr, extra=extra)
    last_saved = start if start else -1
    step = start
    epoch_t0 = time.perf_counter()
    try:
        while step < stop:
            epoch, into_epoch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            items.set_epoch(epoch)
            model.train()
            loader = DataLoader(
                items, batch_size=batch_size, drop_last=cfg.drop_last, num_workers=cfg.workers,
                sampler=SkipSampler(sampler, into_epoch * cfg.accum_steps * batch_size),
                pin_memory=device.type == "cuda",
                generator=torch.Generator().manual_seed(stable_seed(cfg.seed, ctx.rank, epoch, into_epoch)))
            batches = iter(loader)
            for into in range(into_epoch, steps_per_epoch):
                if step >= stop:
                    break
                t0 = time.perf_counter()
                parts, lr, grad_norm = _one_step(cfg, ctx, train_module, ddp, optimizer, schedule, params, plan,
                                                 batches, into, epoch, step, step_fn, precision, ckpt_dir)
                step += 1
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - t0
                record = {**parts, "lr": lr, "grad_norm": grad_norm, "epoch": epoch,
                          "clips_per_s": plan.step_items(into) * ctx.world_size / max(seconds, 1e-9)}
                if device.type == "cuda":
                    record["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                result.history.append({"step": step, **record})
                logger.log(step, record)
                for k, v in parts.items():
                    epoch_sums[k] = epoch_sums.get(k, 0.0) + v
                epoch_done = step % steps_per_epoch == 0
                if epoch_done:
                    done = step // steps_per_epoch
                    summary = {"epoch": done, "step": step,
                               **{f"train_{k}": v / steps_per_epoch for k, v in epoch_sums.items()},
                               "lr": lr, "seconds": round(time.perf_counter() - epoch_t0, 2)}
                    epoch_sums = {}
                    if on_epoch_end is not None:
                        on_epoch_end(done, summary)
                    result.epochs.append(summary)
                    if cfg.metrics_per == "epoch":
                        logger.write(summary)
                    logger.scalars(step, {k: v for k, v in summary.items() if k not in ("epoch", "step")},
                                   f"{cfg.name}/epoch")
                    epoch_t0 = time.perf_counter()
                if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or (
                        epoch_done and cfg.checkpoint_each_epoch):
                    result.checkpoint = saver.save(step, parts, epoch_sums)
                    last_saved = step
        if step != last_saved:
            result.checkpoint = saver.save(step, result.history[-1] if result.history else {}, epoch_sums)
        elif result.checkpoint is None and start and ckpt_dir is not None:
            result.checkpoint = ckpt.checkpoint_path(ckpt_dir, start)
        result.step = step
    finally:
        logger.close()
    return result


def _one_step(cfg: LoopConfig, ctx: DistContext, train_module, ddp, optimizer, schedule: WarmupCosine,
              params: list, plan: _Plan, batches, into: int, epoch: int, step: int, step_fn: Step,
              precision: str, ckpt_dir: Optional[Path]) -> tuple[dict[str, float], float, float]:
    """One optimiser step over its micro-batches; returns (ranks' mean loss parts, lr, grad norm)."""
    device = ctx.device
    n_micro = plan.step_micro_batches(into)
    step_items = plan.step_items(into)
    names: Optional[list[str]] = None
    sums: Optional[torch.Tensor] = None
    for micro in range(n_micro):
        indices, batch = next(batches)
        batch = _to_device(batch, device)
        n = int(indices.shape[0])
        # Each micro-batch's mean loss weighs by its share of the step's items: k micro-batches
        # of b items then give the gradient of one batch of k*b.
        share = 1.0 / n_micro if n * n_micro == step_items else n / step_items
        # Gradients are reduced across ranks only on the last micro-batch.
        sync = ddp.no_sync() if ddp is not None and micro < n_micro - 1 else contextlib.nullcontext()
        with sync:
            with autocast(precision, device):
                out = step_fn(train_module, batch, indices, epoch)
            loss = out["loss"]
            (loss / n_micro if share == 1.0 / n_micro else loss * share).backward()
        if names is None:
            names = list(out)
            sums = torch.zeros(len(names), dtype=torch.float64, device=device)
        # Stays on the device: one host sync per step, not one per loss part.
        sums += torch.stack([out[k].detach().double().reshape(()) for k in names]) * share
    # One collective on every rank: the ranks' mean loss parts (and NaN detection on all).
    means = all_reduce_sum(ctx, sums).cpu() / ctx.world_size
    parts = {k: float(v) for k, v in zip(names, means)}
    if not all(math.isfinite(v) for v in parts.values()):
        raise NonFiniteLossError(step + 1, parts, ckpt_dir)
    max_norm = cfg.clip_grad if cfg.clip_grad > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    lr = schedule.apply(optimizer, step)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return parts, lr, grad_norm


def _to_device(batch, device: torch.device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch


def _warn_other_layout(state: dict, world_size: int, cfg: LoopConfig) -> None:
    sampler = state.get("sampler") or {}
    if (sampler.get("world_size"), sampler.get("batch_size"), sampler.get("accum_steps")) != (
            world_size, cfg.batch_size, cfg.accum_steps):
        warnings.warn(f"{state.get('_path', 'checkpoint')}: saved with world_size={sampler.get('world_size')}, "
                      f"batch_size={sampler.get('batch_size')}, accum_steps={sampler.get('accum_steps')}; "
                      f"now {world_size}/{cfg.batch_size}/{cfg.accum_steps}: training continues, "
                      f"but the data order will differ from an uninterrupted run")
