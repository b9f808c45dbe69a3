"""Helpers of the downstream tests: tiny videos and images written in public layouts."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_avi(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Grey uint8 frames [T, H, W] (H, W even) -> an MPEG-4 AVI via PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in frames:
            rgb = np.repeat(frame[:, :, None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def beating_disc(frames: int, size: int, ef: float, period: float = 8.0, seed: int = 0) -> np.ndarray:
    """uint8 [T, size, size]: a bright disc whose area beats between 1 and (1 - ef/100) of its maximum,
    so the clip encodes an EF-like scalar that a probe can learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r_max = size * 0.32
    r_min = r_max * math.sqrt(max(1e-3, 1 - ef / 100))
    phase = rng.uniform(0, 2 * math.pi)
    out = np.empty((frames, size, size), np.uint8)
    for t in range(frames):
        r = r_min + (r_max - r_min) * 0.5 * (1 + math.cos(2 * math.pi * t / period + phase))
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
        img = 30 + 180 * disc + rng.normal(0, 6, (size, size))
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def rect_chords(x0: int, x1: int, y0: int, y1: int) -> list[tuple[float, float, float, float]]:
    """EchoNet-style rows for a rectangle: the long axis first, then one horizontal chord per row."""
    rows = [((x0 + x1) / 2, y0, (x0 + x1) / 2, y1)]
    rows += [(x0, y, x1, y) for y in range(y0, y1 + 1)]
    return rows
