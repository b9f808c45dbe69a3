"""Find the ultrasound sector (the fan) in a clip from its pixels, and blank the rest.

Everything outside the fan — burned-in patient text, the ECG trace, scale bars, logos,
colour bars — is static or thin, while the fan is a large, convex area of moving speckle.
So, for a cine: per-pixel temporal variation -> remove thin structures -> largest blob ->
convex hull. A still has no motion: bright area with thin structures (text, traces)
removed -> largest blob -> convex hull. When the DICOM header states the ultrasound image
region, the search is confined to it. Detection runs on a reduced copy for speed; the
mask is scaled back to full size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

# Work on images at most this many pixels on the long side (speed; the fan is large).
_WORK_SIZE = 256
# Frames sampled for the motion statistic (enough to see the heart move).
_MAX_FRAMES = 48
# Gray level above which a pixel shows signal (the background of a scan is 0-2).
_DIM_SIGNAL = 5


@dataclass(frozen=True)
class Sector:
    """The ultrasound sector of a clip.

    mask: bool ``[H, W]``, True inside the fan.
    box: ``(y0, x0, y1, x1)`` bounding box of the mask, exclusive ends.
    method: "motion", "intensity" or "full" (nothing found: keep the whole image).
    """

    mask: np.ndarray
    box: tuple[int, int, int, int]
    method: str


def detect_sector(frames: np.ndarray, region: Optional[tuple[int, int, int, int]] = None) -> Sector:
    """Find the fan in uint8 frames ``[T, H, W]`` or ``[T, H, W, 3]``.

    region: ``(y0, x0, y1, x1)`` from the DICOM header; the fan is looked for inside it.
    """
    height, width = frames.shape[1:3]
    gray = _luma(frames[_sample_indices(frames.shape[0])])
    scale = min(1.0, _WORK_SIZE / max(height, width))
    small = np.stack([_shrink(f, scale) for f in gray]) if scale < 1 else gray
    small_h, small_w = small.shape[1:]

    allowed = np.ones((small_h, small_w), bool)
    if region is not None:
        y0, x0, y1, x1 = region
        allowed[:] = False
        allowed[int(y0 * scale):int(np.ceil(y1 * scale)), int(x0 * scale):int(np.ceil(x1 * scale))] = True

    method = "intensity"
    candidate = None
    if small.shape[0] >= 3:
        variation = small.astype(np.float32).std(axis=0)
        candidate = _fan_from(variation > _motion_threshold(variation), allowed)
        method = "motion"
        if candidate is not None:
            # The deep, dim edges of the fan barely change over time; grow the moving
            # core into the lit area that touches it (text blobs do not touch it).
            lit = small.max(axis=0) > _DIM_SIGNAL
            candidate = _fan_from(lit, allowed, seed=candidate) | candidate
    if candidate is None or candidate.mean() < 0.02:
        brightest = small.max(axis=0)
        candidate = _fan_from(brightest > _intensity_threshold(brightest), allowed)
        method = "intensity"
    if candidate is None or candidate.mean() < 0.02:
        mask = np.zeros((height, width), bool)
        if region is not None:
            mask[region[0]:region[2], region[1]:region[3]] = True
        else:
            mask[:] = True
        return Sector(mask, _box(mask), "full")

    mask = cv2.resize(candidate.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    mask &= cv2.resize(allowed.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return Sector(mask, _box(mask), method)


def apply_sector(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blank (set to 0) every pixel outside `mask`; frames ``[T, H, W(, 3)]`` uint8, copied."""
    keep = mask[None, :, :, None] if frames.ndim == 4 else mask[None]
    return np.where(keep, frames, np.uint8(0))


def _fan_from(binary: np.ndarray, allowed: np.ndarray, seed: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Largest blob of `binary` (after removing thin things) -> its filled convex hull.

    With `seed`, the blob is instead every component overlapping the seed.
    """
    binary = binary & allowed
    side = max(binary.shape)
    # Text strokes, ECG traces, dotted depth marks are a few pixels wide: an opening
    # removes them; closing then fuses the speckle of the fan into one blob.
    opened = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_OPEN, _disk(max(3, side // 80)))
    # When growing from a seed, bridge only small gaps so nearby text stays apart.
    close_radius = max(3, side // 40) if seed is None else max(1, side // 128)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, _disk(close_radius))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if count <= 1:
        return None
    if seed is None:
        blob = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    else:
        touching = np.unique(labels[seed & (labels > 0)])
        if touching.size == 0:
            return seed
        blob = np.isin(labels, touching)
    points = cv2.findNonZero(blob.astype(np.uint8))
    hull = cv2.convexHull(points)
    filled = np.zeros(binary.shape, np.uint8)
    cv2.fillConvexPoly(filled, hull, 1)
    return (filled > 0) & allowed


def _motion_threshold(variation: np.ndarray) -> float:
    """Split static background (std ~0, plus codec noise) from moving speckle."""
    moving = variation[variation > 1.0]
    if moving.size == 0:
        return np.inf
    return max(2.0, 0.25 * float(np.median(moving)))


def _intensity_threshold(image: np.ndarray) -> float:
    lit = image[image > 8]
    if lit.size == 0:
        return np.inf
    return max(8.0, 0.2 * float(np.median(lit)))


def _luma(frames: np.ndarray) -> np.ndarray:
    if frames.ndim == 3:
        return frames
    # Max over channels so colour Doppler counts as signal as much as gray speckle does.
    return frames.max(axis=-1)


def _sample_indices(count: int) -> np.ndarray:
    return np.unique(np.linspace(0, count - 1, min(count, _MAX_FRAMES)).round().astype(int))


def _shrink(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, mask.shape[0], mask.shape[1])
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
