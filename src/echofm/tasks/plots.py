"""Evaluation figures (matplotlib, Agg backend, PNG): EF scatter and Bland-Altman,
confusion matrix, ROC curves, segmentation overlays. Each function writes one file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from echofm.files import atomic_write  # noqa: E402
from echofm.labels import STRUCTURE_COLOURS  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


def regression_plots(y_true: Sequence[float], y_pred: Sequence[float], path: Path, label: str = "EF (%)") -> Path:
    """Scatter (prediction vs truth, identity line) beside Bland-Altman (difference vs mean)."""
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
    a.scatter(t, p, s=12, alpha=0.7)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    a.plot([lo, hi], [lo, hi], "k--", lw=1)
    a.set_xlabel(f"true {label}")
    a.set_ylabel(f"predicted {label}")
    a.set_title(f"MAE {np.mean(np.abs(p - t)):.2f}, n={len(t)}")
    mean, diff = (t + p) / 2, p - t
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    b.scatter(mean, diff, s=12, alpha=0.7)
    for y, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
        b.axhline(y, color="k", ls=style, lw=1)
    b.set_xlabel(f"mean of true and predicted {label}")
    b.set_ylabel("predicted - true")
    b.set_title(f"Bland-Altman: bias {bias:.2f}, 95% limits ±{1.96 * sd:.2f}")
    return _save(fig, path)


def confusion_plot(cm: Sequence[Sequence[int]], names: Sequence[str], path: Path) -> Path:
    """Confusion matrix (rows true, columns predicted) with counts in the cells."""
    cm = np.asarray(cm)
    size = max(4.0, 0.7 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(fig, path)


def roc_plot(y_onehot: np.ndarray, probs: np.ndarray, names: Sequence[str], path: Path) -> Optional[Path]:
    """One-vs-rest ROC curve per class (classes with only one outcome are left out)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    drawn = 0
    for c, name in enumerate(names):
        col = y_onehot[:, c]
        if col.min() == col.max():
            continue
        fpr, tpr, _ = roc_curve(col, probs[:, c])
        ax.plot(fpr, tpr, label=name)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image.copy()
    for value, colour in STRUCTURE_COLOURS.items():
        m = labels == value
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(colour)
    return rgb


def segmentation_overlays(rows: list[tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray]]], path: Path) -> Path:
    """Rows of (title, image [S, S] or [S, S, 3] in [0, 1], predicted labels, true labels or None)."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3 * len(rows)), squeeze=False)
    for r, (title, image, pred, truth) in enumerate(rows):
        axes[r, 0].imshow(_overlay(image, pred))
        axes[r, 0].set_title(f"{title}: predicted", fontsize=8)
        axes[r, 1].imshow(_overlay(image, truth) if truth is not None else image, cmap="gray")
        axes[r, 1].set_title(f"{title}: {'truth' if truth is not None else 'image'}", fontsize=8)
        for a in axes[r]:
            a.axis("off")
    return _save(fig, path)
