"""The Clip: one echo recording as uint8 frames plus the few technical facts we keep."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Clip:
    """One echo recording.

    frames: uint8 ``[T, H, W]`` (grayscale) or ``[T, H, W, 3]`` (RGB). A still image has T == 1.
    fps: frames per second when known.
    pixel_spacing: ``(row_mm, col_mm)`` of one pixel when known.
    source_kind: "dicom", "video", "nifti", "mhd", "npy", "frames" or "phantom".
    content_hash: hex digest of the decoded pixels (names prepared files; never a patient ID).
    is_still: True when the source is a single image rather than a cine.
    region: ``(y0, x0, y1, x1)`` of the ultrasound image region when the source states it
        (DICOM SequenceOfUltrasoundRegions), else None.
    sector_box: ``(y0, x0, y1, x1)`` of the detected ultrasound sector in source pixels, set
        by preprocessing; None before.
    meta: allow-listed technical fields only (e.g. manufacturer model) — never identifiers.
    path: where it was read from (kept in memory; written out only when asked).
    """

    frames: np.ndarray
    fps: Optional[float] = None
    pixel_spacing: Optional[tuple[float, float]] = None
    source_kind: str = "unknown"
    content_hash: str = ""
    is_still: bool = False
    region: Optional[tuple[int, int, int, int]] = None
    sector_box: Optional[tuple[int, int, int, int]] = None
    meta: dict = field(default_factory=dict)
    path: Optional[str] = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def is_color(self) -> bool:
        return self.frames.ndim == 4


def hash_frames(frames: np.ndarray) -> str:
    """Content hash of decoded pixels: 32 hex chars of BLAKE2b over shape, dtype and bytes.

    It names prepared files, so identical recordings (e.g. the same DICOM copied twice)
    collapse to one clip, and it carries nothing about the patient.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((frames.shape, str(frames.dtype))).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Bring any numeric image array into uint8 without changing its layout.

    uint8 passes through; integers already in 0..255 are cast; floats in [0, 1] are scaled
    by 255; anything else is min-max stretched (wider-than-8-bit echo data is rare and
    carries no calibrated intensity that a video model could use).
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.size == 0:
        return array.astype(np.uint8)
    lo, hi = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.integer) and lo >= 0 and hi <= 255:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.round(array * 255.0).astype(np.uint8)
    if hi <= lo:
        return np.zeros(array.shape, np.uint8)
    scaled = (array.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.round(scaled).astype(np.uint8)


def collapse_gray(frames: np.ndarray, tolerance: int = 3) -> np.ndarray:
    """``[T, H, W, 3]`` whose three channels agree (within `tolerance`) -> ``[T, H, W]``.

    Most echo videos store grayscale pixels in an RGB container; keeping one channel
    saves two thirds of memory and disk. Any truly coloured pixel keeps the clip RGB.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        return frames
    # A strided sample finds colour cheaply; the full pass then makes sure no
    # single coloured frame is thrown away.
    for view in (frames[:: max(1, frames.shape[0] // 8)], frames):
        spread = view.max(axis=-1).astype(np.int16) - view.min(axis=-1)
        if int(spread.max(initial=0)) > tolerance:
            return frames
    return np.ascontiguousarray(frames[..., 1])
