"""Preprocessing as small composable steps, and the one pipeline built from them.

`preprocess_clip(clip, PreprocessConfig)` is what `echofm prepare`, training and
inference all call, so the three cannot drift apart. Storage-side steps work on Clips
holding uint8 ``[T, H, W]`` / ``[T, H, W, 3]``; ``resize_frames`` is the package's one
resizer (``echofm.windows`` uses it for model tensors); augmentation works on float
tensors ``[C, T, H, W]`` in [0, 1], the model's layout. Window sampling lives in
``echofm.windows``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from echofm.io.clip import Clip
from echofm.preprocess.sector import apply_sector, detect_sector

ClipStep = Callable[[Clip], Clip]

# A pixel whose channels differ by more than this is coloured (Doppler), not gray.
_COLOR_SPREAD = 24
# Share of sector pixels that must be coloured for a clip to count as colour Doppler.
_COLOR_SHARE = 0.002


@dataclass(frozen=True)
class PreprocessConfig:
    """How a raw clip becomes a stored/model-ready clip.

    size: output side in pixels (square); 224 by default, 112 for EchoNet-style data.
    keep_color: keep RGB when the sector holds colour (Doppler); otherwise grayscale.
    target_fps: resample in time to this rate (None keeps the source's frames).
    mask_sector / crop_to_sector / pad_square: the sector steps, each switchable.
    """

    size: int = 224
    keep_color: bool = False
    target_fps: Optional[float] = None
    mask_sector: bool = True
    crop_to_sector: bool = True
    pad_square: bool = True

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target_fps must be positive, got {self.target_fps}")


def _replace(clip: Clip, **changes) -> Clip:
    return dataclasses.replace(clip, **changes)


class MaskSector:
    """Detect the fan (see `sector.detect_sector`) and blank everything outside it."""

    def __call__(self, clip: Clip) -> Clip:
        sector = detect_sector(clip.frames, clip.region)
        return _replace(clip, frames=apply_sector(clip.frames, sector.mask), sector_box=sector.box)


class CropToSector:
    """Crop to the sector's bounding box (needs MaskSector first; a no-op otherwise)."""

    def __call__(self, clip: Clip) -> Clip:
        if clip.sector_box is None:
            return clip
        y0, x0, y1, x1 = clip.sector_box
        return _replace(clip, frames=np.ascontiguousarray(clip.frames[:, y0:y1, x0:x1]))


class PadSquare:
    """Pad with black, centred, to a square so that resizing keeps the aspect ratio."""

    def __call__(self, clip: Clip) -> Clip:
        height, width = clip.frames.shape[1:3]
        side = max(height, width)
        if height == width:
            return clip
        top, left = (side - height) // 2, (side - width) // 2
        padded = np.zeros((clip.frames.shape[0], side, side) + clip.frames.shape[3:], np.uint8)
        padded[:, top:top + height, left:left + width] = clip.frames
        return _replace(clip, frames=padded)


class Resize:
    """Resize every frame to ``size x size`` (area filter down, bilinear up); scales spacing."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, clip: Clip) -> Clip:
        height, width = clip.frames.shape[1:3]
        frames = resize_frames(clip.frames, self.size)
        spacing = clip.pixel_spacing
        if spacing is not None:
            spacing = (spacing[0] * height / self.size, spacing[1] * width / self.size)
        return _replace(clip, frames=frames, pixel_spacing=spacing)


class ColorMode:
    """Grayscale unless `keep_color` and the clip really holds colour; records the choice
    as ``meta["color"]``."""

    def __init__(self, keep_color: bool):
        self.keep_color = keep_color

    def __call__(self, clip: Clip) -> Clip:
        colored = clip.is_color and has_color(clip.frames)
        meta = {**clip.meta, "color": bool(colored and self.keep_color)}
        if clip.is_color and not meta["color"]:
            gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames])
            return _replace(clip, frames=gray, meta=meta)
        return _replace(clip, meta=meta)


class ResampleFps:
    """Pick frames (nearest in time) so the clip plays at `target_fps`; no-op when the
    source rate is unknown."""

    def __init__(self, target_fps: float):
        self.target_fps = target_fps

    def __call__(self, clip: Clip) -> Clip:
        if not clip.fps or clip.num_frames < 2 or abs(clip.fps - self.target_fps) < 1e-3:
            return clip
        duration = clip.num_frames / clip.fps
        count = max(1, int(round(duration * self.target_fps)))
        index = np.minimum(np.round(np.arange(count) * clip.fps / self.target_fps), clip.num_frames - 1)
        return _replace(clip, frames=clip.frames[index.astype(int)], fps=float(self.target_fps))


def build_steps(config: PreprocessConfig) -> list[ClipStep]:
    """The steps `config` asks for, in their fixed order."""
    steps: list[ClipStep] = []
    if config.mask_sector:
        steps.append(MaskSector())
        if config.crop_to_sector:
            steps.append(CropToSector())
    steps.append(ColorMode(config.keep_color))
    if config.pad_square:
        steps.append(PadSquare())
    steps.append(Resize(config.size))
    if config.target_fps is not None:
        steps.append(ResampleFps(config.target_fps))
    return steps


def preprocess_clip(clip: Clip, config: PreprocessConfig = PreprocessConfig()) -> Clip:
    """Raw Clip -> clean Clip: uint8 ``[T, size, size]`` (or ``[..., 3]`` for kept colour)."""
    for step in build_steps(config):
        clip = step(clip)
    return clip


def has_color(frames: np.ndarray) -> bool:
    """True when RGB frames ``[T, H, W, 3]`` hold real colour (Doppler), not tinted gray."""
    if frames.ndim != 4:
        return False
    sample = frames[:: max(1, frames.shape[0] // 8)]
    spread = sample.max(axis=-1).astype(np.int16) - sample.min(axis=-1)
    return float((spread > _COLOR_SPREAD).mean()) > _COLOR_SHARE


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """uint8 ``[T, H, W(, 3)]`` -> ``[T, h, w(, 3)]``; `size` is a side or ``(h, w)``."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    height, width = frames.shape[1:3]
    if (height, width) == (out_h, out_w):
        return frames
    shrinking = out_h * out_w < height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], out_h, out_w) + frames.shape[3:], np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (out_w, out_h), interpolation=interpolation)
    return out


