"""Cardiac phase of one study, end to end: read and preprocess the source, find cycle, heart
rate and ED/ES from its pixels (and, given a model, the cycle from its embeddings), and write
``phase.json`` and ``phase.png``. What ``echofm phase`` runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def study_phase(source: str | Path, out: str | Path, model=None, size: int = 112, fps: Optional[float] = None,
                stride: int = 1, precision: str = "fp32") -> dict:
    """Phase of ``source`` written to ``out/phase.json`` and ``out/phase.png``; returns the JSON payload.

    model: an ``EchoFM`` (or None: pixels only), run on windows of every ``stride``-th frame.
    size: side of the frames the pixel analysis reads. fps: the rate to assume when the
    source states none.
    """
    import numpy as np

    from echofm.analysis.figures import phase_figure
    from echofm.analysis.phase import motion_self_similarity, phase_from_embeddings, phase_from_pixels
    from echofm.files import write_text_atomic
    from echofm.inference import embed_frames, load_study

    src, out = Path(source), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clip = load_study(src, size)
    fps = clip.fps or fps
    result = phase_from_pixels(clip.frames, fps)
    payload = {"source": src.name, "frames": clip.num_frames, "fps": fps, "pixels": result.to_dict()}
    emb_sim = None
    if model is not None:
        model_clip = load_study(src, model.cfg.img_size) if model.cfg.img_size != size else clip
        emb = embed_frames(model, model_clip.frames, stride=stride, precision=precision)
        steps = emb.frames.reshape(-1, emb.frames.shape[-1]) if len(emb.starts) > 1 else emb.frames[0]
        frames_per_step = model.cfg.t_patch_size * stride
        payload["embeddings"] = phase_from_embeddings(steps, frames_per_step, fps).to_dict()
        z = steps / (np.linalg.norm(steps, axis=1, keepdims=True) + 1e-8)
        emb_sim = z @ z.T
    fig = phase_figure(clip.frames, result, motion_self_similarity(clip.frames), out / "phase.png",
                       emb_sim, title=src.name)
    payload["figure"] = fig.name
    write_text_atomic(out / "phase.json", json.dumps(payload, indent=2))
    return payload
