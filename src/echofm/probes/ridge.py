"""Ridge probes in closed form: ``RidgeProbe`` (standardised features, ridge strength
cross-validated over groups such as videos) and ``video_probe`` (EF or view from one
feature vector per video). numpy only; the features come from any frozen encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


def _ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights ``[D + 1]`` or ``[D + 1, K]`` (bias last) of ridge regression on y ``[n]`` or
    ``[n, K]``; alpha is per row (scaled by n)."""
    Xb = np.hstack([X, np.ones((len(X), 1))])
    reg = alpha * len(X) * np.eye(Xb.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(Xb.T @ Xb + reg, Xb.T @ y)


class RidgeProbe:
    """Linear regression on standardised features with a cross-validated ridge strength."""

    def __init__(self, alphas: Sequence[float], folds: int = 4):
        self.alphas, self.folds = tuple(alphas), folds
        self.alpha: Optional[float] = None
        self.cv_mse: dict[float, float] = {}
        self.mean = self.scale = self.weights = None

    def fit(self, X: np.ndarray, y: np.ndarray, groups: Optional[np.ndarray] = None) -> "RidgeProbe":
        """X [n, D], y [n] or [n, K], groups [n] (rows of one group, e.g. the steps of one
        video, are never split between folds; None: every row its own group)."""
        groups = np.arange(len(X)) if groups is None else groups
        X, y, groups = np.asarray(X, np.float64), np.asarray(y, np.float64), np.asarray(groups)
        if len(X) != len(y) or len(X) != len(groups) or len(X) < 2:
            raise ValueError(f"need matching X, y, groups with at least 2 rows, got {len(X)}, {len(y)}, {len(groups)}")
        self.mean, self.scale = X.mean(axis=0), X.std(axis=0) + 1e-8
        Z = (X - self.mean) / self.scale
        unique = np.unique(groups)
        k = min(self.folds, len(unique))
        if len(self.alphas) == 1 or k < 2:
            self.alpha = self.alphas[0]
        else:
            fold_of = {g: i % k for i, g in enumerate(np.random.default_rng(0).permutation(unique))}
            fold = np.array([fold_of[g] for g in groups])
            for a in self.alphas:
                errs = []
                for f in range(k):
                    tr, te = fold != f, fold == f
                    w = _ridge(Z[tr], y[tr], a)
                    errs.append(np.mean((Z[te] @ w[:-1] + w[-1] - y[te]) ** 2))
                self.cv_mse[a] = float(np.mean(errs))
            self.alpha = min(self.cv_mse, key=self.cv_mse.get)
        self.weights = _ridge(Z, y, self.alpha)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("RidgeProbe.predict before fit")
        Z = (np.asarray(X, np.float64) - self.mean) / self.scale
        return Z @ self.weights[:-1] + self.weights[-1]


# --- video-level probes ------------------------------------------------------------------

VIDEO_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class VideoProbeResult:
    """Test metrics, test predictions (values, or class names) and the chosen ridge."""

    metrics: dict
    predictions: list
    alpha: float


def video_probe(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, kind: str,
                alphas: Sequence[float] = VIDEO_ALPHAS, folds: int = 4) -> VideoProbeResult:
    """Ridge probe on standardised video features, strength cross-validated over videos.

    kind: ``regression`` (float targets; metrics MAE, RMSE, R2, bias) or ``classification``
    (class names; one-hot ridge, argmax; metrics accuracy and balanced accuracy over the
    classes present in the test labels).
    """
    from echofm.tasks import metrics as M

    if kind == "regression":
        probe = RidgeProbe(alphas, folds).fit(train_x, np.asarray(train_y, np.float64))
        pred = probe.predict(test_x)
        return VideoProbeResult(M.regression_metrics(list(test_y), pred.tolist()), pred.tolist(), probe.alpha)
    if kind != "classification":
        raise ValueError(f"kind must be regression or classification, got {kind!r}")
    classes = sorted(set(train_y))
    if len(classes) < 2:
        raise ValueError(f"classification needs at least two classes in the training labels, got {classes}")
    onehot = np.eye(len(classes))[[classes.index(c) for c in train_y]]
    probe = RidgeProbe(alphas, folds).fit(train_x, onehot)
    pred = [classes[i] for i in probe.predict(test_x).argmax(axis=1)]
    truth = list(test_y)
    correct = [p == t for p, t in zip(pred, truth)]
    recalls = [np.mean([c for c, t in zip(correct, truth) if t == name]) for name in sorted(set(truth))]
    metrics = {"n": len(truth), "accuracy": float(np.mean(correct)), "balanced_accuracy": float(np.mean(recalls)),
               "classes": classes}
    return VideoProbeResult(metrics, pred, probe.alpha)
