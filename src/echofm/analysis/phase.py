"""Cardiac phase from pixels (and from model embeddings): cycle length, heart rate, ED/ES.

Pixels alone: the frame-by-frame self-similarity of the motion component (each frame
minus the clip's mean image) repeats once per beat, so the lag profile of that matrix
peaks at the cycle length. ED and ES come from a cavity-size proxy: blood is dark, so the
fraction of dark pixels in the ventricular part of the sector is largest at end-diastole
and smallest at end-systole. Embeddings: the same lag analysis on the projector's
per-time-step self-similarity gives the cycle length the model perceives.

Reading the embeddings of a whole video takes two steps, because a window's per-time-step
embeddings are not a frame-by-frame signal by themselves:

* **per-window centring** (``window_centred``): attention spans the whole window, so most of
  a step's embedding is the window's content, shared by all its steps. Compared raw, steps
  of one window all look alike and the lag profile peaks at window lengths, not beats.
  Subtracting each window's mean step (and each step position's mean over windows, the
  position embedding) leaves what changes within it: the phase.
* **frame resolution** (``phase_from_step_samples``): one step covers ``t_patch_size x
  frame_step`` source frames (4 for a 15 fps model on a 30 fps cine), too coarse for a
  27-frame beat. Windows laid from every frame offset within one step give one step
  embedding centred on (nearly) every frame, so the lag profile is over frames. Steps made
  of padding (past a video's end) are dropped: they hold no new phase.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
from scipy.ndimage import uniform_filter1d, zoom
from scipy.signal import find_peaks


@dataclass
class PhaseResult:
    """Cycle length (frames), heart rate (bpm, when fps is known), ED/ES frames of every beat;
    frame_step: the step a model's windows took through the frames (embeddings only)."""

    cycle_frames: Optional[float]
    heart_rate_bpm: Optional[float]
    ed_frames: list[int] = field(default_factory=list)
    es_frames: list[int] = field(default_factory=list)
    fps: Optional[float] = None
    cavity_curve: list[float] = field(default_factory=list)
    lag_profile: list[float] = field(default_factory=list)
    source: str = "pixels"
    frame_step: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)


def _gray_small(frames: np.ndarray, side: int = 48) -> np.ndarray:
    """uint8 [T, H, W(, 3)] -> float [T, side, side] in [0, 1]."""
    x = frames.astype(np.float32) / 255.0
    if x.ndim == 4:
        x = x.mean(axis=-1)
    T, H, W = x.shape
    return zoom(x, (1, side / H, side / W), order=1)


