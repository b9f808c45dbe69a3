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


def disc_radius(size: int, ef: float, t: int, period: float, phase: float) -> float:
    r_max = size * 0.32
    r_min = r_max * math.sqrt(max(1e-3, 1 - ef / 100))
    return r_min + (r_max - r_min) * 0.5 * (1 + math.cos(2 * math.pi * t / period + phase))


def beating_disc(frames: int, size: int, ef: float, period: float = 8.0, seed: int = 0,
                 phase: float | None = None) -> np.ndarray:
    """uint8 [T, size, size]: a bright disc whose area beats between 1 and (1 - ef/100) of its maximum,
    so the clip encodes an EF-like scalar that a probe can learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.uniform(0, 2 * math.pi) if phase is None else phase
    out = np.empty((frames, size, size), np.uint8)
    for t in range(frames):
        r = disc_radius(size, ef, t, period, phase)
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
        img = 30 + 180 * disc + rng.normal(0, 6, (size, size))
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def disc_chords(cx: float, cy: float, r: float, n: int = 12) -> list[tuple[float, float, float, float]]:
    """EchoNet-style rows for a disc: the vertical long axis, then n horizontal chords top to bottom."""
    rows = [(cx, cy - r, cx, cy + r)]
    for y in np.linspace(cy - r, cy + r, n):
        w = math.sqrt(max(0.0, r * r - (y - cy) ** 2))
        rows.append((cx - w, float(y), cx + w, float(y)))
    return rows


def rect_chords(x0: int, x1: int, y0: int, y1: int) -> list[tuple[float, float, float, float]]:
    """EchoNet-style rows for a rectangle: the long axis first, then one horizontal chord per row."""
    rows = [((x0 + x1) / 2, y0, (x0 + x1) / 2, y1)]
    rows += [(x0, y, x1, y) for y in range(y0, y1 + 1)]
    return rows


TINY_ENCODER = dict(img_size=32, patch_size=8, num_frames=8, t_patch_size=2, embed_dim=32, depth=2, num_heads=2,
                    decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, pred_t_dim=4)


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny EchoFM saved as an echofm model directory (an --init source)."""
    import torch

    from echofm import EchoFM, ModelConfig, save_model

    torch.manual_seed(seed)
    save_model(EchoFM(ModelConfig(**TINY_ENCODER)), path)
    return path


def write_toy_manifest(root: Path, n: int = 16, frames: int = 12, size: int = 32, seed: int = 0) -> Path:
    """Beating-disc AVIs whose EF-like scalar is the label; a 'view' column (small vs large heart)
    and a multi-label 'findings' column. 3/4 train, 1/8 val, 1/8 test."""
    rng = np.random.default_rng(seed)
    lines = ["path,label,view,findings,split"]
    for i in range(n):
        ef = float(rng.uniform(15, 80))
        name = f"v{i:02d}.avi"
        write_avi(root / name, beating_disc(frames, size, ef, seed=i))
        split = "train" if i % 8 < 6 else ("val" if i % 8 == 6 else "test")
        view = "A4C" if ef >= 50 else "A2C"
        findings = "reduced_ef" if ef < 40 else ("normal;dilated" if ef > 70 else "normal")
        lines.append(f"{name},{ef:.2f},{view},{findings},{split}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root
