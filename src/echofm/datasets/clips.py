"""Model-ready clips from task samples: training windows, evaluation windows, label maps.

Layouts: stored frames uint8 ``[T, H, W]`` / ``[T, H, W, 3]``; model clips float
``[3, F, S, S]`` in [0, 1] (batched by the loader to ``[N, 3, F, S, S]``); label maps
long ``[F, S, S]`` with ``IGNORE`` (255) on frames without labels.

Windows come from ``echofm.windows`` (one placement and one short-video policy for every
consumer): ``sampling`` is a ``windows.Sampling`` (a model's input contract plus flags:
each sample's frame step follows from its frame rate) or a fixed ``windows.WindowSpec``.
Training takes one random window per sample (for segmentation, one that contains a
labelled frame), drawn from (seed, epoch, sample index) only, so the choice does not
depend on which process or loader worker reads the sample, nor on the order it is read
in (one process and a DDP job see the same windows; a resumed run repeats them);
evaluation takes windows covering the whole video (``windows.plan_windows``), as
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
from echofm.windows import (Sampling, WindowSpec, labelled_window, plan_windows, random_window, source_spec,
                            to_model_tensor, window_clip)


def resize_labels(labels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 label maps [K, H, W] -> long [K, size, size] (nearest neighbour: no invented classes)."""
    x = torch.from_numpy(np.ascontiguousarray(labels)).float().unsqueeze(1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x.squeeze(1).long()


class ClipDataset(Dataset):
    """One random window per sample (training) with its encoded target.

    Items: ``{"clips": [3, F, S, S], "target": tensor, "index": int}``; with
    ``segmentation`` also ``"masks": long [F, S, S]`` (IGNORE where a frame is unlabelled).
    encode_target: Sample -> tensor (the task's label encoding); None for segmentation.
    The window of item i is drawn from (seed, epoch, i); ``set_epoch`` moves to the next epoch.
    """

    def __init__(self, samples: list[Sample], sampling: Sampling | WindowSpec, size: int,
                 encode_target: Optional[Callable[[Sample], torch.Tensor]] = None,
                 segmentation: bool = False, seed: int = 0):
        self.samples, self.sampling, self.size = samples, sampling, size
        self.encode_target, self.segmentation = encode_target, segmentation
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        frames, fps = sample.load_frames(self.size)
        T = frames.shape[0]
        spec = source_spec(self.sampling, fps, where=str(sample.path))
        rng = random.Random(f"clip-window/{self.seed}/{self.epoch}/{i}")  # str seeds hash the same everywhere
        item: dict = {"index": i}
        if self.segmentation:
            masks = sample.load_masks(frames.shape[1], frames.shape[2])
            labelled = sorted(f for f in masks if 0 <= f < T)
            if not labelled:
                raise ValueError(f"{sample.path}: no labelled frame inside its {T} frames")
            idx = labelled_window(T, spec, rng.choice(labelled), rng)
            item["masks"] = window_masks(masks, idx, frames.shape[1], frames.shape[2], self.size)
        else:
            idx = random_window(T, spec, rng)
        item["clips"] = window_clip(frames, idx, self.size)
        if self.encode_target is not None:
            item["target"] = self.encode_target(sample)
        return item


def window_masks(masks: dict[int, np.ndarray], idx: np.ndarray, height: int, width: int, size: int) -> torch.Tensor:
    """long [F, S, S] label maps of a window's frames, IGNORE on frames without labels.

    A frame index that repeats (a short video padded with its last frame) keeps its label
    only once, so a repeated frame is not counted several times in the loss.
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
    is in at least one window (``WindowSpec.every_frame``).

    Items: ``{"video": [3, T, S, S] (the whole video, resized once), "indices": long [W, F]
    frame indices of its windows, "index": int, "num_frames": T, "fps", "frame_step"}``; with
    ``segmentation`` also ``"masks": {frame: long [S, S]}``. ``windows.run_windows`` (or
    ``windows.window_clips``) makes the clips ``[W, 3, F, S, S]`` from video and indices.
    Use with ``batch_size=1`` and ``collate_fn=lambda b: b[0]``.
    """

    def __init__(self, samples: list[Sample], sampling: Sampling | WindowSpec, size: int,
                 segmentation: bool = False):
        self.samples, self.sampling, self.size, self.segmentation = samples, sampling, size, segmentation

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        frames, fps = sample.load_frames(self.size)
        T = frames.shape[0]
        spec = source_spec(self.sampling, fps, every_frame=self.segmentation, where=str(sample.path))
        windows = plan_windows(T, spec)
        item = {"video": to_model_tensor(frames, self.size), "indices": torch.from_numpy(windows), "index": i,
                "num_frames": T, "fps": fps, "frame_step": spec.frame_step}
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
