"""Fine-tuning: the task step and validation, plugged into the one training loop.

``finetune(data, init, config, out_dir)`` trains a ``TaskModel`` on the ``train`` split,
validates on ``val`` (when present) after each epoch, and writes the run directory:

    out_dir/config.json         the resolved FinetuneConfig, task spec, data and init source
    out_dir/metrics.jsonl       one JSON line per epoch (loss, lr, validation metrics, time)
    out_dir/checkpoints/step-N.pt   latest full state (model, optimiser, step, best so far,
                                every rank's RNG): resume
    out_dir/model.safetensors + task.json   the best model on validation (else the last)
    out_dir/tensorboard/        when TensorBoard is installed

Schedule, parameter groups (layer-wise LR decay in ``full`` mode: block i of depth D gets
``lr * layer_decay**(D - i)``, the embeddings ``lr * layer_decay**(D + 1)``, the head
``lr``), accumulation, clipping, precision, compile, seeding, checkpoints, resume and
logging are ``echofm.train.loop``'s, as for pretraining; the learning rate follows the same
rule, ``lr = blr * batch_size * accum_steps * processes / 256``.

Distributed: under ``torchrun`` every process is one rank. The loop shards each epoch's
order and averages gradients; validation windows are shared out and their outputs
gathered (``engine.evaluate_samples``), and only rank 0 writes files. Each clip's window
comes from (seed, epoch, index), so G processes with batch B train like one with batch
G*B, and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from echofm.datasets.base import DatasetIndex
from echofm.contract import InputContract, untrained_contract
from echofm.datasets.clips import ClipDataset
from echofm.errors import EchoFMError
from echofm.model.echofm import EchoFM, VideoEncoder
from echofm.tasks.registry import get_task
from echofm.tasks.adapter import TaskModel, save_task_model
from echofm.tasks.engine import (CONFIG, FinetuneConfig, FinetuneResult, evaluate, evaluate_samples, subsample,
                                 usable_samples, write_json)
from echofm.train import checkpoint as ckpt
from echofm.train import loop
from echofm.train.distributed import DistContext, barrier, broadcast_object, init_distributed, shutdown
from echofm.train.optim import encoder_layer
from echofm.windows import Sampling

log = logging.getLogger("echofm.tasks")
# The single checkpoint file that fine-tuning runs wrote before the shared loop; still resumable.
LEGACY_CHECKPOINT = "checkpoint.pt"
LEGACY_CHECKPOINT_FORMAT = "echofm-finetune-checkpoint/1"


class TaskLoss(torch.nn.Module):
    """The task's loss as a module: DistributedDataParallel synchronises gradients only
    through ``forward``, and a task's loss calls several methods of the model."""

    def __init__(self, model: TaskModel, task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict) -> torch.Tensor:
        return self.task.loss(self.model, batch)


def loop_config(config: FinetuneConfig) -> loop.LoopConfig:
    """The training-loop settings of a fine-tuning run (per-epoch records and checkpoints)."""
    return loop.LoopConfig(
        name="finetune", epochs=config.epochs, batch_size=config.batch_size, accum_steps=config.accum_steps,
        blr=config.resolved_blr, lr=config.lr, warmup_epochs=config.warmup_epochs,
        weight_decay=config.weight_decay, layer_decay=config.layer_decay, head_only_epochs=config.head_only_epochs,
        betas=(0.9, 0.999),
        clip_grad=config.clip_grad, precision=config.precision, compile=config.compile,
        workers=config.num_workers, drop_last=False, seed=config.seed, rank_stream="finetune-rank",
        checkpoint_each_epoch=True, keep_last=1, progress=config.progress, metrics_per="epoch")


def finetune(data: DatasetIndex, init, config: FinetuneConfig, out_dir: str | Path,
             resume: bool = False, stop_after: Optional[int] = None) -> FinetuneResult:
    """Adapt ``init`` (a model source for ``load_encoder`` or a ``VideoEncoder``) to ``config.task``.

    resume: continue from the run's latest checkpoint (the config must match); without it
    an existing checkpoint there is an error, so a run is never overwritten by accident.
    stop_after: stop (with a checkpoint) after this many optimiser steps; the schedule
    still spans all epochs (continue with resume).
    Under ``torchrun`` call it on every rank (each joins the job's process group).
    """
    ctx = init_distributed(config.device)
    try:
        return _finetune(ctx, data, init, config, Path(out_dir), resume, stop_after)
    finally:
        shutdown(ctx)


