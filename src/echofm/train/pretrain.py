"""The pretraining loop: one process on CPU/GPU, or one rank of a ``torchrun`` job.

``pretrain(cfg)`` builds the model, data, optimiser and schedule, resumes if asked,
trains for ``cfg.steps`` optimiser steps (or ``cfg.epochs``), checkpoints, and exports
the model with ``save_model(model, RUN/model)``.

Determinism: the data order comes from DistributedSampler(seed, epoch); each clip's
masking noise from (seed, epoch, dataset index); DataLoader workers from
(seed, rank, epoch, position). So a resumed run repeats an uninterrupted one exactly,
and G processes with batch B see the same clips with the same masks as one process with
batch G*B.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from echofm.errors import EchoFMError
from echofm.model import EchoFM, save_model
from echofm.precision import autocast, resolve_precision
from echofm.train import checkpoint as ckpt
from echofm.train.config import CONFIG_NAME, PretrainConfig
from echofm.train.data import IndexedClips, build_pretrain_dataset, check_clip, stable_seed
from echofm.train.distributed import (DistContext, all_gather_objects, all_reduce_sum, barrier,
                                      broadcast_object, init_distributed, shutdown)
from echofm.train.logging import RunLogger
from echofm.train.optim import WarmupCosine, build_optimizer, scaled_lr

LOSS_PARTS = ("loss", "recon", "triplet", "cycle", "triplet_active")
CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"


class NonFiniteLossError(EchoFMError):
    """The loss became NaN/inf; names the step and every loss part. Checkpoints are kept."""

    def __init__(self, step: int, parts: dict[str, float], checkpoints: Path):
        self.step, self.parts = step, parts
        listed = ", ".join(f"{k}={v:.6g}" for k, v in parts.items())
        last = ckpt.list_checkpoints(checkpoints)
        kept = f"last checkpoint {last[-1][1]}" if last else "no checkpoint written yet"
        super().__init__(f"non-finite loss at step {step} ({listed}); stopped before the update; "
                         f"{kept} (nothing deleted). Lower the learning rate or enable clip_grad.")


@dataclass
class PretrainResult:
    """What a run did: steps done, per-step records (ranks averaged), where things went."""

    run_dir: Path
    step: int
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    model_dir: Optional[Path] = None  # set when the run finished and exported the model
    model: Optional[EchoFM] = None


class SkipSampler(Sampler):
    """The first ``skip`` indices of ``inner`` dropped: resumes mid-epoch at the exact clip."""

    def __init__(self, inner: Sampler, skip: int):
        self.inner, self.skip = inner, skip

    def __iter__(self) -> Iterator[int]:
        it = iter(self.inner)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return max(len(self.inner) - self.skip, 0)


def mask_noise(indices: torch.Tensor, epoch: int, seed: int, width: int) -> torch.Tensor:
    """Masking noise [N, width], row i a function of (seed, epoch, dataset index i) only.

    This is what makes masks independent of batch composition, rank and resume point.
    """
    rows = []
    for index in indices.tolist():
        g = torch.Generator().manual_seed(stable_seed(seed, epoch, "mask", int(index)))
        rows.append(torch.rand(width, generator=g))
    return torch.stack(rows)


def seed_rank(seed: int, rank: int) -> None:
    """Distinct, reproducible global RNG streams per rank (drop-path, augmentation)."""
    s = stable_seed(seed, "rank", rank)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    import random

    random.seed(s)


def find_resume(ctx: DistContext, resume: Optional[str], ckpt_dir: Path) -> Optional[dict]:
    """Load the state to resume from: ``auto`` (latest good in the run) or a file path.

    Rank 0 chooses, every rank loads the same file (a shared filesystem is assumed).
    """
    if not resume:
        return None
    chosen: Optional[str] = None
    if ctx.is_main:
        if resume == "auto":
            ckpt.remove_stale_temp_files(ckpt_dir)
            found = ckpt.latest_good_checkpoint(ckpt_dir)
            chosen = str(found[0]) if found else None
        else:
            chosen = str(Path(resume).expanduser())
    chosen = broadcast_object(ctx, chosen)
    if chosen is None:
        return None
    state = ckpt.load_checkpoint(Path(chosen))
    state["_path"] = chosen
    return state


def _check_compatible(cfg: PretrainConfig, state: dict, world_size: int) -> None:
    saved = state["config"]
    if saved.get("model") != cfg.model.to_dict():
        diff = sorted(k for k, v in cfg.model.to_dict().items() if saved.get("model", {}).get(k) != v)
        raise EchoFMError(f"{state['_path']}: checkpoint model differs from the config "
                          f"({', '.join(diff)}); resume with the run's own config.yaml")
    sampler = state["sampler"]
    if (sampler.get("world_size"), sampler.get("batch_size"), sampler.get("accum_steps")) != (
            world_size, cfg.batch_size, cfg.accum_steps):
        warnings.warn(f"{state['_path']}: saved with world_size={sampler.get('world_size')}, "
                      f"batch_size={sampler.get('batch_size')}, accum_steps={sampler.get('accum_steps')}; "
                      f"now {world_size}/{cfg.batch_size}/{cfg.accum_steps}: training continues, "
                      f"but the data order will differ from an uninterrupted run")


def pretrain(cfg: PretrainConfig, *, dataset: Optional[Dataset] = None, resume: Optional[str] = None,
             stop_after: Optional[int] = None) -> PretrainResult:
    """Run (or resume) pretraining as described by ``cfg``; call it on every rank.

    dataset: clips [3, F, H, W] in [0, 1] to use instead of ``cfg.data`` (Python users, tests).
    resume: ``"auto"`` (latest good checkpoint in the run dir; a fresh start when there is
    none) or a checkpoint path. stop_after: stop (with a checkpoint) once this many steps
    are done, e.g. to fit a job time limit; the schedule still spans all steps.
    """
    if not cfg.out:
        raise EchoFMError("no run directory: set out (--out RUN)")
    ctx = init_distributed(cfg.device)
    try:
        return _train(cfg, ctx, dataset, resume, stop_after)
    finally:
        shutdown(ctx)


def _train(cfg: PretrainConfig, ctx: DistContext, dataset: Optional[Dataset], resume: Optional[str],
           stop_after: Optional[int]) -> PretrainResult:
    run_dir = Path(cfg.out).expanduser()
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if ctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    device = ctx.device
    precision = resolve_precision(cfg.precision, device)

    # Identical initial weights on every rank (DDP would broadcast them anyway).
    torch.manual_seed(cfg.seed)
    if cfg.init:
        from echofm.model.weights import load_model

        model = load_model(cfg.init, config_overrides=None)
        if model.cfg.to_dict() != cfg.model.to_dict():
            raise EchoFMError(f"{cfg.init}: its model config differs from the run's; use its config")
    else:
        model = EchoFM(cfg.model)
    model.to(device)
    model.set_activation_checkpointing(cfg.activation_checkpointing)

    if dataset is None:
        dataset = build_pretrain_dataset(cfg.data, cfg.model, cfg.seed, cfg.frame_stride, cfg.augment)
    check_clip(dataset[0], cfg.model, f"data {', '.join(cfg.data) or type(dataset).__name__}")
    clips = IndexedClips(dataset)
    sampler = DistributedSampler(clips, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    steps_per_epoch = len(sampler) // cfg.batch_size // cfg.accum_steps
    if steps_per_epoch == 0:
        raise EchoFMError(f"the data holds {len(dataset)} clips, fewer than one optimiser step needs "
                          f"(batch_size {cfg.batch_size} x accum_steps {cfg.accum_steps} x "
                          f"{ctx.world_size} processes)")
    total = cfg.steps or cfg.epochs * steps_per_epoch
    effective_batch = cfg.batch_size * cfg.accum_steps * ctx.world_size
    peak_lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.blr, effective_batch)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_fraction * total)
    schedule = WarmupCosine(peak_lr, total, warmup, cfg.min_lr)
    optimizer = build_optimizer(model, peak_lr, cfg.weight_decay, cfg.betas)

    state = find_resume(ctx, resume, ckpt_dir)
    start = 0
    if state is not None:
        _check_compatible(cfg, state, ctx.world_size)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    # RNG: per-rank streams; a resumed rank continues exactly where it stopped.
    if state is not None and ctx.rank < len(state["rng"]):
        ckpt.restore_rng_state(state["rng"][ctx.rank])
    else:
        if state is not None:
            warnings.warn(f"no saved RNG state for rank {ctx.rank}; seeding it afresh")
        seed_rank(cfg.seed, ctx.rank)
    state = None  # free the loaded tensors

    train_module: torch.nn.Module = model
    ddp = None
    if ctx.active:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        train_module = ddp
    if cfg.compile:
        train_module = torch.compile(train_module)

    if ctx.is_main:
        cfg.save(run_dir / CONFIG_NAME)
    logger = RunLogger(run_dir, ctx.is_main, total, start, progress=cfg.progress)
    logger.message(f"pretraining {cfg.model_name} on {len(dataset)} clips: {total} steps "
                   f"({steps_per_epoch}/epoch), effective batch {effective_batch}, lr {peak_lr:.3g}, "
                   f"{precision} on {device} x {ctx.world_size}" + (f", resumed at step {start}" if start else ""))
    noise_width = cfg.model.num_spatial if cfg.model.masking == "consistent" else cfg.model.num_patches
    stop = total if stop_after is None else min(total, stop_after)
    result = PretrainResult(run_dir=run_dir, step=start, total_steps=total, model=model)
    last_saved = start if start else -1
    step = start
    try:
        while step < stop:
            epoch, into_epoch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            clips.set_epoch(epoch)
            loader = DataLoader(
                clips, batch_size=cfg.batch_size, drop_last=True, num_workers=cfg.workers,
                sampler=SkipSampler(sampler, into_epoch * cfg.accum_steps * cfg.batch_size),
                pin_memory=device.type == "cuda",
                generator=torch.Generator().manual_seed(stable_seed(cfg.seed, ctx.rank, epoch, into_epoch)))
            batches = iter(loader)
            for _ in range(into_epoch, steps_per_epoch):
                if step >= stop:
                    break
                t0 = time.perf_counter()
                sums = torch.zeros(len(LOSS_PARTS), dtype=torch.float64, device=device)
                for micro in range(cfg.accum_steps):
                    indices, batch = next(batches)
                    batch = batch.to(device, non_blocking=True)
                    noise = mask_noise(indices, epoch, cfg.seed, noise_width).to(device)
                    # Gradients are reduced across ranks only on the last micro-batch.
                    sync = ddp.no_sync() if ddp is not None and micro < cfg.accum_steps - 1 \
                        else contextlib.nullcontext()
                    with sync:
                        with autocast(precision, device):
                            out = train_module(batch, noise=noise)
                        (out.loss / cfg.accum_steps).backward()
                    # Stays on the device: one host sync per step, not one per loss part.
                    sums += torch.stack([getattr(out, k).detach().double() for k in LOSS_PARTS])
                # One collective on every rank: the ranks' mean loss parts (and NaN detection).
                means = all_reduce_sum(ctx, sums / cfg.accum_steps).cpu() / ctx.world_size
                parts = {k: float(v) for k, v in zip(LOSS_PARTS, means)}
                if not all(math.isfinite(v) for v in parts.values()):
                    raise NonFiniteLossError(step + 1, parts, ckpt_dir)
                max_norm = cfg.clip_grad if cfg.clip_grad > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                lr = schedule.apply(optimizer, step)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - t0
                record = {**parts, "lr": lr, "grad_norm": grad_norm, "epoch": epoch,
                          "clips_per_s": effective_batch / max(seconds, 1e-9)}
                if device.type == "cuda":
                    record["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                result.history.append({"step": step, **record})
                logger.log(step, record)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    result.checkpoint = _save(ctx, cfg, model, optimizer, schedule, step,
                                              steps_per_epoch, ckpt_dir, parts)
                    last_saved = step
        if step != last_saved:
            result.checkpoint = _save(ctx, cfg, model, optimizer, schedule, step, steps_per_epoch,
                                      ckpt_dir, result.history[-1] if result.history else {})
        elif result.checkpoint is None and start:
            result.checkpoint = ckpt.checkpoint_path(ckpt_dir, start)
        result.step = step
        if step >= total:
            result.model_dir = run_dir / MODEL_DIR
            if ctx.is_main:
                save_model(model, result.model_dir, metadata={"pretrain_steps": step, "data": cfg.data,
                                                              "model_name": cfg.model_name})
                logger.message(f"done: {step} steps; model exported to {result.model_dir}")
            barrier(ctx)
    finally:
        logger.close()
    return result


def _save(ctx: DistContext, cfg: PretrainConfig, model: EchoFM, optimizer, schedule: WarmupCosine,
          step: int, steps_per_epoch: int, ckpt_dir: Path, last: dict) -> Path:
    """Checkpoint on rank 0 with every rank's RNG state; all ranks learn whether it worked."""
    rng = all_gather_objects(ctx, ckpt.capture_rng_state())  # a collective: every rank
    path = ckpt.checkpoint_path(ckpt_dir, step)
    error: Optional[str] = None
    if ctx.is_main:
        epoch, into_epoch = divmod(step, steps_per_epoch)
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": {"kind": "warmup_cosine", "peak": schedule.peak, "total_steps": schedule.total_steps,
                         "warmup_steps": schedule.warmup_steps, "floor": schedule.floor},
            "scaler": None,  # bf16 autocast needs no loss scaling
            "rng": rng,
            "sampler": {"epoch": epoch, "steps_into_epoch": into_epoch, "seed": cfg.seed,
                        "world_size": ctx.world_size, "batch_size": cfg.batch_size,
                        "accum_steps": cfg.accum_steps},
            "config": cfg.to_dict(),
            "metrics": {k: v for k, v in last.items() if isinstance(v, (int, float))},
        }
        try:
            ckpt.save_checkpoint(path, state)
            ckpt.prune_checkpoints(ckpt_dir, cfg.keep_last)
        except Exception as exc:  # report on every rank instead of leaving the others hanging
            error = f"{path}: checkpoint not written ({type(exc).__name__}: {exc})"
    error = broadcast_object(ctx, error)
    if error:
        raise EchoFMError(error)
    return path
