"""Uncertainty of a comparison between two arms (pretrained vs random init): the gain, its
95% interval, and the words a reader sees.

The gain is oriented so that a positive value means the first arm (pretrained) did better:
``a - b`` where higher is better, ``b - a`` where lower is better. Two intervals:

- ``paired_bootstrap``: over the held-out clips, both arms scored on the same clips (the
  clips are resampled together, so what the clips share cancels);
- ``t_interval``: over seeds (one gain per seed, Student's t with n - 1 degrees of freedom).

``verdict`` reads an interval: "no clear difference" whenever it contains 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

NO_CLEAR_DIFFERENCE = "no clear difference"


@dataclass
class Interval:
    """A mean gain and its 95% interval ``[lo, hi]`` (None when it cannot be computed, e.g. one seed)."""

    mean: float
    lo: Optional[float]
    hi: Optional[float]
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": [self.lo, self.hi], "n": self.n}


def oriented_gain(a, b, higher_is_better: bool) -> np.ndarray:
    """``a - b`` when higher is better, ``b - a`` when lower is better (positive: ``a`` better)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a - b if higher_is_better else b - a


def paired_bootstrap(a: Sequence[float], b: Sequence[float], higher_is_better: bool, *, resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> Interval:
    """The mean oriented gain of ``a`` over ``b`` on the same items (per-clip scores, in the
    same order) and its percentile bootstrap interval, items resampled with replacement.
    Items where either score is NaN are left out."""
    gain = oriented_gain(a, b, higher_is_better)
    if gain.ndim != 1:
        raise ValueError(f"paired_bootstrap: per-item scores must be 1-D, got shape {gain.shape}")
    gain = gain[np.isfinite(gain)]
    if gain.size == 0:
        raise ValueError("paired_bootstrap: no item has a score in both arms")
    rng = np.random.default_rng(seed)
    means = gain[rng.integers(0, gain.size, size=(resamples, gain.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(gain.mean()), float(lo), float(hi), int(gain.size))


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of ``values`` (one gain per seed) and its Student-t interval; no interval
    from fewer than two values."""
    from scipy import stats

    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("t_interval: no finite value")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, None, None, 1)
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size))


def verdict(lo: Optional[float], hi: Optional[float], better: str = "pretrained better",
            worse: str = "random init better") -> str:
    """What an interval of an oriented gain says: ``better`` when it lies above 0, ``worse``
    below, otherwise "no clear difference" (also when there is no interval)."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return NO_CLEAR_DIFFERENCE
    if lo > 0:
        return better
    if hi < 0:
        return worse
    return NO_CLEAR_DIFFERENCE
