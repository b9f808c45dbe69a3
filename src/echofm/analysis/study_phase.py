"""Cardiac phase of one study, end to end: read and preprocess the source, find cycle, heart
rate and ED/ES from its pixels (and, given a model, the cycle from its embeddings), and write
``phase.json`` and ``phase.png``. What ``echofm phase`` runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def study_phase(source: str | Path, out: str | Path, model=None, size: int = 112, fps: Optional[float] = None,
                frame_step: Optional[int] = None, precision: str = "auto", device: str = "cpu") -> dict:
    """Phase of ``source`` written to ``out/phase.json`` and ``out/phase.png``; returns the JSON payload.

    model: an ``EchoFM`` (or None: pixels only) on ``device``, run on windows of every
    ``frame_step``-th frame (None: the step its input contract asks for the source's rate).
    size: side of the frames the pixel analysis reads. fps: the rate to assume when the
    source states none.
    """
    from echofm.analysis.figures import phase_figure
    from echofm.analysis.phase import motion_self_similarity, phase_from_pixels
    from echofm.files import write_text_atomic
    from echofm.inference import embedding_phase, load_study

    src, out = Path(source), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clip = load_study(src, size)
    fps = clip.fps or fps
    result = phase_from_pixels(clip.frames, fps)
    payload = {"source": src.name, "frames": clip.num_frames, "fps": fps, "pixels": result.to_dict()}
    emb_sim = None
    if model is not None:
        model_clip = load_study(src, model.cfg.img_size) if model.cfg.img_size != size else clip
        emb_result, emb_sim = embedding_phase(model, model_clip.frames, fps, frame_step, precision, device,
                                              where=src.name)
        payload["embeddings"] = emb_result.to_dict()
    fig = phase_figure(clip.frames, result, motion_self_similarity(clip.frames), out / "phase.png",
                       emb_sim, title=src.name)
    payload["figure"] = fig.name
    write_text_atomic(out / "phase.json", json.dumps(payload, indent=2))
    return payload
