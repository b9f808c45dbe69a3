"""`echofm phase`: cycle length, heart rate and ED/ES frames of every beat of a study."""

from __future__ import annotations

import json
from pathlib import Path

from echofm.commands._options import add_device, add_frame_step, add_precision

NAME = "phase"
HELP = "cycle length, heart rate and ED/ES frames of a study (from pixels, and from a model if given)"
DESCRIPTION = (
    "Reads any echo source (DICOM, video, NIfTI, prepared clip...), masks the sector, and finds "
    "the cardiac cycle from the repetition of the motion in the pixels; ED/ES frames come from a "
    "cavity-size proxy. With --model, the cycle is also read from the model's per-time-step "
    "embeddings. Writes a JSON result and a figure (cavity curve, self-similarity maps, ED/ES frames)."
)


def add_arguments(p) -> None:
    p.add_argument("source", help="echo study: DICOM, AVI/MP4/..., NIfTI, MHD, NPY, or a folder of frames")
    p.add_argument("--model", default=None, help="optional model (preset, echofm model dir, or public .pth)")
    p.add_argument("--out", default=None, help="output directory (default: phase_<source name>)")
    p.add_argument("--size", type=int, default=112, help="side in pixels for the pixel analysis")
    p.add_argument("--fps", type=float, default=None, help="frame rate to use when the source does not state one")
    add_frame_step(p, old=["--stride"])
    add_precision(p)
    add_device(p)


def run(args) -> int:
    from echofm.analysis.figures import phase_figure
    from echofm.analysis.phase import motion_self_similarity, phase_from_pixels
    from echofm.files import write_text_atomic
    from echofm.inference import embedding_phase, load_study

    src = Path(args.source)
    out = Path(args.out or f"phase_{src.stem}")
    out.mkdir(parents=True, exist_ok=True)
    clip = load_study(src, args.size)
    fps = clip.fps or args.fps
    result = phase_from_pixels(clip.frames, fps)
    payload = {"source": src.name, "frames": clip.num_frames, "fps": fps, "pixels": result.to_dict()}
    emb_sim = None
    if args.model:
        from echofm.model import load_model

        model = load_model(args.model).eval().to(args.device)
        model_clip = load_study(src, model.cfg.img_size) if model.cfg.img_size != args.size else clip
        emb_result, emb_sim = embedding_phase(model, model_clip.frames, fps, args.frame_step, args.precision,
                                              args.device, where=src.name)
        payload["embeddings"] = emb_result.to_dict()
    fig = phase_figure(clip.frames, result, motion_self_similarity(clip.frames), out / "phase.png",
                       emb_sim, title=src.name)
    payload["figure"] = fig.name
    write_text_atomic(out / "phase.json", json.dumps(payload, indent=2))
    summary = {k: payload["pixels"][k] for k in ("cycle_frames", "heart_rate_bpm", "ed_frames", "es_frames")}
    if "embeddings" in payload:
        summary["embedding_cycle_frames"] = payload["embeddings"]["cycle_frames"]
        summary["embedding_heart_rate_bpm"] = payload["embeddings"]["heart_rate_bpm"]
        summary["frame_step"] = payload["embeddings"]["frame_step"]
    print(json.dumps(summary))
    print(f"wrote {out / 'phase.json'} and {fig}")
    return 0
