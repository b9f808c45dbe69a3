"""Periodicity diagnostics of per-time-step embeddings (projector outputs ``frames``)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def phase_contrast(frames: ArrayLike, period: Optional[Union[float, ArrayLike]] = None, *,
                   phases: Optional[ArrayLike] = None, tolerance: float = 0.125) -> float:
    """Mean cosine similarity of same-phase pairs minus that of opposite-phase pairs.

    frames: embeddings ``[T, D]`` or ``[N, T, D]`` (one row per time step of a clip).
    period: cycle length in time steps — one number, or one per clip ``[N]``; step t then
        has phase ``(t / period) mod 1``. Or give ``phases`` instead: ``[T]`` or ``[N, T]``
        phase of each step in cycles (e.g. 0 = end-diastole), taken mod 1.
    tolerance: pairs within ``tolerance`` cycles of each other are "same phase", pairs
        within ``tolerance`` of half a cycle apart are "opposite"; a step is never paired
        with itself. Pairs are formed within a clip only.

    Returns the mean over clips that have both kinds of pair (NaN when none has). Positive
    means the embedding repeats with the cycle; about 0 means it ignores the phase.
    """
    z = _as_array(frames)
    if z.ndim == 2:
        z = z[None]
    if z.ndim != 3:
        raise ValueError(f"frames must be [T, D] or [N, T, D], got shape {list(z.shape)}")
    N, T, _ = z.shape
    if (period is None) == (phases is None):
        raise ValueError("give exactly one of period (time steps per cycle) or phases")
    if phases is None:
        periods = np.broadcast_to(_as_array(period).reshape(-1), (N,)) if np.size(period) in (1, N) else None
        if periods is None:
            raise ValueError(f"period must be one number or one per clip ({N}), got {np.size(period)}")
        if np.any(periods <= 0):
            raise ValueError("period must be positive")
        ph = np.arange(T)[None, :] / periods[:, None]
    else:
        ph = _as_array(phases)
        ph = np.broadcast_to(ph if ph.ndim == 2 else ph[None], (N, T)) if ph.shape[-1] == T else None
        if ph is None:
            raise ValueError(f"phases must be [T] or [N, T] with T = {T}")
    ph = np.mod(ph, 1.0)
    unit = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    sims = unit @ unit.transpose(0, 2, 1)  # [N, T, T]
    gap = np.abs(ph[:, :, None] - ph[:, None, :])
    gap = np.minimum(gap, 1.0 - gap)  # circular phase distance in [0, 0.5]
    off_diag = ~np.eye(T, dtype=bool)[None]
    same = (gap <= tolerance) & off_diag
    opposite = (gap >= 0.5 - tolerance) & off_diag
    scores = [sims[i][same[i]].mean() - sims[i][opposite[i]].mean()
              for i in range(N) if same[i].any() and opposite[i].any()]
    return float(np.mean(scores)) if scores else float("nan")
