"""The input contract applied: which frames form a model clip, the clip tensor, batched model runs.

Every place that turns a video into model input calls this module: pretraining data,
fine-tuning (training windows and evaluation), predict, embed, phase, reconstruct,
diagnose and the probes. So one video gives the same windows, and the same tensors,
whichever of them reads it.

Layouts: videos are uint8 ``[T, H, W]`` / ``[T, H, W, 3]``; a window is ``num_frames``
frame indices ``start + frame_step * k``; model clips are float ``[3, F, S, S]`` in
[0, 1] (grey repeated to three channels), batched ``[N, 3, F, S, S]``.

Placement (``plan_windows``): windows every ``window_step`` frames (default: one window
span, i.e. back to back), the last one ending on the last frame, so every frame is inside
a window; ``max_windows`` keeps that many, evenly spread; ``every_frame`` (segmentation)
also shifts each window through the ``frame_step`` phases so every frame is *in* a window,
not only between two of its frames, and keeps all windows.

Short videos (fewer frames than one window spans) are padded with their last frame
(``short_video="pad"``, the one policy every consumer uses). Why pad and not loop: a cine
rarely holds a whole number of beats, so looping joins the last frame to the first, a jump
in the cardiac phase the heart never made, which the per-time-step embeddings, the cycle
length and ED/ES analyses would read as motion; a held last frame is a pause that keeps
the order of phases. Padding also keeps frame indices monotonic, so per-frame outputs
(segmentation) map back to one frame each, and a repeated frame's label is counted once
(``datasets.clips.window_masks``). ``loop`` stays available for reading clips the way the
public EchoFM loader does.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import torch

from echofm.precision import autocast, resolve_precision
from echofm.preprocess.transforms import resize_frames

SHORT_VIDEO_POLICIES = ("pad", "loop")

Rng = Union[random.Random, np.random.Generator]


@dataclass(frozen=True)
class WindowSpec:
    """How a video is cut into model clips.

    num_frames: frames per clip (the model's). frame_step: take every Nth frame.
    window_step: frames between window starts (None: back to back, one window span).
    max_windows: at most this many windows per video, evenly spread (None: all).
    every_frame: put every frame inside some window (segmentation; ignores max_windows).
    short_video: ``pad`` (repeat the last frame) or ``loop``; see the module docstring.
    """

    num_frames: int
    frame_step: int = 1
    window_step: Optional[int] = None
    max_windows: Optional[int] = None
    every_frame: bool = False
    short_video: str = "pad"

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.frame_step < 1:
            raise ValueError(f"num_frames and frame_step must be at least 1, got {self.num_frames}, {self.frame_step}")
        for name in ("window_step", "max_windows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None), got {value}")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {self.short_video!r}")

    @property
    def span(self) -> int:
        """Frames from a window's first to its last frame, both included."""
        return (self.num_frames - 1) * self.frame_step + 1


# --- which frames ----------------------------------------------------------------------

def window_indices(total: int, spec: WindowSpec, start: int) -> np.ndarray:
    """Frame indices ``[num_frames]`` of the window starting at ``start`` in a ``total``-frame
    video; indices past the end follow the short-video policy."""
    if total < 1:
        raise ValueError("a video needs at least one frame")
    idx = start + spec.frame_step * np.arange(spec.num_frames)
    if spec.short_video == "loop":
        return idx % total
    return np.clip(idx, 0, total - 1)


def window_starts(total: int, spec: WindowSpec) -> list[int]:
    """Starts of the windows covering a ``total``-frame video (see the module docstring)."""
    span = spec.span
    if total <= span:
        starts = [0]
    else:
        step = spec.window_step or span
        starts = list(range(0, total - span + 1, step))
        if starts[-1] != total - span:
            starts.append(total - span)
    if spec.every_frame:
        if spec.frame_step > 1:
            starts = sorted({s + o for s in starts for o in range(spec.frame_step) if s + o < total})
        return starts
    if spec.max_windows and len(starts) > spec.max_windows:
        keep = np.linspace(0, len(starts) - 1, spec.max_windows).round().astype(int)
        starts = [starts[k] for k in keep]
    return starts


def plan_windows(total: int, spec: WindowSpec) -> np.ndarray:
    """Frame indices ``[W, num_frames]`` of every window of a ``total``-frame video."""
    return np.stack([window_indices(total, spec, s) for s in window_starts(total, spec)])


def step_offset_windows(total: int, spec: WindowSpec, t_patch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows that give one model time step centred on (nearly) every frame, for reading a
    signal over frames from per-time-step outputs (``inference.embedding_phase``).

    A model time step covers ``t_patch_size`` window frames, ``t_patch_size x frame_step``
    source frames. Windows are laid back to back (``num_frames x frame_step`` apart, so their
    steps continue one grid) from every offset within one step, so the step centres of all
    windows together fall on every frame. Returns the windows' frame indices ``[W, F]``
    (padded past the end by the short-video policy), each step's centre in source frames
    ``[W, T]`` and whether the step is made of real frames only ``[W, T]`` (a padded step
    holds no new phase and is to be dropped). Windows with fewer than two real steps are
    left out: their steps cannot be compared within the window.
    """
    if total < 1:
        raise ValueError("a video needs at least one frame")
    if t_patch_size < 1 or spec.num_frames % t_patch_size:
        raise ValueError(f"num_frames {spec.num_frames} is not a multiple of t_patch_size {t_patch_size}")
    step = spec.frame_step
    steps = spec.num_frames // t_patch_size
    windows, centres, valid = [], [], []
    for offset in range(t_patch_size * step):
        for start in range(offset, total, spec.num_frames * step):
            frames = (start + step * np.arange(spec.num_frames)).reshape(steps, t_patch_size)
            real = frames[:, -1] <= total - 1
            if real.sum() < 2:
                break
            windows.append(window_indices(total, spec, start))
            centres.append(frames.mean(axis=1))
            valid.append(real)
    if not windows:
        shape = (0, spec.num_frames)
        return np.zeros(shape, np.int64), np.zeros((0, steps)), np.zeros((0, steps), bool)
    return np.stack(windows), np.stack(centres), np.stack(valid)


def _randint(rng: Rng, high: int) -> int:
    """An integer in [0, high) from either kind of generator."""
    if isinstance(rng, random.Random):
        return rng.randrange(high)
    return int(rng.integers(0, high))


def random_window(total: int, spec: WindowSpec, rng: Rng) -> np.ndarray:
    """A training window: a start drawn uniformly among those that keep the window inside the
    video (a short video has one, 0; looped, any frame)."""
    if total >= spec.span:
        return window_indices(total, spec, _randint(rng, total - spec.span + 1))
    return window_indices(total, spec, _randint(rng, total) if spec.short_video == "loop" else 0)


def centred_window(total: int, spec: WindowSpec) -> np.ndarray:
    """The window in the middle of the video (a short one: from its first frame)."""
    return window_indices(total, spec, max(0, (total - spec.span) // 2))


def beat_window(total: int, spec: WindowSpec, first: int, last: int) -> np.ndarray:
    """The window of one beat, frames ``first`` .. ``last`` (an end-diastole to the next):
    centred on it when the window spans the whole beat; else starting at its first frame, so
    that it holds the end-diastole and the systole after it (what an EF is read from),
    not the beat's middle. Moved to lie inside the video; a video shorter than a window:
    from frame 0, padded."""
    if spec.span >= last - first + 1:
        start = int(round((first + last) / 2 - (spec.span - 1) / 2))
    else:
        start = first
    start = min(max(0, start), max(0, total - spec.span))
    return window_indices(total, spec, start)


def labelled_window(total: int, spec: WindowSpec, frame: int, rng: random.Random) -> np.ndarray:
    """A random training window that holds ``frame`` (a labelled frame) as one of its frames."""
    step, span = spec.frame_step, spec.span
    # Positions k of the labelled frame that keep the window inside the video; a video
    # shorter than a window allows any position with a non-negative start.
    fits = [k for k in range(spec.num_frames) if frame - k * step >= 0 and frame - k * step + span <= total]
    fits = fits or [k for k in range(spec.num_frames) if frame - k * step >= 0]
    return window_indices(total, spec, frame - rng.choice(fits) * step)


# --- frames -> tensors -----------------------------------------------------------------

def to_model_tensor(frames: np.ndarray, size: Optional[int] = None) -> torch.Tensor:
    """uint8 ``[T, H, W]`` or ``[T, H, W, 3]`` -> float ``[3, T, S, S]`` in [0, 1].

    size: resize to ``size x size`` first (``preprocess.transforms.resize_frames``, the
    package's one resizer: area when shrinking, bilinear when enlarging); None keeps the size.
    """
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W] or [T, H, W, 3] with T > 0, got {frames.shape}")
    if size is not None and frames.shape[1:3] != (size, size):
        frames = resize_frames(frames, size)
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    tensor = tensor.unsqueeze(0).expand(3, -1, -1, -1) if tensor.ndim == 3 else tensor.permute(3, 0, 1, 2)
    return tensor.float().div_(255.0)


def window_clip(frames: np.ndarray, indices: np.ndarray, size: Optional[int] = None) -> torch.Tensor:
    """One window's clip ``[3, F, S, S]``: only its frames are resized (training reads)."""
    return to_model_tensor(np.asarray(frames)[np.asarray(indices)], size)


def window_clips(video: np.ndarray | torch.Tensor, windows: np.ndarray, size: Optional[int] = None) -> torch.Tensor:
    """All windows ``[W, 3, F, S, S]`` of a video (uint8 frames, or the float ``[3, T, S, S]``
    of ``to_model_tensor``): resized once, then gathered."""
    if not isinstance(video, torch.Tensor):
        video = to_model_tensor(video, size)
    return torch.stack([video[:, torch.as_tensor(w)] for w in np.asarray(windows)])


# --- a model over a video's windows -------------------------------------------------------

Output = Union[torch.Tensor, dict]


def run_windows(fn: Callable[[torch.Tensor], Output], video: np.ndarray | torch.Tensor, windows: np.ndarray,
                batch_size: int = 8, device: str | torch.device = "cpu", precision: str = "fp32",
                size: Optional[int] = None) -> Output:
    """``fn`` over every window of a video, ``batch_size`` windows at a time.

    fn: clips ``[N, 3, F, S, S]`` on ``device`` -> a tensor ``[N, ...]`` or a dict of them
    (e.g. ``lambda c: model(c)`` or several embeddings). video: uint8 frames (resized to
    ``size`` once) or the float ``[3, T, S, S]`` of ``to_model_tensor``. windows: frame
    indices ``[W, F]``. precision: ``auto``, ``fp32`` or ``bf16`` (``resolve_precision``).
    Returns the outputs of all windows concatenated along the first axis, float32 on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not isinstance(video, torch.Tensor):
        video = to_model_tensor(video, size)
    precision = resolve_precision(precision, device)
    windows = np.asarray(windows)
    parts: list = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            clips = window_clips(video, windows[i:i + batch_size]).to(device)
            with autocast(precision, device):
                out = fn(clips)
            parts.append({k: v.float().cpu() for k, v in out.items()} if isinstance(out, dict) else out.float().cpu())
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


# --- the spec a model's contract asks for ------------------------------------------------

def spec_for(contract, source_fps: Optional[float] = None, *, frame_step: Optional[int] = None,
             window_step: Optional[int] = None, max_windows: Optional[int] = None, every_frame: bool = False,
             where: str = "a source") -> WindowSpec:
    """The windows a model with ``contract`` (``echofm.contract.InputContract``) needs for a
    source at ``source_fps``: its frames per clip, the frame step that brings the source to
    the contract's rate (``contract.frame_step_for``) unless ``frame_step`` overrides it."""
    step = frame_step if frame_step is not None else contract.frame_step_for(source_fps, where)
    return WindowSpec(num_frames=contract.num_frames, frame_step=step, window_step=window_step,
                      max_windows=max_windows, every_frame=every_frame)


@dataclass(frozen=True)
class Sampling:
    """The sampling a consumer asks for over many sources of their own frame rates: a model's
    contract plus the flags that override it; ``spec(fps)`` gives one source's windows."""

    contract: object  # echofm.contract.InputContract
    frame_step: Optional[int] = None
    window_step: Optional[int] = None
    max_windows: Optional[int] = None

    def spec(self, source_fps: Optional[float], every_frame: bool = False, where: str = "a source") -> WindowSpec:
        return spec_for(self.contract, source_fps, frame_step=self.frame_step, window_step=self.window_step,
                        max_windows=self.max_windows, every_frame=every_frame, where=where)


def source_spec(sampling: "WindowSpec | Sampling", source_fps: Optional[float], every_frame: bool = False,
                where: str = "a source") -> WindowSpec:
    """One source's windows: a fixed ``WindowSpec`` as it is, a ``Sampling`` from the source's rate."""
    if isinstance(sampling, WindowSpec):
        return dataclasses.replace(sampling, every_frame=every_frame or sampling.every_frame)
    return sampling.spec(source_fps, every_frame, where)
