"""Running a model on whole studies: source -> preprocessed frames -> windows -> embeddings, cycle.

Uses the same preprocessing as `echofm prepare` (``preprocess_clip``), so a study gives
the same pixels whether it was prepared first or read directly, and the same windows as
every other consumer (``echofm.windows``), sampled as the model's input contract asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from echofm.io import Clip, read_clip
from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip, resize_frames
from echofm.windows import WindowSpec, plan_windows, run_windows, spec_for


def load_study(path: str | Path, size: int, mask_sector: bool = True, target_fps: Optional[float] = None) -> Clip:
    """Read any echo source and preprocess it to ``size`` x ``size`` (sector masked, cropped).

    Prepared cache clips (``.npy`` written by `echofm prepare`) are already preprocessed:
    they are only resized when needed, and take their frame rate from the cache's
    ``manifest.csv`` (a bare ``.npy`` states none).
    """
    clip = read_clip(path)
    if clip.source_kind == "npy":
        if clip.frames.shape[1:3] != (size, size):
            clip.frames = resize_frames(clip.frames, size)
        if clip.fps is None:
            clip.fps = manifest_fps(Path(path))
        return clip
    return preprocess_clip(clip, PreprocessConfig(size=size, mask_sector=mask_sector, target_fps=target_fps))


def manifest_fps(path: Path) -> Optional[float]:
    """The fps the ``manifest.csv`` of the prepared cache holding ``path`` states for it."""
    import csv

    for folder in (path.parent, path.parent.parent):
        manifest = folder / "manifest.csv"
        if not manifest.is_file():
            continue
        with open(manifest, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if (folder / (row.get("file") or "")).resolve() == path.resolve():
                    try:
                        return float(row["fps"]) if row.get("fps") else None
                    except ValueError:
                        return None
    return None


def model_windows(model, total: int, fps: Optional[float], frame_step: Optional[int] = None,
                  window_step: Optional[int] = None, max_windows: Optional[int] = None,
                  where: str = "a source") -> tuple[WindowSpec, np.ndarray]:
    """The windows ``[W, F]`` a model's input contract asks for on a ``total``-frame video at
    ``fps`` (flags override), and their spec."""
    spec = spec_for(model.contract, fps, frame_step=frame_step, window_step=window_step,
                    max_windows=max_windows, where=where)
    return spec, plan_windows(total, spec)


@dataclass
class StudyEmbedding:
    """Embeddings of one study: video [D] (mean over windows), frames [W, T, D]
    (per-time-step, per window), tokens [W, T*L, D] (only when asked), window starts, the
    windows' frame indices [W, F] and the frame step they used."""

    video: np.ndarray
    frames: np.ndarray
    starts: list[int]
    tokens: Optional[np.ndarray] = None
    windows: Optional[np.ndarray] = None
    frame_step: int = 1


def embed_frames(model, frames: np.ndarray, fps: Optional[float] = None, frame_step: Optional[int] = None,
                 window_step: Optional[int] = None, max_windows: Optional[int] = None, batch_size: int = 4,
                 precision: str = "auto", device: str = "cpu", keep_tokens: bool = False,
                 where: str = "a source") -> StudyEmbedding:
    """Embed a whole preprocessed video (uint8 frames ``[T, H, W(, 3)]``) window by window.

    fps: the video's frame rate; the model's input contract turns it into the frame step
    (``frame_step`` overrides). window_step / max_windows: window placement (back to back, all).
    """
    spec, windows = model_windows(model, len(frames), fps, frame_step, window_step, max_windows, where)

    def embed(clips):
        emb = model.embed(clips)
        out = {"video": emb.video, "frames": emb.frames}
        if keep_tokens:
            out["tokens"] = emb.tokens
        return out

    out = run_windows(embed, frames, windows, batch_size, device, precision, size=model.cfg.img_size)
    return StudyEmbedding(video=out["video"].mean(0).numpy(), frames=out["frames"].numpy(),
                          starts=[int(w[0]) for w in windows],
                          tokens=out["tokens"].numpy() if keep_tokens else None, windows=windows,
                          frame_step=spec.frame_step)


def embedding_phase(model, frames: np.ndarray, fps: Optional[float], frame_step: Optional[int] = None,
                    precision: str = "auto", device: str = "cpu", where: str = "a source", batch_size: int = 8):
    """Cycle length and heart rate the model perceives in a video: ``(PhaseResult, [N, N]
    cosine self-similarity of the centred step embeddings in time order)``.

    Windows sampled as the model's input contract asks (``frame_step`` overrides), laid from
    every frame offset within one model time step (``windows.step_offset_windows``), so the
    cycle is read over frames; each window's steps are centred on their mean and padded steps
    dropped (``analysis.phase``'s docstring says why). The cycle is in source frames.

    A video shorter than two windows' span (``2 x num_frames x frame_step`` frames) gets no
    cycle: its windows all cover the same frames, so centring each step position over them
    leaves only noise, whose peaks would read as a made-up cycle.
    """
    from echofm.analysis.phase import phase_from_step_samples, window_centred
    from echofm.windows import step_offset_windows

    spec = spec_for(model.contract, fps, frame_step=frame_step, where=where)
    t_patch = model.cfg.t_patch_size
    windows, centres, valid = step_offset_windows(len(frames), spec, t_patch)
    if len(frames) < 2 * spec.num_frames * spec.frame_step or not len(windows):
        return phase_from_step_samples(np.zeros(0), np.zeros((0, 1)), fps, frame_step=spec.frame_step), np.zeros((0, 0))
    steps = run_windows(lambda clips: model.embed(clips).frames, frames, windows, batch_size, device, precision,
                        size=model.cfg.img_size).numpy()
    centred = window_centred(steps, valid)
    times, z = centres[valid], centred[valid]
    result = phase_from_step_samples(times, z, fps, min_lag=max(3, t_patch * spec.frame_step),
                                     frame_step=spec.frame_step)
    z = z[np.argsort(times, kind="stable")]
    z = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-8)
    return result, z @ z.T
