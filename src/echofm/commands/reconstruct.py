"""`echofm reconstruct`: masked-reconstruction figure, GIF and masked PSNR of a study."""

from __future__ import annotations

import json
from pathlib import Path

from echofm.commands._options import add_device, add_frame_step, add_mask_sector, add_model_source, add_precision

NAME = "reconstruct"
HELP = "masked reconstruction of a study: figure, GIF (input | mask | reconstruction) and masked PSNR"


def add_arguments(p) -> None:
    p.add_argument("source", help="echo study: DICOM, video, NIfTI, prepared clip ...")
    add_model_source(p)
    p.add_argument("--out", default=None, help="output directory (default: reconstruct_<source name>)")
    p.add_argument("--mask-ratio", type=float, default=0.75, help="fraction of spatial patches hidden")
    add_frame_step(p, old=["--stride"])
    add_mask_sector(p, old=())
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask")
    add_precision(p)
    add_device(p)


def run(args) -> int:
    from echofm.analysis.reconstruction import reconstruct_study
    from echofm.model import load_model

    model = load_model(args.model).eval().to(args.device)
    out = Path(args.out or f"reconstruct_{Path(args.source).stem}")
    result = reconstruct_study(args.source, out, model, args.mask_ratio, args.seed, frame_step=args.frame_step,
                               mask_sector=args.mask_sector, precision=args.precision, device=args.device)
    print(json.dumps(result))
    return 0
