"""Figures people look at: cardiac phase, reconstructions (PNG and GIF), similarity maps."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def phase_figure(frames: np.ndarray, result, similarity: np.ndarray, out: str | Path,
                 embedding_similarity: Optional[np.ndarray] = None, title: str = "") -> Path:
    """Cavity curve with ED/ES marks, the pixel self-similarity map (and the embedding one),
    and the first ED and ES frames."""
    plt = _plt()
    ncols = 4 if embedding_similarity is not None else 3
    fig = plt.figure(figsize=(4 * ncols, 7))
    grid = fig.add_gridspec(2, ncols, height_ratios=[1, 1.3])
    ax = fig.add_subplot(grid[0, :])
    curve = np.asarray(result.cavity_curve)
    ax.plot(curve, color="0.35", lw=2, label="cavity-size proxy")
    if result.ed_frames:
        ax.plot(result.ed_frames, curve[result.ed_frames], "^", color="crimson", ms=11, label="ED")
    if result.es_frames:
        ax.plot(result.es_frames, curve[result.es_frames], "v", color="royalblue", ms=11, label="ES")
    hr = f", HR {result.heart_rate_bpm:.0f} bpm" if result.heart_rate_bpm else ""
    cyc = f"cycle {result.cycle_frames:.1f} frames" if result.cycle_frames else "no cycle found"
    ax.set_title(f"{title}  {cyc}{hr}".strip())
    ax.set_xlabel("frame")
    ax.legend(loc="best", fontsize=9)
    ax = fig.add_subplot(grid[1, 0])
    ax.imshow(similarity, cmap="magma", vmin=-1, vmax=1)
    ax.set_title("pixel self-similarity (motion)")
    col = 1
    if embedding_similarity is not None:
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(embedding_similarity, cmap="magma", vmin=-1, vmax=1)
        ax.set_title("embedding self-similarity (steps)")
        col += 1
    for label, idx, color in (("ED", result.ed_frames, "crimson"), ("ES", result.es_frames, "royalblue")):
        ax = fig.add_subplot(grid[1, col])
        col += 1
        if idx:
            ax.imshow(frames[idx[0]], cmap="gray")
            ax.set_title(f"{label} (frame {idx[0]})", color=color)
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def reconstruction_panels(original: np.ndarray, masked: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """[T, H, 3W] uint8 strip per frame: input | masked input | reconstruction."""
    strip = np.concatenate([original, masked, recon], axis=2)
    return (np.clip(strip, 0, 1) * 255).astype(np.uint8)


def reconstruction_figure(strips: np.ndarray, out_png: str | Path, out_gif: str | Path,
                          psnr: float, steps: Sequence[int] = (), fps: float = 8.0,
                          baseline_psnr: Optional[float] = None) -> tuple[Path, Path]:
    """A PNG grid of a few time steps and a GIF of all (input | masked | reconstruction)."""
    plt = _plt()
    from matplotlib import animation

    T = len(strips)
    show = list(steps) or sorted({0, T // 3, (2 * T) // 3, T - 1})
    fig, axes = plt.subplots(len(show), 1, figsize=(9, 3.1 * len(show)), squeeze=False)
    for ax, t in zip(axes[:, 0], show):
        ax.imshow(strips[t], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"step {t}: input | masked (75%) | reconstruction", fontsize=10)
        ax.axis("off")
    base = f" (flat-patch baseline {baseline_psnr:.2f} dB)" if baseline_psnr is not None else ""
    fig.suptitle(f"masked PSNR {psnr:.2f} dB{base}")
    fig.tight_layout()
    out_png, out_gif = Path(out_png), Path(out_gif)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    image = ax.imshow(strips[0], cmap="gray", vmin=0, vmax=255)

    def update(i):
        image.set_data(strips[i])
        return (image,)

    anim = animation.FuncAnimation(fig, update, frames=T, interval=1000 / fps, blit=True)
    anim.save(out_gif, writer=animation.PillowWriter(fps=fps))
    plt.close(fig)
    return out_png, out_gif


def similarity_pair_figure(pixel: np.ndarray, embedding: np.ndarray, out: str | Path, title: str = "") -> Path:
    """Pixel and embedding self-similarity maps side by side."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, m, name in ((axes[0], pixel, "pixel cycle prior"), (axes[1], embedding, "embedding")):
        ax.imshow(m, cmap="magma", vmin=-1, vmax=1)
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
