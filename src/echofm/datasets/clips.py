"""Model-ready clips from task samples: frame windows, resizing, masks.

Layouts: stored frames uint8 ``[T, H, W]`` / ``[T, H, W, 3]``; model clips float
``[3, F, S, S]`` in [0, 1] (batched by the loader to ``[N, 3, F, S, S]``); label maps
long ``[F, S, S]`` with ``IGNORE`` (255) on frames without labels.

A window is ``num_frames`` frame indices ``start + period * k``. Indices past the end of
a short video repeat its last frame (a still image is its one frame repeated).
Training takes one random window per sample (for segmentation, one that contains a
labelled frame), drawn from (seed, epoch, sample index) only, so the choice does not
depend on which process or loader worker reads the sample, nor on the order it is read
in (one process and a DDP job see the same windows; a resumed run repeats them);
evaluation takes windows covering the whole video (``covering_starts``), as
EchoNet-Dynamic does for its video-level estimate.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from echofm.datasets.base import Sample
from echofm.labels import IGNORE


def to_model_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [T, H, W] or [T, H, W, 3] -> float [3, T, size, size] in [0, 1] (bilinear, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    x = x.unsqueeze(-1).expand(*x.shape, 3) if x.ndim == 3 else x  # grey -> 3 equal channels
    x = x.permute(0, 3, 1, 2)  # [T, 3, H, W]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1).permute(1, 0, 2, 3).contiguous()


def resize_labels(labels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 label maps [K, H, W] -> long [K, size, size] (nearest neighbour: no invented classes)."""
    x = torch.from_numpy(np.ascontiguousarray(labels)).float().unsqueeze(1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x.squeeze(1).long()


def window_indices(total: int, num_frames: int, period: int, start: int) -> np.ndarray:
    """The window's frame indices [num_frames], clamped into [0, total - 1]."""
    return np.clip(start + period * np.arange(num_frames), 0, max(total - 1, 0))


def covering_starts(total: int, num_frames: int, period: int, stride: Optional[int] = None) -> list[int]:
    """Window starts covering every frame of a video: every ``stride`` frames (default: one
    window span, i.e. back to back) and a last window ending on the last frame."""
    span = (num_frames - 1) * period + 1
    if total <= span:
        return [0]
    stride = stride or span
    starts = list(range(0, total - span + 1, stride))
    if starts[-1] != total - span:
        starts.append(total - span)
    return starts


def labelled_window_start(total: int, num_frames: int, period: int, frame: int, rng: random.Random) -> int:
    """A random window start such that ``frame`` is one of the window's frames."""
    span = (num_frames - 1) * period + 1
    # Positions k of the labelled frame in the window that keep the window inside the video;
    # a video shorter than a window allows any position with a non-negative start.
    fits = [k for k in range(num_frames) if frame - k * period >= 0 and frame - k * period + span <= total]
    fits = fits or [k for k in range(num_frames) if frame - k * period >= 0]
    return frame - rng.choice(fits) * period


class ClipDataset(Dataset):
    """One random window per sample (training) with its encoded target.

    Items: ``{"clips": [3, F, S, S], "target": tensor, "index": int}``; with
    ``segmentation`` also ``"masks": long [F, S, S]`` (IGNORE where a frame is unlabelled).
    encode_target: Sample -> tensor (the task's label encoding); None for segmentation.
    The window of item i is drawn from (seed, epoch, i); ``set_epoch`` moves to the next epoch.
    """

    def __init__(self, samples: list[Sample], num_frames: int, size: int, period: int = 1,
                 encode_target: Optional[Callable[[Sample], torch.Tensor]] = None,
                 segmentation: bool = False, seed: int = 0):
        self.samples, self.num_frames, self.size, self.period = samples, num_frames, size, period
        self.encode_target, self.segmentation = encode_target, segmentation
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        frames, _ = sample.load_frames(self.size)
        T = frames.shape[0]
        rng = random.Random(f"clip-window/{self.seed}/{self.epoch}/{i}")  # str seeds hash the same everywhere
        item: dict = {"index": i}
        if self.segmentation:
            masks = sample.load_masks(frames.shape[1], frames.shape[2])
            labelled = sorted(f for f in masks if 0 <= f < T)
            if not labelled:
                raise ValueError(f"{sample.path}: no labelled frame inside its {T} frames")
            start = labelled_window_start(T, self.num_frames, self.period, rng.choice(labelled), rng)
            idx = window_indices(T, self.num_frames, self.period, start)
            item["masks"] = window_masks(masks, idx, frames.shape[1], frames.shape[2], self.size)
        else:
            start = rng.randrange(max(1, T - (self.num_frames - 1) * self.period))
            idx = window_indices(T, self.num_frames, self.period, start)
        item["clips"] = to_model_frames(frames[idx], self.size)
        if self.encode_target is not None:
            item["target"] = self.encode_target(sample)
        return item


def window_masks(masks: dict[int, np.ndarray], idx: np.ndarray, height: int, width: int, size: int) -> torch.Tensor:
    """long [F, S, S] label maps of a window's frames, IGNORE on frames without labels.

    A frame index that repeats (clamped past the end) keeps its label only once, so a
    repeated last frame is not counted several times in the loss.
    """
    stack = np.full((len(idx), height, width), IGNORE, dtype=np.uint8)
    seen = set()
    for k, f in enumerate(idx.tolist()):
        if f in masks and f not in seen:
            stack[k] = masks[f]
            seen.add(f)
    return resize_labels(stack, size)


class VideoWindows(Dataset):
    """All covering windows of each sample (evaluation); for segmentation every frame
    is in at least one window (windows are repeated at each of the ``period`` phases).

    Items: ``{"clips": [W, 3, F, S, S], "indices": long [W, F] frame indices, "index": int,
    "num_frames": T}``; with ``segmentation`` also ``"masks": {frame: long [S, S]}``.
    Use with ``batch_size=1`` and ``collate_fn=lambda b: b[0]``.
    """

    def __init__(self, samples: list[Sample], num_frames: int, size: int, period: int = 1,
                 stride: Optional[int] = None, segmentation: bool = False, max_windows: Optional[int] = None):
        self.samples, self.num_frames, self.size, self.period = samples, num_frames, size, period
        self.stride, self.segmentation, self.max_windows = stride, segmentation, max_windows

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        frames, fps = sample.load_frames(self.size)
        T = frames.shape[0]
        starts = covering_starts(T, self.num_frames, self.period, self.stride)
        if self.max_windows and len(starts) > self.max_windows:
            keep = np.linspace(0, len(starts) - 1, self.max_windows).round().astype(int)
            starts = [starts[k] for k in keep]
        if self.segmentation and self.period > 1:
            # Every frame needs a prediction: shift each window by 0 .. period-1 frames.
            starts = sorted({s + o for s in starts for o in range(self.period) if s + o < T})
        windows = np.stack([window_indices(T, self.num_frames, self.period, s) for s in starts])
        resized = to_model_frames(frames, self.size)  # [3, T, S, S]: resize once, then gather windows
        clips = torch.stack([resized[:, w] for w in windows])
        item = {"clips": clips, "indices": torch.from_numpy(windows), "index": i, "num_frames": T, "fps": fps}
        if self.segmentation:
            masks = sample.load_masks(frames.shape[1], frames.shape[2])
            keys = sorted(f for f in masks if 0 <= f < T)
            if keys:
                resized_masks = resize_labels(np.stack([masks[f] for f in keys]), self.size)
                item["masks"] = dict(zip(keys, resized_masks))
            else:
                item["masks"] = {}
        return item


def first_item(batch: list) -> dict:
    """collate_fn for ``VideoWindows`` (one video per batch)."""
    return batch[0]
