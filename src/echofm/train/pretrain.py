"""Pretraining: the EchoFM step and the run around it, one process or one rank of ``torchrun``.

``pretrain(cfg)`` builds the model and data, then hands them with its step (the masked
reconstruction + periodic contrastive loss of a batch) to the one training loop
(``echofm.train.loop.run_loop``: schedule, accumulation, clipping, checkpoints, resume,
logging), and exports the model with ``save_model(model, RUN/model)`` when the schedule is done.

Determinism: the data order comes from DistributedSampler(seed, epoch); each clip's
masking noise from (seed, epoch, dataset index); DataLoader workers from
(seed, rank, epoch, position). So a resumed run repeats an uninterrupted one exactly,
and G processes with batch B see the same clips with the same masks as one process with
batch G*B.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from echofm.errors import EchoFMError
from echofm.model import EchoFM, save_model
from echofm.train import loop
from echofm.train.config import CONFIG_NAME, PretrainConfig
from echofm.train.data import build_pretrain_dataset, check_clip, stable_seed
from echofm.train.distributed import DistContext, barrier, init_distributed, shutdown
from echofm.train.loop import CHECKPOINT_DIR, LoopConfig, NonFiniteLossError  # noqa: F401 (public names)

LOSS_PARTS = ("loss", "recon", "triplet", "cycle", "triplet_active")
MODEL_DIR = "model"


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


def mask_noise(indices: torch.Tensor, epoch: int, seed: int, width: int) -> torch.Tensor:
    """Masking noise [N, width], row i a function of (seed, epoch, dataset index i) only.

    This is what makes masks independent of batch composition, rank and resume point.
    """
    rows = []
    for index in indices.tolist():
        g = torch.Generator().manual_seed(stable_seed(seed, epoch, "mask", int(index)))
        rows.append(torch.rand(width, generator=g))
    return torch.stack(rows)


def loop_config(cfg: PretrainConfig) -> LoopConfig:
    """The training-loop settings of a pretraining run (no layer decay, every step logged)."""
    return LoopConfig(
        name="pretrain", epochs=cfg.epochs, steps=cfg.steps, batch_size=cfg.batch_size,
        accum_steps=cfg.accum_steps, blr=cfg.blr, lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
        warmup_fraction=cfg.warmup_fraction, weight_decay=cfg.weight_decay, betas=cfg.betas,
        clip_grad=cfg.clip_grad, precision=cfg.precision, compile=cfg.compile, workers=cfg.workers,
        drop_last=True, seed=cfg.seed, rank_stream="rank", checkpoint_every=cfg.checkpoint_every,
        keep_last=cfg.keep_last, progress=cfg.progress, metrics_per="step", show=("loss", "recon", "triplet", "cycle"))


def training_contract(model: EchoFM, dataset, frame_step: int):
    """The input contract a pretraining run trained with: its clips' frames and side, the
    frame rate inside them (``train.data.clip_fps``; None when a source does not state one)
    and its frame step. The sector convention is kept from where the model started."""
    from echofm.train.data import clip_fps

    return model.contract.replace(num_frames=model.cfg.num_frames, image_size=model.cfg.img_size,
                                  fps=clip_fps(dataset), frame_step=frame_step)


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
    # Identical initial weights on every rank (DDP would broadcast them anyway).
    torch.manual_seed(cfg.seed)
    if cfg.init:
        from echofm.model.weights import load_model

        model = load_model(cfg.init, config_overrides=None)
        if model.cfg.to_dict() != cfg.model.to_dict():
            raise EchoFMError(f"{cfg.init}: its model config differs from the run's; use its config")
    else:
        model = EchoFM(cfg.model)
    model.set_activation_checkpointing(cfg.activation_checkpointing)

    if dataset is None:
        dataset = build_pretrain_dataset(cfg.data, cfg.model, cfg.seed, cfg.frame_step, cfg.augment)
    check_clip(dataset[0], cfg.model, f"data {', '.join(cfg.data) or type(dataset).__name__}")
    noise_width = cfg.model.num_spatial if cfg.model.masking == "consistent" else cfg.model.num_patches

    def step(module: torch.nn.Module, clips: torch.Tensor, indices: torch.Tensor, epoch: int) -> dict:
        """The pretraining step: masked reconstruction + periodic contrast of a batch of clips."""
        noise = mask_noise(indices, epoch, cfg.seed, noise_width).to(clips.device)
        out = module(clips, noise=noise)
        return {k: getattr(out, k) for k in LOSS_PARTS}

    def check_resume(state: dict) -> None:
        saved = state["config"]
        if saved.get("model") != cfg.model.to_dict():
            diff = sorted(k for k, v in cfg.model.to_dict().items() if saved.get("model", {}).get(k) != v)
            raise EchoFMError(f"{state.get('_path', 'checkpoint')}: checkpoint model differs from the config "
                              f"({', '.join(diff)}); resume with the run's own config.yaml")

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / CONFIG_NAME)
    done = loop.run_loop(loop_config(cfg), ctx, model, dataset, step, run_dir=run_dir, resume=resume,
                         check_resume=check_resume, run_config=cfg.to_dict(), stop_after=stop_after,
                         describe=f"{cfg.model_name} on {len(dataset)} clips")
    result = PretrainResult(run_dir=run_dir, step=done.step, total_steps=done.total_steps, history=done.history,
                            checkpoint=done.checkpoint, model=model)
    if done.finished:
        result.model_dir = run_dir / MODEL_DIR
        if ctx.is_main:
            model.contract = training_contract(model, dataset, cfg.frame_step)
            save_model(model, result.model_dir, metadata={"pretrain_steps": done.step, "data": cfg.data,
                                                   "model_name": cfg.model_name})
            print(f"done: {done.step} steps; model exported to {result.model_dir}", file=sys.stderr, flush=True)
        barrier(ctx)
    return result
