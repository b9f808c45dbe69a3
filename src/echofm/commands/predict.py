"""`echofm predict`: a fine-tuned task model on new studies, one JSON per input."""

from __future__ import annotations

from echofm.commands._options import (add_backend_option, add_batch_options, add_device, add_frame_step, add_mask_sector,
                                      add_max_windows, add_precision, add_window_step, batch_options, report_batch)

NAME = "predict"
HELP = "apply a fine-tuned task model (view, EF, disease, segmentation) to studies: one JSON per input"
DESCRIPTION = (
    "Reads every echo source under SRC (DICOM, video, NIfTI, prepared .npy ...; folders recursively), "
    "applies the same preprocessing as `echofm prepare` at the model's size, and runs the task model "
    "written by `echofm finetune` on windows covering each whole video, sampled as the model's input "
    "contract asks (each study's frame rate brought to the one it was trained at). Per input it writes <id>.json "
    "(<id>: BLAKE2b-128 of the input file's bytes, as `b2sum -l 128 FILE` prints; the id prepare and embed give the same file): class probabilities averaged over windows (view, disease), "
    "per-window values and their mean (EF), or, for segmentation, <id>_masks.npy (uint8 label maps "
    "[T, S, S]), the area curves, the EF from the ED/ES LV areas and <id>_overlay.mp4. index.csv lists "
    "the predictions and failures.csv the inputs that failed, with the reason; a re-run skips inputs "
    "already done. Exit status: 0 when every input was predicted, 1 when some failed (unless "
    "--allow-failures), 2 when the command could not run.")


def add_arguments(p) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="files or folders of echo studies")
    p.add_argument("--model", required=True, metavar="RUN",
                   help="fine-tuned model: a run directory written by `echofm finetune` "
                        "(task.json + model.safetensors)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    add_window_step(p, old=["--stride"], help="frames between the starts of consecutive windows (default: as the "
                                              "run was evaluated; back to back)")
    add_max_windows(p, help="at most N windows per video for classification/EF, evenly spread (default: as the "
                            "run was evaluated; all)")
    add_frame_step(p, old=["--period"])
    add_mask_sector(p)
    p.add_argument("--no-overlay", action="store_true", help="segmentation: do not write the overlay video")
    p.add_argument("--overlay-size", type=int, default=256, help="side in pixels of the overlay video")
    add_precision(p)
    add_device(p)
    add_backend_option(p)
    add_batch_options(p)


def run(args) -> int:
    from echofm.predict import PredictConfig, predict_studies

    config = PredictConfig(batch_size=args.batch_size, window_step=args.window_step, max_windows=args.max_windows,
                           frame_step=args.frame_step, device=args.device, precision=args.precision,
                           mask_sector=args.mask_sector, overlay=not args.no_overlay, overlay_size=args.overlay_size,
                           backend=args.backend)
    return report_batch(predict_studies(args.sources, args.model, args.out, config, batch_options(args)))
