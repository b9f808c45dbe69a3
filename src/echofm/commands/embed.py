"""`echofm embed`: video, per-time-step and token embeddings of many studies."""

from __future__ import annotations

from echofm.commands._options import (add_backend_option, add_batch_options, add_device, add_frame_step, add_mask_sector,
                                      add_max_windows, add_model_source, add_precision, add_window_step, batch_options,
                                      report_batch)

NAME = "embed"
HELP = "embed studies (DICOM/video/prepared clips) with a model: .npy files plus an index CSV"
DESCRIPTION = (
    "Reads every echo source under SRC (recursively), applies the same preprocessing as "
    "`echofm prepare`, and embeds each whole video window by window. Per input it writes "
    "<id>_video.npy [D] (mean over windows), <id>_frames.npy [W, T, D] (per-time-step projector "
    "embeddings of each window) and, with --tokens, <id>_tokens.npy [W, T*L, D]; <id> is the "
    "BLAKE2b-128 of the input file's bytes (`b2sum -l 128 FILE`; the id prepare and predict give the "
    "same file). index.csv lists them; failures.csv lists inputs that could not be embedded, with the "
    "reason. Windows are sampled as the model's input contract asks (each source's frame rate brought to "
    "the model's; --frame-step overrides). A re-run skips inputs already embedded (and redoes any whose "
    "files are gone); an output folder written by another model or other window or precision settings "
    "is refused. Exit status: 0 when every input "
    "was embedded, 1 when some failed (unless --allow-failures), 2 when the command could not run."
)


def add_arguments(p) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="files or folders of echo studies")
    add_model_source(p, extra="; with --backend onnx, a folder written by `echofm export`")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--tokens", action="store_true", help="also write token embeddings (large)")
    add_frame_step(p, old=["--stride"])
    add_window_step(p)
    add_max_windows(p)
    add_mask_sector(p, old=())
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    add_precision(p)
    add_device(p)
    add_backend_option(p)
    add_batch_options(p)


def run(args) -> int:
    from echofm.embed import EmbedConfig, embed_studies

    config = EmbedConfig(frame_step=args.frame_step, window_step=args.window_step, max_windows=args.max_windows,
                         batch_size=args.batch_size, precision=args.precision, device=args.device, tokens=args.tokens,
                         backend=args.backend, mask_sector=args.mask_sector)
    return report_batch(embed_studies(args.sources, args.model, args.out, config, batch_options(args)))
