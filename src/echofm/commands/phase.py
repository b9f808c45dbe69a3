"""`echofm phase`: cycle length, heart rate and ED/ES frames of every beat of a study."""

from __future__ import annotations

import json
from pathlib import Path

from echofm.commands._options import (MASK_AS_CONTRACT, add_device, add_frame_step, add_mask_sector, add_model_source,
                                      add_precision)

NAME = "phase"
HELP = "cycle length, heart rate and ED/ES frames of a study (from pixels, and from a model if given)"
DESCRIPTION = (
    "Reads any echo source (DICOM, video, NIfTI, prepared clip...), masks the sector, and finds "
    "the cardiac cycle from the repetition of the motion in the pixels; ED/ES frames come from a "
    "cavity-size proxy. With --model, the cycle is also read from the model's per-time-step "
    "embeddings, of windows sampled as the model's input contract asks (the source's frame rate brought "
    "to the one the model was trained at; --frame-step overrides), laid from every frame offset and "
    "centred per window so the cycle is read over frames. Without --model the sector is masked "
    "unless --no-mask-sector; with one, as its input contract says. When no cycle is found, the JSON's "
    "note says why (a cycle is reported only when the video shows it twice). Writes a JSON result and a figure (cavity curve, self-similarity maps, ED/ES frames)."
)


def add_arguments(p) -> None:
    p.add_argument("source", help="echo study: DICOM, AVI/MP4/..., NIfTI, MHD, NPY, or a folder of frames")
    add_model_source(p, required=False, role="optional model for the embedding analysis")
    p.add_argument("--out", default=None, help="output directory (default: phase_<source name>)")
    p.add_argument("--size", type=int, default=112, help="side in pixels for the pixel analysis")
    p.add_argument("--fps", type=float, default=None, help="frame rate to use when the source does not state one")
    add_frame_step(p, old=["--stride"])
    add_mask_sector(p, old=(), default=f"masked for the pixel analysis; for --model, {MASK_AS_CONTRACT}")
    add_precision(p)
    add_device(p)


def run(args) -> int:
    from echofm.analysis.study_phase import study_phase

    model = None
    if args.model:
        from echofm.model import load_model

        model = load_model(args.model).eval().to(args.device)
    out = Path(args.out or f"phase_{Path(args.source).stem}")
    payload = study_phase(args.source, out, model, size=args.size, fps=args.fps, frame_step=args.frame_step,
                          precision=args.precision, device=args.device, mask_sector=args.mask_sector)
    summary = {k: payload["pixels"][k] for k in ("cycle_frames", "heart_rate_bpm", "ed_frames", "es_frames")}
    if "embeddings" in payload:
        summary["embedding_cycle_frames"] = payload["embeddings"]["cycle_frames"]
        summary["embedding_heart_rate_bpm"] = payload["embeddings"]["heart_rate_bpm"]
        summary["frame_step"] = payload["embeddings"]["frame_step"]
    if "note" in payload:
        summary["note"] = payload["note"]
    print(json.dumps(summary))
    print(f"wrote {out / 'phase.json'} and {out / payload['figure']}")
    return 0
