"""Cardiac phase of one study, end to end: read and preprocess the source, find cycle, heart
rate and ED/ES from its pixels (and, given a model, the cycle from its embeddings), and write
``phase.json`` and ``phase.png``. What ``echofm phase`` runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def study_phase(source: str | Path, out: str | Path, model=None, size: int = 112, fps: Optional[float] = None,
                frame_step: Optional[int] = None, precision: str = "auto", device: str = "cpu",
                mask_sector: Optional[bool] = None) -> dict:
    """Phase of ``source`` written to ``out/phase.json`` and ``out/phase.png``; returns the JSON payload.

    model: an ``EchoFM`` (or None: pixels only) on ``device``, run on windows of every
    ``frame_step``-th frame (None: the step its input contract asks for the source's rate).
    size: side of the frames the pixel analysis reads. fps: the rate to assume when the
    source states none. mask_sector: blank and crop to the ultrasound sector (None: yes for
    the pixel analysis; for the model, as its input contract says). When a cycle is not
    found, the payload's ``note`` says why.
    """
    from echofm.analysis.figures import phase_figure
    from echofm.analysis.phase import motion_self_similarity, phase_from_pixels
    from echofm.contract import sector_masking
    from echofm.files import write_text_atomic
    from echofm.inference import embedding_phase, load_study

    src, out = Path(source), Path(out)
    pixel_mask = mask_sector is not False
    clip = load_study(src, size, mask_sector=pixel_mask)
    fps = clip.fps or fps
    result = phase_from_pixels(clip.frames, fps)
    payload = {"source": src.name, "frames": clip.num_frames, "fps": fps, "pixels": result.to_dict()}
    emb_sim = None
    if model is not None:
        model_mask = sector_masking(getattr(model, "contract", None), mask_sector)
        same = model.cfg.img_size == size and model_mask == pixel_mask
        model_clip = clip if same else load_study(src, model.cfg.img_size, mask_sector=model_mask)
        emb_result, emb_sim = embedding_phase(model, model_clip.frames, fps, frame_step, precision, device,
                                              where=src.name)
        payload["mask_sector"] = model_mask
        payload["embeddings"] = emb_result.to_dict()
    note = no_cycle_note(payload, model)
    if note:
        payload["note"] = note
    out.mkdir(parents=True, exist_ok=True)
    if emb_sim is not None and not emb_sim.size:
        emb_sim = None  # no embedding reading (too short a video): the figure shows the pixels only
    fig = phase_figure(clip.frames, result, motion_self_similarity(clip.frames), out / "phase.png",
                       emb_sim, title=src.name)
    payload["figure"] = fig.name
    write_text_atomic(out / "phase.json", json.dumps(payload, indent=2))
    return payload


def no_cycle_note(payload: dict, model=None) -> Optional[str]:
    """Why a cycle was not reported (None when every analysis found one).

    A cycle is only counted when the video shows it again: the lag profile must rise back
    within three quarters of the video, so a video shorter than about 1.33 cycles shows
    none; and the embedding reading needs two model windows' span (``inference.embedding_phase``).
    """
    parts = [name for name in ("pixels", "embeddings") if name in payload and payload[name]["cycle_frames"] is None]
    if not parts:
        return None
    frames, fps = payload["frames"], payload.get("fps")
    length = f"{frames} frames" + (f" ({frames / fps:.2f} s at {fps:g} fps)" if fps else "")
    longest = 0.75 * frames
    text = (f"no cycle found from the {' or the '.join(parts)}: a cycle is reported only when the video shows it "
            f"again (the motion must repeat within 3/4 of the video), so this video of {length} can show cycles of "
            f"at most {longest:.0f} frames")
    if fps:
        text += f" (heart rates of at least {60.0 * fps / longest:.0f} bpm)"
    if "embeddings" in parts and model is not None:
        step = payload["embeddings"].get("frame_step") or 1
        needed = 2 * model.cfg.num_frames * step
        if frames < needed:
            text += (f"; the embedding reading needs two model windows' span ({needed} frames: 2 x "
                     f"{model.cfg.num_frames} frames every {step}), and this video fits in one model window")
    return text + "; a longer recording (two beats or more) is needed"
