"""Linear probes fit in closed form on frozen features: ED/ES detection and video labels.

ED/ES: does an encoder's per-time-step representation carry the cardiac phase? A ridge
regression maps each time step's features to the LV volume during that step,
standardised within its window (so hearts of every size share one target scale); its
strength is chosen by cross-validation grouped by video. The features are the EchoFM
per-time-step embeddings (``model.embed(clips).frames``, ``[N, T, D]``) or the encoder's
tokens averaged over each step's spatial positions. On a new video the predictions of
overlapping windows are interpolated to frames and averaged into one volume curve; ED
frames are its maxima and ES frames its minima, picked by the pixel baseline's rule
(``analysis.phase.find_ed_es``). ``score_events``: a true event counts as found when a
predicted event of its kind lies within ``tolerance`` frames (one time step by default);
its frame error is the distance to the nearest predicted event of its kind. Only events
strictly inside the video are scored: nobody can place an extremum on its first or last
frame, where the clip may cut the beat.

Video labels (EF, view): ``video_features`` gives each video's mean-pooled tokens, on which
``echofm.probes.ridge.video_probe`` fits the same ridge, standardised per feature over the
training videos (regression, or one-hot targets and argmax for classes). Standardising
first is what makes a closed-form probe fair to features whose variation between videos is
small next to their common part; fine-tuning's gradient-trained linear probe does the same
with an affine-free batch norm (``model.heads.FeatureNorm``).

Layouts: videos are uint8 ``[T, H, W]`` / ``[T, H, W, 3]``; model clips ``[N, 3, F, S, S]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from echofm.analysis.phase import cycle_length, find_ed_es, phase_from_pixels
from echofm.windows import WindowSpec, plan_windows, run_windows, spec_for
from echofm.probes.ridge import RidgeProbe

EVENTS = ("ed", "es")
FEATURES = ("frames", "tokens")


@dataclass
class PhaseVideo:
    """One video with its phase truth.

    frames: uint8 ``[T, H, W]`` or ``[T, H, W, 3]``. volume: LV volume per frame ``[T]``
    (needed to train the probe, not to test it). ed_frames / es_frames: true event frames.
    """

    id: str
    frames: np.ndarray
    volume: Optional[np.ndarray] = None
    ed_frames: list[int] = field(default_factory=list)
    es_frames: list[int] = field(default_factory=list)
    fps: Optional[float] = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def phase_videos(samples: Sequence) -> list[PhaseVideo]:
    """Task samples (``datasets.Sample``) with ``meta`` ``lv_volume``, ``ed_frames`` and
    ``es_frames`` (phantoms carry them) as ``PhaseVideo``; the frame rate is ``meta["fps"]``,
    else the one the frames were read with."""
    videos = []
    for s in samples:
        frames, fps = s.load_frames()
        videos.append(PhaseVideo(id=s.id, frames=np.asarray(frames), volume=np.asarray(s.meta["lv_volume"]),
                                 ed_frames=list(s.meta["ed_frames"]), es_frames=list(s.meta["es_frames"]),
                                 fps=s.meta.get("fps") or fps))
    return videos


@dataclass
class PhaseProbeConfig:
    """How videos are cut into windows and how the ridge strength is chosen.

    window_step: frames between the starts of a test video's windows; an odd step (with
    tubelets of 2) puts step boundaries on every frame, so the averaged curve has
    single-frame resolution. train_window_step: the same for training videos (their
    windows only supply rows to the regression, so fewer suffice).
    frame_step: take every Nth frame into a window (None: what the model's input contract
    asks for each video's frame rate, as every consumer does).
    alphas: ridge strengths tried, per training row on standardised features.
    folds: cross-validation folds (grouped by video) for choosing alpha.
    tolerance: frames within which an event counts as found (None: one time step,
    ``t_patch_size * frame_step``).
    features: what a time step's embedding is, one probe each: ``frames`` (the per-time-step
    projector embeddings, ``embed().frames``) and/or ``tokens`` (the encoder's tokens
    averaged over each time step's spatial positions).
    """

    window_step: int = 3
    train_window_step: int = 8
    frame_step: Optional[int] = None
    alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    folds: int = 4
    batch_size: int = 8
    tolerance: Optional[int] = None
    precision: str = "fp32"
    device: str = "cpu"
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        self.features = (self.features,) if isinstance(self.features, str) else tuple(self.features)
        if not self.features or any(k not in FEATURES for k in self.features):
            raise ValueError(f"features must be some of {', '.join(FEATURES)}, got {self.features!r}")
        if min(self.window_step, self.train_window_step, self.frame_step or 1, self.batch_size) < 1:
            raise ValueError("window steps, frame_step and batch_size must be at least 1")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be positive, got {self.alphas}")


# --- windows and per-step embeddings -----------------------------------------------------

def step_frames(indices: np.ndarray, t_patch: int) -> np.ndarray:
    """Window frame indices ``[F]`` -> the frames of each time step ``[F // t_patch, t_patch]``."""
    return np.asarray(indices).reshape(-1, t_patch)


def step_targets(volume: np.ndarray, indices: np.ndarray, t_patch: int) -> Optional[np.ndarray]:
    """LV volume of each time step (mean over its frames), standardised within the window;
    None when the volume barely changes in the window (nothing to learn from)."""
    v = np.asarray(volume, dtype=np.float64)[step_frames(indices, t_patch)].mean(axis=1)
    sd = v.std()
    if sd < 1e-6 * max(1.0, abs(v.mean())):
        return None
    return (v - v.mean()) / sd


@dataclass
class StepEmbeddings:
    """Per-time-step features of one video's windows: ``{kind: float [W, T, D]}`` and the
    frame indices ``[F]`` of each window."""

    features: dict[str, np.ndarray]
    windows: list[np.ndarray]


def probe_spec(model, config: PhaseProbeConfig, fps: Optional[float], window_step: Optional[int] = None,
               where: str = "a video") -> WindowSpec:
    """The probe windows of a video at ``fps``: the model contract's frame step (or the
    config's), windows every ``window_step`` frames (default ``config.window_step``)."""
    return spec_for(model.contract, fps, frame_step=config.frame_step, window_step=window_step or config.window_step,
                    where=where)


def embed_steps(model, frames: np.ndarray, config: PhaseProbeConfig, window_step: Optional[int] = None,
                fps: Optional[float] = None) -> StepEmbeddings:
    """Per-time-step features of one video's probe windows (``probe_spec``), every kind in
    ``config.features`` from one forward pass.

    model: anything with ``cfg``, ``contract`` and ``embed(clips)`` returning ``.frames
    [N, T, D]`` and (for ``tokens``) ``.tokens [N, T*L, D]`` (an ``EchoFM``).
    """
    cfg = model.cfg
    windows = plan_windows(len(frames), probe_spec(model, config, fps, window_step))
    steps = cfg.num_frames // cfg.t_patch_size

    def features(clips):
        emb = model.embed(clips)
        out = {}
        if "frames" in config.features:
            out["frames"] = emb.frames
        if "tokens" in config.features:  # time-major [N, T*L, D]: average each step's L positions
            n, _, d = emb.tokens.shape
            out["tokens"] = emb.tokens.float().reshape(n, steps, -1, d).mean(dim=2)
        return out

    out = run_windows(features, frames, windows, config.batch_size, config.device, config.precision,
                      size=cfg.img_size)
    return StepEmbeddings({k: v.numpy() for k, v in out.items()}, list(windows))


# --- curves and events -------------------------------------------------------------------

def merge_step_predictions(preds: np.ndarray, windows: Sequence[np.ndarray], t_patch: int,
                           total: int) -> np.ndarray:
    """Per-window step predictions ``[W, T]`` -> one curve over the video's frames ``[total]``.

    Each window's values sit at its steps' centre frames and are linearly interpolated
    between them (held flat out to the window's own first and last frame); each frame
    averages the windows that contain it.
    """
    frames = np.arange(total, dtype=np.float64)
    acc, count = np.zeros(total), np.zeros(total)
    for p, idx in zip(preds, windows):
        centres = step_frames(idx, t_patch).mean(axis=1)
        order = np.argsort(centres, kind="stable")
        inside = (frames >= np.min(idx)) & (frames <= np.max(idx))
        acc[inside] += np.interp(frames[inside], centres[order], np.asarray(p, np.float64)[order])
        count[inside] += 1
    covered = count > 0
    if not covered.any():
        raise ValueError("no window covers any frame of the video")
    curve = np.empty(total)
    curve[covered] = acc[covered] / count[covered]
    if not covered.all():  # windows with a period > 1 can skip frames: interpolate them
        curve[~covered] = np.interp(frames[~covered], frames[covered], curve[covered])
    return curve


def curve_cycle(curve: np.ndarray, min_lag: int = 3) -> Optional[float]:
    """Cycle length (frames) of a 1-D curve from its autocorrelation (None if none shows)."""
    z = np.asarray(curve, np.float64)
    z = z - z.mean()
    sd = z.std()
    if sd < 1e-12:
        return None
    z /= sd
    return cycle_length(np.outer(z, z), min_lag=min_lag)


def events_from_curve(curve: np.ndarray) -> tuple[list[int], list[int]]:
    """ED (maxima) and ES (minima) frames of a volume-like curve, at least one of each.

    Uses ``find_ed_es`` (the pixel baseline's rule) with the curve's own cycle; when that
    finds no event of a kind, the curve's largest (smallest) inner value stands in.
    """
    curve = np.asarray(curve, np.float64)
    ed, es = find_ed_es(curve, curve_cycle(curve))
    inner = curve[1:-1] if len(curve) > 2 else curve
    offset = 1 if len(curve) > 2 else 0
    if not ed:
        ed = [offset + int(np.argmax(inner))]
    if not es:
        es = [offset + int(np.argmin(inner))]
    return sorted(ed), sorted(es)


def score_events(pred: dict[str, Sequence[int]], truth: dict[str, Sequence[int]], num_frames: int,
                 tolerance: int) -> dict:
    """Per-video event errors.

    pred / truth: ``{"ed": [...], "es": [...]}`` frame indices. Returns, per kind, the
    frame error of each inner true event (distance to the nearest predicted event of that
    kind, None when none was predicted) and how many predicted events lie within
    ``tolerance`` of a true one (any true event, boundaries included).
    """
    out: dict = {}
    for kind in EVENTS:
        p = np.asarray(sorted(pred.get(kind, [])), dtype=np.int64)
        t_all = np.asarray(sorted(truth.get(kind, [])), dtype=np.int64)
        inner = t_all[(t_all > 0) & (t_all < num_frames - 1)]
        errors = [int(np.min(np.abs(p - f))) if len(p) else None for f in inner]
        hits = int(sum(1 for f in p if len(t_all) and np.min(np.abs(t_all - f)) <= tolerance))
        out[kind] = {"errors": errors, "predicted": int(len(p)), "predicted_near_truth": hits}
    return out


def summarise_scores(scores: Sequence[dict], tolerance: int) -> dict:
    """Pool per-video scores, per kind and over both kinds: the share of true events found
    within ``tolerance`` frames (``found``), the mean absolute frame error (``mae_frames``;
    a missing prediction counts as an error of the video's length), and the share of
    predicted events that lie near a true one (``precision``)."""
    summary: dict = {"tolerance_frames": tolerance, "videos": len(scores)}
    pooled_found = pooled_true = pooled_pred = pooled_near = 0
    for kind in EVENTS:
        errors = [e if e is not None else s["num_frames"] for s in scores for e in s[kind]["errors"]]
        found = sum(1 for e in errors if e <= tolerance)
        predicted = sum(s[kind]["predicted"] for s in scores)
        near = sum(s[kind]["predicted_near_truth"] for s in scores)
        summary[f"{kind}_events"] = len(errors)
        summary[f"{kind}_found"] = found / len(errors) if errors else float("nan")
        summary[f"{kind}_mae_frames"] = float(np.mean(errors)) if errors else float("nan")
        pooled_found, pooled_true = pooled_found + found, pooled_true + len(errors)
        pooled_pred, pooled_near = pooled_pred + predicted, pooled_near + near
    summary["found"] = pooled_found / pooled_true if pooled_true else float("nan")
    n_ed, n_es = summary["ed_events"], summary["es_events"]
    summary["mae_frames"] = ((summary["ed_mae_frames"] * n_ed if n_ed else 0.0)
                             + (summary["es_mae_frames"] * n_es if n_es else 0.0)) / (n_ed + n_es) \
        if n_ed + n_es else float("nan")
    summary["precision"] = pooled_near / pooled_pred if pooled_pred else float("nan")
    return summary


# --- the whole probe ---------------------------------------------------------------------

@dataclass
class PhaseProbeResult:
    """Pooled metrics, one record per test video (curve, events, errors), the chosen ridge."""

    metrics: dict
    records: list[dict]
    alpha: Optional[float] = None
    cv_mse: dict = field(default_factory=dict)


def probe_tolerance(model, config: PhaseProbeConfig, videos: Sequence[PhaseVideo]) -> int:
    """The configured tolerance, else one time step of the test videos' windows (frames)."""
    if config.tolerance is not None:
        return config.tolerance
    step = max(probe_spec(model, config, v.fps, where=v.id).frame_step for v in videos)
    return model.cfg.t_patch_size * step


def fit_phase_probe(embedded: Sequence[StepEmbeddings], videos: Sequence[PhaseVideo], t_patch: int,
                    config: PhaseProbeConfig, kind: str) -> RidgeProbe:
    """Fit the ridge probe from ``kind`` features of the training windows to their step targets."""
    X, y, groups = [], [], []
    for k, (emb, video) in enumerate(zip(embedded, videos)):
        if video.volume is None:
            raise ValueError(f"{video.id}: training videos need the LV volume per frame")
        for e, idx in zip(emb.features[kind], emb.windows):
            target = step_targets(video.volume, idx, t_patch)
            if target is not None:
                X.append(e)
                y.append(target)
                groups += [k] * len(target)
    if not X:
        raise ValueError("no training window shows any LV volume change")
    return RidgeProbe(config.alphas, config.folds).fit(np.concatenate(X), np.concatenate(y), np.asarray(groups))


def apply_phase_probe(probe: RidgeProbe, embedded: Sequence[StepEmbeddings], videos: Sequence[PhaseVideo],
                      t_patch: int, tolerance: int, kind: str) -> PhaseProbeResult:
    """Predict each test video's volume curve, pick ED/ES and score them against the truth."""
    records, scores = [], []
    for emb, video in zip(embedded, videos):
        feats = emb.features[kind]
        preds = probe.predict(feats.reshape(-1, feats.shape[-1])).reshape(feats.shape[:2])
        curve = merge_step_predictions(preds, emb.windows, t_patch, video.num_frames)
        ed, es = events_from_curve(curve)
        score = score_events({"ed": ed, "es": es}, {"ed": video.ed_frames, "es": video.es_frames},
                             video.num_frames, tolerance)
        score["num_frames"] = video.num_frames
        scores.append(score)
        records.append({"id": video.id, "curve": curve.round(4).tolist(), "ed_frames": ed, "es_frames": es,
                        "true_ed_frames": list(video.ed_frames), "true_es_frames": list(video.es_frames),
                        "ed_errors": score["ed"]["errors"], "es_errors": score["es"]["errors"]})
    return PhaseProbeResult(summarise_scores(scores, tolerance), records, probe.alpha, dict(probe.cv_mse))


def embed_videos(model, videos: Sequence[PhaseVideo], config: PhaseProbeConfig, window_step: Optional[int] = None,
                 progress: Optional[Callable] = None) -> list[StepEmbeddings]:
    """``embed_steps`` for each video (model put in eval mode); ``progress(1)`` after each."""
    model.eval()
    out = []
    for video in videos:
        out.append(embed_steps(model, video.frames, config, window_step, video.fps))
        if progress:
            progress(1)
    return out


def phase_probe(train_emb: Sequence[StepEmbeddings], train: Sequence[PhaseVideo],
                test_emb: Sequence[StepEmbeddings], test: Sequence[PhaseVideo], t_patch: int, tolerance: int,
                config: PhaseProbeConfig) -> dict[str, PhaseProbeResult]:
    """Fit one probe per feature kind on embedded training videos; score ED/ES on the test ones."""
    results = {}
    for kind in config.features:
        probe = fit_phase_probe(train_emb, train, t_patch, config, kind)
        results[kind] = apply_phase_probe(probe, test_emb, test, t_patch, tolerance, kind)
    return results


def run_phase_probe(model, train: Sequence[PhaseVideo], test: Sequence[PhaseVideo],
                    config: Optional[PhaseProbeConfig] = None,
                    progress: Optional[Callable] = None) -> dict[str, PhaseProbeResult]:
    """Embed the videos (training ones every ``train_window_step`` frames, test ones every
    ``window_step``), then ``phase_probe``: ``{kind: PhaseProbeResult}`` per feature kind."""
    config = config or PhaseProbeConfig()
    train_emb = embed_videos(model, train, config, config.train_window_step, progress)
    test_emb = embed_videos(model, test, config, config.window_step, progress)
    return phase_probe(train_emb, train, test_emb, test, model.cfg.t_patch_size, probe_tolerance(model, config, test),
                       config)


# --- video-level probes ------------------------------------------------------------------

def video_features(embedded: Sequence[StepEmbeddings], kind: str = "tokens") -> np.ndarray:
    """One vector per video ``[N, D]``: its ``kind`` features averaged over steps and windows
    (for ``tokens``, the mean of all its windows' tokens: the linear probe's pooling)."""
    return np.stack([e.features[kind].mean(axis=(0, 1)) for e in embedded])


def pixel_phase_baseline(test: Sequence[PhaseVideo], tolerance: int) -> PhaseProbeResult:
    """ED/ES from pixels alone (``analysis.phase.phase_from_pixels``), scored the same way."""
    records, scores = [], []
    for video in test:
        res = phase_from_pixels(video.frames, video.fps)
        score = score_events({"ed": res.ed_frames, "es": res.es_frames},
                             {"ed": video.ed_frames, "es": video.es_frames}, video.num_frames, tolerance)
        score["num_frames"] = video.num_frames
        scores.append(score)
        records.append({"id": video.id, "curve": res.cavity_curve, "ed_frames": res.ed_frames,
                        "es_frames": res.es_frames, "true_ed_frames": list(video.ed_frames),
                        "true_es_frames": list(video.es_frames), "ed_errors": score["ed"]["errors"],
                        "es_errors": score["es"]["errors"]})
    return PhaseProbeResult(summarise_scores(scores, tolerance), records)
