"""Figures of the end-to-end demo: frames before/after masking, ED/ES probe curves."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from echofm.files import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png"))
    _plt().close(fig)
    return out


def frames_figure(panels: Sequence[tuple[str, np.ndarray]], out: str | Path, title: str = "") -> Path:
    """Frames side by side, each with its title: uint8 ``[H, W]`` (grey) or ``[H, W, 3]``."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (name, frame) in zip(axes[0], panels):
        ax.imshow(frame, cmap="gray" if frame.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(f"{name}\n{frame.shape[1]}x{frame.shape[0]} px", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def phase_probe_figure(examples: Sequence[dict], out: str | Path, tolerance: int) -> Path:
    """ED/ES detection on a few test videos: one row per video, one curve per method.

    examples: ``{"id", "volume" (true LV volume per frame), "true_ed", "true_es",
    "methods": {name: {"curve", "ed_frames", "es_frames"[, "color", "style"]}}}``. Curves
    are standardised so that they share one axis; true events are drawn as vertical lines.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 2.6 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        z = lambda c: (np.asarray(c, float) - np.mean(c)) / (np.std(c) + 1e-9)
        ax.plot(z(ex["volume"]), color="black", lw=2.5, alpha=0.35, label="true LV volume")
        for f in ex["true_ed"]:
            ax.axvline(f, color="black", ls="-", lw=0.8, alpha=0.5)
        for f in ex["true_es"]:
            ax.axvline(f, color="black", ls=":", lw=0.8, alpha=0.7)
        for k, (name, m) in enumerate(ex["methods"].items()):
            c = z(m["curve"])
            color = m.get("color", f"C{k}")
            ax.plot(c, color=color, ls=m.get("style", "-"), lw=1.4, label=name)
            ax.plot(m["ed_frames"], c[m["ed_frames"]], "^", color=color, ms=7)
            ax.plot(m["es_frames"], c[m["es_frames"]], "v", color=color, ms=7)
        ax.set_title(f"{ex['id']}: true ED (solid) / ES (dotted) lines; found ED ^ / ES v "
                     f"(counted when within {tolerance} frames)", fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.07 if len(examples) < 3 else 0.05, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return _save(fig, out)