# ---------------------------------------------------------------- training side
# (windows and model tensors: echofm.windows)

@dataclass(frozen=True)
class AugmentConfig:
    """Echo-sensible augmentation ranges (all drawn once per clip, same for every frame).

    scale: zoom so the view covers this share of the sector image (crop jitter), lo..hi.
    max_rotation_deg: rotation about the centre, +-.
    gain, gamma: brightness gain and gamma ranges (TGC / dynamic-range variation).
    speckle: std of multiplicative noise (leaves the black background black).
    """

    scale: tuple[float, float] = (0.85, 1.0)
    max_rotation_deg: float = 10.0
    gain: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.8, 1.25)
    speckle: float = 0.05


class Augment:
    """Random echo augmentation of float clips ``[C, T, H, W]`` in [0, 1]."""

    def __init__(self, config: AugmentConfig = AugmentConfig()):
        self.config = config

    def __call__(self, clip: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        cfg = self.config

        def uniform(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=generator))

        channels, frames, height, width = clip.shape
        scale = uniform(*cfg.scale)
        angle = math.radians(uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
        # Shift the zoomed view at most as far as keeps it inside the image.
        shift_y, shift_x = uniform(-(1 - scale), 1 - scale), uniform(-(1 - scale), 1 - scale)
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        theta = torch.tensor([[cos, -sin, shift_x], [sin, cos, shift_y]], dtype=clip.dtype)
        images = clip.permute(1, 0, 2, 3)  # [T, C, H, W] for grid_sample
        grid = F.affine_grid(theta.expand(frames, 2, 3), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        clip = images.permute(1, 0, 2, 3)

        gain, gamma = uniform(*cfg.gain), uniform(*cfg.gamma)
        clip = clip.clamp(0, 1).pow(gamma).mul(gain)
        if cfg.speckle > 0:
            noise = torch.randn((1, frames, height, width), generator=generator, dtype=clip.dtype)
            clip = clip * (1 + cfg.speckle * noise)
        return clip.clamp_(0, 1).contiguous()


def compose(steps: Sequence[ClipStep]) -> ClipStep:
    """Chain Clip steps into one callable."""

    def run(clip: Clip) -> Clip:
        for step in steps:
            clip = step(clip)
        return clip

    return run
