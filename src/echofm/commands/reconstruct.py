"""`echofm reconstruct`: masked-reconstruction figure, GIF and masked PSNR of a study."""

from __future__ import annotations

import json
from pathlib import Path

from echofm.commands._options import add_device, add_frame_step, add_model_source, add_precision

NAME = "reconstruct"
HELP = "masked reconstruction of a study: figure, GIF (input | mask | reconstruction) and masked PSNR"


def add_arguments(p) -> None:
    p.add_argument("source", help="echo study: DICOM, video, NIfTI, prepared clip ...")
    add_model_source(p)
    p.add_argument("--out", default=None, help="output directory (default: reconstruct_<source name>)")
    p.add_argument("--mask-ratio", type=float, default=0.75, help="fraction of spatial patches hidden")
    add_frame_step(p, old=["--stride"])
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask")
    add_precision(p)
    add_device(p)


def run(args) -> int:
    from echofm.analysis.figures import reconstruction_figure, reconstruction_panels
    from echofm.analysis.reconstruction import reconstruct
    from echofm.files import write_text_atomic
    from echofm.inference import load_study, model_windows
    from echofm.model import load_model
    from echofm.windows import window_clips

    src = Path(args.source)
    out = Path(args.out or f"reconstruct_{src.stem}")
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model).eval().to(args.device)
    clip = load_study(src, model.cfg.img_size)
    spec, windows = model_windows(model, clip.num_frames, clip.fps, args.frame_step, where=src.name)
    middle = windows[len(windows) // 2]
    rec = reconstruct(model, window_clips(clip.frames, middle[None], model.cfg.img_size), args.mask_ratio, args.seed,
                      precision=args.precision, device=args.device)
    strips = reconstruction_panels(rec.original, rec.masked, rec.recon)
    png, gif = reconstruction_figure(strips, out / "reconstruction.png", out / "reconstruction.gif", rec.psnr_masked,
                                    baseline_psnr=rec.psnr_baseline)
    result = {"source": src.name, "window_start": int(middle[0]), "frame_step": spec.frame_step,
              "mask_ratio": args.mask_ratio,
              "psnr_masked_db": round(rec.psnr_masked, 3),
              "psnr_flat_patch_baseline_db": round(rec.psnr_baseline, 3), "figure": png.name, "gif": gif.name}
    write_text_atomic(out / "reconstruction.json", json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0
