"""Pretraining engine: exact resume, crash-safe checkpoints, NaN stop, learning, configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from echofm.config import ModelConfig
from echofm.train import checkpoint as ckpt
from echofm.train.config import PretrainConfig


def micro_model(**kw) -> ModelConfig:
    """A model small enough to train for a few steps in a second on 2 CPU cores."""
    base = dict(img_size=32, patch_size=8, num_frames=16, t_patch_size=2, embed_dim=32, depth=2,
                num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, pred_t_dim=8)
    return ModelConfig(**{**base, **kw})


class PeriodicClips(Dataset):
    """Clip i: a disc whose radius beats with period ``periods[i % len]`` frames, plus noise.

    Deterministic per (seed, index). ``phase(i)`` gives each frame's phase in cycles.
    """

    def __init__(self, count: int, frames: int = 16, size: int = 32, periods=(4, 8), seed: int = 0):
        self.count, self.frames, self.size, self.periods, self.seed = count, frames, size, periods, seed

    def __len__(self) -> int:
        return self.count

    def period(self, index: int) -> int:
        return self.periods[index % len(self.periods)]

    def __getitem__(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100003 + index)
        size, period = self.size, self.period(index)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        cy, cx = (size / 2 + (torch.rand(2, generator=g) - 0.5) * size / 4).tolist()
        offset = float(torch.rand((), generator=g)) * 2 * math.pi
        clip = torch.empty(3, self.frames, size, size)
        for f in range(self.frames):
            r = size * (0.25 + 0.12 * math.cos(2 * math.pi * f / period + offset))
            disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()
            clip[:, f] = 0.15 + 0.7 * disc
        return (clip + 0.05 * torch.randn(clip.shape, generator=g)).clamp(0, 1)


def run_config(out: Path, **kw) -> PretrainConfig:
    base = dict(model=micro_model(), model_name="micro", out=str(out), batch_size=4, steps=6,
                blr=0.05, warmup_steps=1, workers=0, checkpoint_every=3, keep_last=2, progress=False,
                device="cpu")
    return PretrainConfig(**{**base, **kw})
