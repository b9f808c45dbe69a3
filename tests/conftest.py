"""Shared test helpers: where the reference fixtures live, small periodic clips."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECHOFM_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official_echofm"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    if not (OFFICIAL / "tiny_reference.npz").exists():
        pytest.skip(f"reference fixtures not found at {OFFICIAL} (set ECHOFM_SHARED)")
    return OFFICIAL


def periodic_clips(n: int, frames: int, size: int, periods, seed: int = 0) -> torch.Tensor:
    """[n, 3, frames, size, size] in [0, 1]: a bright disc whose radius beats with a period."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    clips = torch.zeros(n, 3, frames, size, size)
    for i in range(n):
        period = periods[i % len(periods)]
        cy, cx = size / 2 + torch.rand(2, generator=g) * 4
        for f in range(frames):
            r = size * (0.2 + 0.1 * math.cos(2 * math.pi * f / period))
            disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()
            clips[i, :, f] = 0.2 + 0.6 * disc
    return (clips + 0.05 * torch.rand(clips.shape, generator=g)).clamp(0, 1)
