"""Running a model on whole studies: source -> preprocessed frames -> windows -> embeddings.

Uses the same preprocessing as `echofm prepare` (``preprocess_clip``), so a study gives
the same pixels whether it was prepared first or read directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from echofm.datasets.clips import covering_starts
from echofm.io import Clip, read_clip
from echofm.precision import autocast
from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip, resize_frames, to_model_tensor


def load_study(path: str | Path, size: int, mask_sector: bool = True, target_fps: Optional[float] = None) -> Clip:
    """Read any echo source and preprocess it to ``size`` x ``size`` (sector masked, cropped).

    Prepared cache clips (``.npy`` written by `echofm prepare`) are already preprocessed:
    they are only resized when needed.
    """
    clip = read_clip(path)
    if clip.source_kind == "npy":
        if clip.frames.shape[1:3] != (size, size):
            clip.frames = resize_frames(clip.frames, size)
        return clip
    return preprocess_clip(clip, PreprocessConfig(size=size, mask_sector=mask_sector, target_fps=target_fps))


def window_starts(total: int, num_frames: int, stride: int) -> list[int]:
    """Starts of windows that cover every frame of a ``total``-frame video.

    Windows of ``num_frames`` frames ``stride`` apart are laid end to end; the last one is
    aligned with the end of the video. A video shorter than one window gives one start
    (the window then wraps around, as the cine loop does).
    """
    return covering_starts(total, num_frames, stride)


def video_windows(frames: np.ndarray, num_frames: int, stride: int) -> tuple[torch.Tensor, list[int]]:
    """uint8 [T, H, W(, 3)] -> (float windows [W, 3, num_frames, H, W] in [0, 1], starts)."""
    starts = window_starts(len(frames), num_frames, stride)
    idx = [(s + np.arange(num_frames) * stride) % len(frames) for s in starts]
    return torch.stack([to_model_tensor(frames[i]) for i in idx]), starts


@dataclass
class StudyEmbedding:
    """Embeddings of one study: video [D] (mean over windows), frames [W, T, D]
    (per-time-step, per window), tokens [W, T*L, D] (only when asked), window starts."""

    video: np.ndarray
    frames: np.ndarray
    starts: list[int]
    tokens: Optional[np.ndarray] = None


@torch.no_grad()
def embed_frames(model, frames: np.ndarray, stride: int = 1, batch_size: int = 4, precision: str = "fp32",
                 device: str = "cpu", keep_tokens: bool = False) -> StudyEmbedding:
    """Embed a whole preprocessed video (uint8 frames at the model's size) window by window."""
    c = model.cfg
    windows, starts = video_windows(frames, c.num_frames, stride)
    videos, steps, tokens = [], [], []
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size].to(device)
        with autocast(precision, device):
            emb = model.embed(batch)
        videos.append(emb.video.float().cpu())
        steps.append(emb.frames.float().cpu())
        if keep_tokens:
            tokens.append(emb.tokens.float().cpu())
    return StudyEmbedding(video=torch.cat(videos).mean(0).numpy(), frames=torch.cat(steps).numpy(), starts=starts,
                          tokens=torch.cat(tokens).numpy() if keep_tokens else None)