def motion_self_similarity(frames: np.ndarray, side: int = 32) -> np.ndarray:
    """[T, T] cosine similarity of frames after removing each frame's and the clip's mean."""
    x = _gray_small(frames, side).reshape(len(frames), -1)
    x = x - x.mean(axis=1, keepdims=True)
    x = x - x.mean(axis=0, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-8
    return x @ x.T


def lag_profile(similarity: np.ndarray) -> np.ndarray:
    """Mean similarity at each lag k = 0..T-1 (the diagonals of a [T, T] map)."""
    T = similarity.shape[0]
    return np.array([np.diagonal(similarity, k).mean() for k in range(T)])


def cycle_length(similarity: np.ndarray, min_lag: int = 3, max_fraction: float = 0.75) -> Optional[float]:
    """Cycle length (in steps of the map) from the first clear reprise of the lag profile
    of ``similarity`` (see ``cycle_from_profile``)."""
    return cycle_from_profile(lag_profile(similarity), min_lag, max_fraction)


def cycle_from_profile(prof: np.ndarray, min_lag: int = 3, max_fraction: float = 0.75,
                       subharmonic_share: Optional[float] = None) -> Optional[float]:
    """Cycle length (in lags) from the first clear reprise of a lag profile ``prof[k]`` (the
    mean similarity at lag k, k = 0 .. T-1).

    The profile must dip and rise again within ``max_fraction`` of the span; the peak is
    refined to sub-step precision by a parabola through it and its neighbours. None when no
    cycle is visible.

    subharmonic_share: also take an earlier, weaker peak (at least this share of the
    strongest's prominence) when the strongest peak's lag is a whole multiple of it (within
    10%): the strongest is then the second or third beat, not the cycle (an octave error).
    """
    prof = np.asarray(prof, dtype=np.float64)
    T = len(prof)
    hi = max(min_lag + 1, int(T * max_fraction))
    if hi >= T - 1 or T < 2 * min_lag:
        return None
    peaks, props = find_peaks(prof[: hi + 1], prominence=0.05)
    keep = [(p, q) for p, q in zip(peaks, props["prominences"]) if p >= min_lag]
    if not keep:
        return None
    # The fundamental period is the first clear reprise; later peaks are its multiples and
    # may stand higher (slow probe or breathing drift), so do not simply take the highest.
    strongest = max(q for _, q in keep)
    k = next(p for p, q in keep if q >= 0.4 * strongest)
    if subharmonic_share is not None:
        top = max(keep, key=lambda pq: pq[1])[0]
        for p, q in keep:
            ratio = top / p
            whole = round(ratio)
            if p < k and q >= subharmonic_share * strongest and whole >= 2 and abs(ratio - whole) <= 0.1 * whole:
                k = p
                break
    if 0 < k < T - 1:
        a, b, c = prof[k - 1], prof[k], prof[k + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float(k + np.clip(shift, -0.5, 0.5))
    return float(k)


def sector_mask(frames: np.ndarray, side: int = 48) -> np.ndarray:
    """[side, side] bool: pixels that show ultrasound (bright at some time, varying)."""
    x = _gray_small(frames, side)
    return (x.max(axis=0) > 0.08) & (x.std(axis=0) > 0.005)


def cavity_curve(frames: np.ndarray, ventricle_fraction: float = 0.6, dark: float = 0.2,
                 side: int = 48) -> np.ndarray:
    """Per-frame fraction of dark pixels in the ventricular (apex-side) part of the sector.

    ``ventricle_fraction`` keeps the top part of the sector's rows (apical display puts
    the ventricles nearest the probe), because the atria fill while the ventricles empty
    and would cancel the signal.
    """
    x = _gray_small(frames, side)
    cone = sector_mask(frames, side)
    rows = np.where(cone.any(axis=1))[0]
    if len(rows) == 0:
        return np.zeros(len(frames))
    cut = rows[0] + int(ventricle_fraction * (rows[-1] - rows[0] + 1))
    cone[cut:] = False
    area = ((x < dark) & cone).reshape(len(frames), -1).sum(1) / max(int(cone.sum()), 1)
    return uniform_filter1d(area.astype(np.float64), size=3, mode="nearest")


def find_ed_es(curve: np.ndarray, cycle: Optional[float]) -> tuple[list[int], list[int]]:
    """ES = cavity minima about one cycle apart; ED = the cavity maximum before each ES.

    End-systole is a sharp minimum and easy to find; end-diastole sits on a flatter top
    (diastasis, atrial kick), so it is searched between consecutive ES frames and, on a
    flat top, the latest frame within 2% of the peak is taken (ejection starts after it).
    Extrema at the very first or last frame are dropped: the clip may cut a beat there.
    """
    T = len(curve)
    if cycle is None or cycle < 3:
        return [int(np.argmax(curve))], [int(np.argmin(curve))]
    span = float(curve.max() - curve.min()) or 1.0
    es, _ = find_peaks(-curve, distance=max(2, int(round(0.7 * cycle))), prominence=0.2 * span)
    es = [int(i) for i in es]
    ed: list[int] = []
    bounds = [max(0, (es[0] if es else T) - int(round(cycle)))] + es + [T]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi - lo < 0.5 * cycle:
            continue
        window = curve[lo:hi] if lo == 0 else curve[lo + 1:hi]
        offset = lo if lo == 0 else lo + 1
        if len(window) == 0:
            continue
        top = window.max()
        j = offset + int(np.where(window >= top - 0.02 * span)[0].max())
        if 0 < j < T - 1 and curve[j] >= curve.min() + 0.5 * span:
            ed.append(j)
    return ed, es


def phase_from_pixels(frames: np.ndarray, fps: Optional[float] = None) -> PhaseResult:
    """Cycle length, heart rate and ED/ES frames of a clip, from its pixels alone.

    frames: uint8 [T, H, W] or [T, H, W, 3] (sector already masked or not).
    """
    if frames.ndim not in (3, 4) or len(frames) < 6:
        raise ValueError(f"phase analysis needs a cine of at least 6 frames, got shape {frames.shape}")
    sim = motion_self_similarity(frames)
    cycle = cycle_length(sim)
    curve = cavity_curve(frames)
    ed, es = find_ed_es(curve, cycle)
    hr = 60.0 * fps / cycle if (cycle and fps) else None
    return PhaseResult(cycle_frames=cycle, heart_rate_bpm=hr, ed_frames=ed, es_frames=es, fps=fps,
                       cavity_curve=curve.round(5).tolist(), lag_profile=lag_profile(sim).round(5).tolist())


def phase_from_embeddings(frame_embeddings: np.ndarray, frames_per_step: int,
                          fps: Optional[float] = None) -> PhaseResult:
    """Cycle length and heart rate from per-time-step embeddings [T, D] of one clip."""
    z = np.asarray(frame_embeddings, dtype=np.float64)
    z = z - z.mean(axis=0, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-8
    sim = z @ z.T
    steps = cycle_length(sim, min_lag=2)
    cycle = steps * frames_per_step if steps else None
    hr = 60.0 * fps / cycle if (cycle and fps) else None
    return PhaseResult(cycle_frames=cycle, heart_rate_bpm=hr, fps=fps, source="embeddings",
                       lag_profile=lag_profile(sim).round(5).tolist())


def window_centred(step_embeddings: np.ndarray, valid: Optional[np.ndarray] = None, rounds: int = 2) -> np.ndarray:
    """Step embeddings ``[W, T, D]`` with each window's mean step and each step position's
    mean over windows taken out (over the ``valid`` steps ``[W, T]`` bool; default all), so
    what remains is what changes within a window: the phase. Invalid steps come back as zeros.

    The window's mean is its content, shared by all its steps (attention spans the window).
    The position's mean is the position embedding, the same at step k of every window: left
    in, steps at one position look alike in every window whatever the phase, and the lag
    profile peaks at the window's length. Over windows at many phases of the beat, the phase
    averages out of that mean. ``rounds`` alternations settle the two means when some
    windows have padded steps.
    """
    z = np.asarray(step_embeddings, dtype=np.float64)
    if z.ndim != 3:
        raise ValueError(f"step embeddings must be [windows, steps, dim], got shape {z.shape}")
    keep = np.ones(z.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    weights = keep[..., None].astype(np.float64)
    z = z * weights
    for _ in range(max(1, rounds)):
        z = z - (z.sum(1, keepdims=True) / np.maximum(weights.sum(1, keepdims=True), 1.0))
        z = z * weights
        if len(z) > 1:
            z = z - (z.sum(0, keepdims=True) / np.maximum(weights.sum(0, keepdims=True), 1.0))
            z = z * weights
    return z


def sample_lag_profile(times: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of embedding pairs at each lag ``round(|t_i - t_j|)`` = 0, 1, ...
    (samples at arbitrary times, e.g. step centres in frames); lags no pair has are
    interpolated from their neighbours."""
    t = np.asarray(times, dtype=np.float64)
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-8)
    sim = z @ z.T
    lags = np.rint(np.abs(t[:, None] - t[None, :])).astype(np.int64).ravel()
    total = np.bincount(lags, weights=sim.ravel())
    count = np.bincount(lags)
    seen = count > 0
    prof = np.zeros(len(count))
    prof[seen] = total[seen] / count[seen]
    if not seen.all():
        k = np.arange(len(count))
        prof = np.interp(k, k[seen], prof[seen])
    return prof


def phase_from_step_samples(times: np.ndarray, embeddings: np.ndarray, fps: Optional[float] = None,
                            min_lag: int = 3, frame_step: Optional[int] = None) -> PhaseResult:
    """Cycle length (in source frames) and heart rate from per-time-step embeddings ``[N, D]``
    sampled at ``times`` ``[N]`` (each step's centre, in source frames), already centred per
    window (``window_centred``). min_lag: the shortest cycle considered, in frames (about one
    step: neighbouring steps share frames and look alike)."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 2:
        return PhaseResult(cycle_frames=None, heart_rate_bpm=None, fps=fps, source="embeddings",
                           frame_step=frame_step)
    prof = sample_lag_profile(times - times.min(), embeddings)
    cycle = cycle_from_profile(prof, min_lag=min_lag, subharmonic_share=0.2)
    hr = 60.0 * fps / cycle if (cycle and fps) else None
    return PhaseResult(cycle_frames=cycle, heart_rate_bpm=hr, fps=fps, source="embeddings",
                       lag_profile=prof.round(5).tolist(), frame_step=frame_step)
