"""`echofm reconstruct`: masked-reconstruction figure, GIF and masked PSNR of a study."""

from __future__ import annotations

import json
from pathlib import Path

NAME = "reconstruct"
HELP = "masked reconstruction of a study: figure, GIF (input | mask | reconstruction) and masked PSNR"


def add_arguments(p) -> None:
    p.add_argument("source", help="echo study: DICOM, video, NIfTI, prepared clip ...")
    p.add_argument("--model", required=True, help="preset, echofm model dir, or public EchoFM .pth")
    p.add_argument("--out", default=None, help="output directory (default: reconstruct_<source name>)")
    p.add_argument("--mask-ratio", type=float, default=0.75, help="fraction of spatial patches hidden")
    p.add_argument("--stride", type=int, default=1, help="frame stride of the window")
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask")


def run(args) -> int:
    from echofm.analysis.figures import reconstruction_figure, reconstruction_panels
    from echofm.analysis.reconstruction import reconstruct
    from echofm.files import write_text_atomic
    from echofm.inference import load_study, video_windows
    from echofm.model import load_model

    src = Path(args.source)
    out = Path(args.out or f"reconstruct_{src.stem}")
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model).eval()
    clip = load_study(src, model.cfg.img_size)
    windows, starts = video_windows(clip.frames, model.cfg.num_frames, args.stride)
    middle = len(windows) // 2
    rec = reconstruct(model, windows[middle:middle + 1], args.mask_ratio, args.seed)
    strips = reconstruction_panels(rec.original, rec.masked, rec.recon)
    png, gif = reconstruction_figure(strips, out / "reconstruction.png", out / "reconstruction.gif", rec.psnr_masked,
                                    baseline_psnr=rec.psnr_baseline)
    result = {"source": src.name, "window_start": starts[middle], "mask_ratio": args.mask_ratio,
              "psnr_masked_db": round(rec.psnr_masked, 3),
              "psnr_flat_patch_baseline_db": round(rec.psnr_baseline, 3), "figure": png.name, "gif": gif.name}
    write_text_atomic(out / "reconstruction.json", json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0