def _build_encoder(init) -> tuple[VideoEncoder, str, InputContract]:
    """The encoder to adapt, its name, and the input contract it was trained with (an
    ``EchoFM`` or a file: its own; a bare ``VideoEncoder``: every frame, no stated rate)."""
    if isinstance(init, (VideoEncoder, EchoFM)):
        # A copy: adapting must not change the caller's encoder (full mode trains it,
        # the probes switch its gradients off), which may be adapted again.
        encoder = init if isinstance(init, VideoEncoder) else init.encoder
        contract = getattr(init, "contract", None) or untrained_contract(encoder.cfg)
        return copy.deepcopy(encoder), f"<{type(init).__name__} object>", contract
    from echofm.model.weights import load_model

    model = load_model(init, encoder_only=True, strict=True)
    return model.encoder, str(init), model.contract


def trained_contract(init: InputContract, frame_step: Optional[int], train: list) -> InputContract:
    """The contract a fine-tuning trained with: the init model's, or, when ``frame_step``
    overrides it or the init states no rate, the rate of the training videos (their
    ``meta["fps"]``, median) divided by the step (None when they state none)."""
    if frame_step is None and init.fps is not None:
        return init
    step = frame_step or init.frame_step
    rates = [float(s.meta["fps"]) for s in train if s.meta.get("fps")]
    return init.replace(fps=float(np.median(rates)) / step if rates else None, frame_step=step)


def _finetune(ctx: DistContext, data: DatasetIndex, init, config: FinetuneConfig, out: Path, resume: bool,
              stop_after: Optional[int]) -> FinetuneResult:
    has_run = ckpt.list_checkpoints(out / loop.CHECKPOINT_DIR) or (out / LEGACY_CHECKPOINT).exists()
    if has_run and not resume:
        raise EchoFMError(f"{out}: holds a run already ({loop.CHECKPOINT_DIR}/); pass resume (--resume) "
                          f"or choose another --out")
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
    encoder, init_name, init_contract = _build_encoder(init)
    model = TaskModel(encoder, spec, config.mode, trained_contract(init_contract, config.frame_step, train))
    cfg = model.cfg
    train_set = ClipDataset(train, Sampling(init_contract, config.frame_step), cfg.img_size,
                            encode_target=None if spec.kind == "segmentation" else functools.partial(task.encode, spec=spec),
                            segmentation=spec.kind == "segmentation", seed=config.seed)
    eval_options = dataclasses.replace(config.eval_options(), device=str(device))
    run_info = json.loads(json.dumps({
        "finetune": dataclasses.asdict(config), "spec": dataclasses.asdict(spec), "init": init_name,
        "world_size": ctx.world_size,
        "data": {"format": data.name, "root": str(data.root), "train": len(train), "val": len(val),
                 "skipped": len(data.skipped), "preprocess": any(s.preprocess for s in data.samples)}}, default=str))
    settings = loop_config(config)
    settings.find_unused_parameters = spec.kind == "segmentation" and not model.frozen

    def check_resume(state: dict) -> None:
        saved = state["config"].get("finetune", {})
        if not _same_config(saved, run_info["finetune"]):
            raise EchoFMError(f"{state.get('_path', out)}: was written with a different configuration; "
                              f"cannot resume it")
        if state["config"].get("world_size") != ctx.world_size:
            warnings.warn(f"{state.get('_path', out)}: saved by {state['config'].get('world_size')} process(es), "
                          f"resumed by {ctx.world_size}: training continues, but the data order differs from an "
                          f"uninterrupted run")

    state = None
    if resume:
        state = ckpt.find_resume(ctx, "auto", out / loop.CHECKPOINT_DIR)
        if state is None and (out / LEGACY_CHECKPOINT).exists():
            items = len(DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank))
            state = _legacy_state(out / LEGACY_CHECKPOINT, loop.steps_per_epoch(settings, items))

    extra: dict = {}

    def step(module: torch.nn.Module, batch: dict, indices: torch.Tensor, epoch: int) -> dict:
        """The fine-tuning step: the task's loss on a batch."""
        return {"loss": module(batch)}

    def validate_and_keep_best(epoch: int, record: dict) -> None:
        improved = True  # without a validation split the latest model is the one kept
        if val:
            metrics, _ = evaluate_samples(ctx, task, model, val, eval_options)
            name, value, higher = task.main_metric(metrics)
            record.update({"val": metrics, "val_metric": name, "val_value": value})
            best = extra.get("best")
            improved = best is None or (value > best["value"] if higher else value < best["value"])
            if improved:
                extra["best"] = {"epoch": epoch, "metric": name, "value": value}
        if improved:
            _save_best(ctx, model, out, run_info["finetune"], {"epoch": epoch, "best": extra.get("best"),
                                                                "init": init_name})
        if ctx.is_main:
            log.info("epoch %d: %s", epoch, {k: v for k, v in record.items() if k != "val"})

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / CONFIG, run_info)
    barrier(ctx)
    done = loop.run_loop(settings, ctx, model, train_set, step, run_dir=out, loss_module=TaskLoss(model, task),
                         layer_of=encoder_layer(cfg.depth), num_layers=cfg.depth,
                         on_epoch_end=validate_and_keep_best, resume=state, check_resume=check_resume,
                         run_config=run_info, extra=extra, stop_after=stop_after,
                         describe=f"{config.task} {config.mode} on {len(train)} clips")
    barrier(ctx)  # rank 0 has written the model the others read next
    from echofm.tasks.adapter import load_task_model

    saved = load_task_model(out) if (out / "task.json").exists() else model
    return FinetuneResult(run_dir=out, model=saved, history=done.epochs, best=extra.get("best"))


