"""Metrics of the downstream tasks, as plain Python floats ready for ``metrics.json``.

Regression (EF): MAE, RMSE, R2. Classification: accuracy, balanced accuracy, macro-F1,
one-vs-rest AUROC (multi-class and multi-label). Segmentation: Dice and IoU per structure.
scikit-learn does the statistics; this module only fixes the conventions (which classes
count, what an undefined value becomes).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from sklearn import metrics as skm

from echofm.labels import BACKGROUND, IGNORE, SEGMENTATION_CLASSES

# The structures scored by default: every segmentation class but the background.
SCORED_STRUCTURES = {value: name for value, name in enumerate(SEGMENTATION_CLASSES) if value != BACKGROUND}


def _nan_to_none(value: float) -> Optional[float]:
    """JSON has no NaN: an undefined metric is written as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict:
    """MAE, RMSE, R2 (and count, bias = mean(pred - true)) of scalar predictions."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"regression metrics need two equal 1-D arrays, got {t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("regression metrics of zero samples")
    r2 = skm.r2_score(t, p) if t.size > 1 and np.ptp(t) > 0 else float("nan")
    return {
        "n": int(t.size),
        "mae": float(skm.mean_absolute_error(t, p)),
        "rmse": float(math.sqrt(skm.mean_squared_error(t, p))),
        "r2": _nan_to_none(r2),
        "bias": float(np.mean(p - t)),
    }


def classification_metrics(y_true: Sequence[int], probs: np.ndarray,
                           class_names: Optional[Sequence[str]] = None) -> dict:
    """Multi-class metrics from true indices [N] and class probabilities [N, C].

    AUROC is one-vs-rest per class (absent classes give null) and its macro mean over the
    classes where it is defined.
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities must be [N, C] with N={y.shape[0]}, got {probs.shape}")
    C = probs.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(C)]
    pred = probs.argmax(axis=1)
    labels = list(range(C))
    present = sorted(set(y.tolist()))
    out = {
        "n": int(y.size),
        "accuracy": float(skm.accuracy_score(y, pred)),
        # Balanced accuracy = mean recall over the classes present in y_true.
        "balanced_accuracy": float(skm.recall_score(y, pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=labels).tolist(),
        "class_names": names,
    }
    per_class = {}
    for c in labels:
        positives = y == c
        if positives.all() or not positives.any():
            per_class[names[c]] = None
        else:
            per_class[names[c]] = float(skm.roc_auc_score(positives, probs[:, c]))
    out["auroc"] = per_class
    defined = [v for v in per_class.values() if v is not None]
    out["auroc_macro"] = float(np.mean(defined)) if defined else None
    return out


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Optional[Sequence[str]] = None,
                       threshold: float = 0.5) -> dict:
    """Multi-label metrics from 0/1 targets [N, C] and independent probabilities [N, C]."""
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y.shape != probs.shape or y.ndim != 2:
        raise ValueError(f"multi-label targets and probabilities must both be [N, C], got {y.shape}, {probs.shape}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(y.shape[1])]
    pred = (probs >= threshold).astype(np.int64)
    per_class = {}
    for c, name in enumerate(names):
        col = y[:, c]
        per_class[name] = None if col.min() == col.max() else float(skm.roc_auc_score(col, probs[:, c]))
    defined = [v for v in per_class.values() if v is not None]
    return {
        "n": int(y.shape[0]),
        "subset_accuracy": float(skm.accuracy_score(y, pred)),
        "macro_f1": float(skm.f1_score(y, pred, average="macro", zero_division=0)),
        "auroc": per_class,
        "auroc_macro": float(np.mean(defined)) if defined else None,
        "class_names": names,
    }


def dice_iou(pred: np.ndarray, target: np.ndarray, labels: dict[int, str] = SCORED_STRUCTURES,
             ignore_index: int = IGNORE) -> dict:
    """Dice and IoU per structure over all pixels of label maps pred/target [..., H, W].

    Pixels where target == ignore_index are left out. A structure absent from both maps
    has undefined scores (null); absent from the target only, Dice is 0.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} label maps differ in shape")
    valid = target != ignore_index
    out: dict = {"dice": {}, "iou": {}}
    for value, name in labels.items():
        p = (pred == value) & valid
        t = (target == value) & valid
        inter = float(np.logical_and(p, t).sum())
        total = float(p.sum() + t.sum())
        union = float(np.logical_or(p, t).sum())
        out["dice"][name] = None if total == 0 else 2.0 * inter / total
        out["iou"][name] = None if union == 0 else inter / union
    defined = [v for v in out["dice"].values() if v is not None]
    out["dice_mean"] = float(np.mean(defined)) if defined else None
    defined = [v for v in out["iou"].values() if v is not None]
    out["iou_mean"] = float(np.mean(defined)) if defined else None
    return out


def per_image_dice(pred: np.ndarray, target: np.ndarray, value: int) -> np.ndarray:
    """Dice of one structure for each image of pred/target [N, H, W] (NaN where undefined)."""
    p = pred == value
    t = target == value
    inter = (p & t).reshape(len(p), -1).sum(1)
    total = p.reshape(len(p), -1).sum(1) + t.reshape(len(t), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), np.nan)
