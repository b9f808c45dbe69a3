"""The Clip: one echo recording as uint8 frames plus the few technical facts we keep."""

from __future__ import annotations

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
    meta: dict = field(default_factory=dict)
    path: Optional[str] = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def is_color(self) -> bool:
        return self.frames.ndim == 4