def _save_best(ctx: DistContext, model: TaskModel, out: Path, finetune_config: dict, info: dict) -> None:
    """Rank 0 writes the best model so far; every rank learns whether that worked (a collective)."""
    error: Optional[str] = None
    if ctx.is_main:
        try:
            save_task_model(model, out, finetune_config, info)
        except Exception as exc:  # report on every rank instead of leaving the others hanging
            error = f"{out}: epoch {info['epoch']} model not saved ({type(exc).__name__}: {exc})"
    error = broadcast_object(ctx, error)
    if error:
        raise EchoFMError(error)


def _same_config(saved: dict, now: dict) -> bool:
    """Whether a checkpoint's fine-tuning config is this run's. Configs saved before the one
    LR rule had ``lr`` as the base rate applied x batch / 64: that is ``blr = 4 x lr`` now."""
    if "blr" not in saved:
        saved = dict(saved)
        old = saved.pop("lr", None)
        saved["blr"], saved["lr"] = (None if old is None else 4 * old), None
    keys = set(saved) & set(now)
    return all(saved[k] == now[k] for k in keys)


def _legacy_state(path: Path, steps_per_epoch: int) -> dict:
    """A checkpoint of the fine-tuning code before the shared loop, as the loop's state.

    It was written at the end of an epoch: the step is that epoch's last.
    """
    try:
        old = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EchoFMError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(old, dict) or old.get("format") != LEGACY_CHECKPOINT_FORMAT:
        raise EchoFMError(f"{path}: not an echofm fine-tuning checkpoint (expected format "
                          f"{LEGACY_CHECKPOINT_FORMAT!r})")
    best = json.loads(old["best"]) if old.get("best") else None
    run_info = json.loads(old["run_info"])
    return {"_path": str(path), "step": int(old["epoch"]) * steps_per_epoch, "model": old["model"],
            "optimizer": old["optimizer"], "rng": old["rng"], "config": run_info,
            "sampler": {"world_size": run_info.get("world_size"), "batch_size": run_info["finetune"]["batch_size"],
                        "accum_steps": 1},
            "extra": json.dumps({"best": best}), "epoch_sums": {}}


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
            write_json(out / "eval" / "metrics.json", metrics)
        barrier(ctx)
    finally:
        shutdown(ctx)
    return metrics
