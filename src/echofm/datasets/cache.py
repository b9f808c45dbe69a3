"""Pretraining clips from a prepared cache (`echofm prepare` output).

Each item is a float tensor ``[3, T, H, W]`` in [0, 1] (grayscale repeated to three
channels): a window of `num_frames` frames `frame_step` apart (``echofm.windows``), read
through a memory map so only those frames leave the disk, resized and augmented by the
same transforms as preprocessing uses.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from echofm.errors import EchoFMError
from echofm.preprocess.transforms import Augment, AugmentConfig
from echofm.windows import WindowSpec, centred_window, random_window, window_clip


class CacheDataset(Dataset):
    """Clips of a prepared cache folder.

    num_frames, frame_step: the window (``echofm.windows.WindowSpec``; short clips are padded
    with their last frame).
    size: output side; None keeps the stored size.
    augment: an AugmentConfig (or True for the defaults) to augment; None/False for none.
    random_window: draw the window start at random (training) or centre it (evaluation).
    seed: base seed; item i of epoch e is reproducible via `set_epoch`.
    fps: the frame rate inside the clips (the manifest's median fps / frame_step; None when
    the manifest states none).
    """

    def __init__(self, root: str | Path, num_frames: int = 16, frame_step: int = 2, size: Optional[int] = None,
                 augment: AugmentConfig | bool | None = None, random_window: bool = True, seed: int = 0):
        self.root = Path(root)
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise EchoFMError(f"{self.root}: no manifest.csv (is this an `echofm prepare` output?)")
        with open(manifest, newline="", encoding="utf-8") as fh:
            self.rows = list(csv.DictReader(fh))
        if not self.rows:
            raise EchoFMError(f"{manifest}: no clips")
        self.spec, self.size = WindowSpec(num_frames=num_frames, frame_step=frame_step), size
        rates = [float(r["fps"]) for r in self.rows if r.get("fps") not in (None, "")]
        self.fps = float(np.median(rates)) / frame_step if rates else None
        if augment is True:
            augment = AugmentConfig()
        self.augment = Augment(augment) if augment else None
        self.random_window = random_window
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new windows/augmentations each epoch (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        """float ``[3, num_frames, size, size]`` in [0, 1]."""
        row = self.rows[index]
        frames = np.load(self.root / row["file"], mmap_mode="r")
        seed = (self.seed, self.epoch, index)
        total = frames.shape[0]
        idx = (random_window(total, self.spec, np.random.default_rng(seed)) if self.random_window
               else centred_window(total, self.spec))
        clip = window_clip(frames, idx, self.size)
        if self.augment is not None:
            generator = torch.Generator().manual_seed(hash(seed) & 0x7FFFFFFF)
            clip = self.augment(clip, generator)
        return clip
