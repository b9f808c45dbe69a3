"""`echofm prepare SRC... --out DIR`: echo sources -> clean, de-identified clip cache."""

from __future__ import annotations

import os

from echofm.commands._options import add_quiet, add_workers
from echofm.errors import EchoFMError

NAME = "prepare"
HELP = "turn DICOM/video/NIfTI/MHD/array/frame sources into a prepared clip cache"
DESCRIPTION = (
    "Scan SRC folders recursively, read every echo source, blank everything outside the "
    "ultrasound sector, crop, pad and resize, and store uint8 .npy clips named by content "
    "hash with manifest.csv and failures.csv. Re-running resumes; --shard splits an archive "
    "across machines."
)


def add_arguments(parser) -> None:
    parser.add_argument("sources", nargs="*", metavar="SRC",
                        help="files or folders to scan (none: only rebuild manifest.csv/failures.csv in --out)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--size", type=int, default=224, help="output side in pixels (112 for EchoNet-style)")
    parser.add_argument("--color", action="store_true", help="keep colour Doppler clips in RGB instead of grayscale")
    parser.add_argument("--fps", type=float, default=None, help="resample every clip to this frame rate")
    parser.add_argument("--no-mask", action="store_true", help="keep the whole image (no sector detection, crop or blanking)")
    add_workers(parser, default=max(1, min(8, (os.cpu_count() or 2) - 1)), help="worker processes")
    parser.add_argument("--shard", default="0/1", help="i/n: prepare only shard i of n (deterministic, no overlap)")
    parser.add_argument("--keep-paths", action="store_true",
                        help="add a source column (path relative to SRC) to manifest.csv; off by default because "
                             "archive paths often contain patient names or dates")
    parser.add_argument("--retry-failed", action="store_true", help="try inputs that failed in an earlier run again")
    parser.add_argument("--strict", action="store_true", help="exit with an error if any input failed")
    add_quiet(parser)


def run(args) -> int:
    from echofm.preprocess.prepare import parse_shard, prepare
    from echofm.preprocess.transforms import PreprocessConfig

    config = PreprocessConfig(size=args.size, keep_color=args.color, target_fps=args.fps,
                              mask_sector=not args.no_mask)
    result = prepare(args.sources, args.out, config, workers=args.workers, shard=parse_shard(args.shard),
                     keep_paths=args.keep_paths, retry_failed=args.retry_failed, progress=not args.quiet)
    print(f"prepared {result.prepared}, skipped (done before) {result.skipped}, failed {result.failed}; "
          f"manifest: {result.manifest}")
    if result.failed:
        print(f"failures are listed in {result.failures}")
    if args.strict and result.failure_rows:
        raise EchoFMError(f"{len(result.failure_rows)} input(s) failed (see {result.failures})")
    return 0
