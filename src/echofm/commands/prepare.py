"""`echofm prepare SRC... --out DIR`: echo sources -> clean, de-identified clip cache."""

from __future__ import annotations

import os

from echofm.commands._options import add_batch_options, add_mask_sector, add_workers, batch_options, report_batch

NAME = "prepare"
HELP = "turn DICOM/video/NIfTI/MHD/array/frame sources into a prepared clip cache"
DESCRIPTION = (
    "Scan SRC folders recursively, read every echo source, blank everything outside the "
    "ultrasound sector, crop, pad and resize, and store uint8 clips/<id>.npy with manifest.csv "
    "and failures.csv (<id>: BLAKE2b-128 of the input file's bytes, as `b2sum -l 128 FILE` prints; "
    "embed, predict and diagnose use the same id). Re-running resumes; --shard splits an archive "
    "across machines. Exit status: 0 when every input was prepared, 1 when some failed (unless "
    "--allow-failures), 2 when the command could not run."
)


def add_arguments(parser) -> None:
    parser.add_argument("sources", nargs="*", metavar="SRC",
                        help="files or folders to scan (none: only rebuild manifest.csv/failures.csv in --out)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--size", type=int, default=224, help="output side in pixels (112 for EchoNet-style)")
    parser.add_argument("--color", action="store_true", help="keep colour Doppler clips in RGB instead of grayscale")
    parser.add_argument("--fps", type=float, default=None, help="resample every clip to this frame rate")
    add_mask_sector(parser, default="masked")
    add_workers(parser, default=max(1, min(8, (os.cpu_count() or 2) - 1)), help="worker processes")
    parser.add_argument("--shard", default="0/1", help="i/n: prepare only shard i of n (deterministic, no overlap)")
    add_batch_options(parser)


def run(args) -> int:
    from echofm.preprocess.prepare import parse_shard, prepare
    from echofm.preprocess.transforms import PreprocessConfig

    config = PreprocessConfig(size=args.size, keep_color=args.color, target_fps=args.fps,
                              mask_sector=args.mask_sector is not False)
    summary = prepare(args.sources, args.out, config, workers=args.workers, shard=parse_shard(args.shard),
                      options=batch_options(args))
    return report_batch(summary)
