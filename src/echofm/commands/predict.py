"""`echofm predict`: a fine-tuned task model on new studies, one JSON per input."""

from __future__ import annotations

from echofm.commands._options import add_backend_option, add_batch_options, batch_options, report_batch

NAME = "predict"
HELP = "apply a fine-tuned task model (view, EF, disease, segmentation) to studies: one JSON per input"
DESCRIPTION = (
    "Reads every echo source under SRC (DICOM, video, NIfTI, prepared .npy ...; folders recursively), "
    "applies the same preprocessing as `echofm prepare` at the model's size, and runs the task model "
    "written by `echofm finetune` on windows covering each whole video. Per input it writes <id>.json "
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
    p.add_argument("--stride", type=int, default=None,
                   help="frames between window starts (default: as the run was evaluated; back to back)")
    p.add_argument("--max-windows", type=int, default=None,
                   help="at most this many windows per video for classification/EF (default: as evaluated; all)")
    p.add_argument("--period", type=int, default=None,
                   help="take every PERIOD-th frame into a window (default: the run's --period)")
    p.add_argument("--no-mask", action="store_true",
                   help="do not detect, blank and crop the ultrasound sector (only pad and resize)")
    p.add_argument("--no-overlay", action="store_true", help="segmentation: do not write the overlay video")
    p.add_argument("--overlay-size", type=int, default=256, help="side in pixels of the overlay video")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="numeric precision")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1 ...)")
    add_backend_option(p)
    add_batch_options(p)


def run(args) -> int:
    from echofm.predict import PredictConfig, predict_studies

    config = PredictConfig(batch_size=args.batch_size, stride=args.stride, max_windows=args.max_windows,
                           period=args.period, device=args.device, precision=args.precision,
                           mask_sector=not args.no_mask, overlay=not args.no_overlay, overlay_size=args.overlay_size,
                           backend=args.backend)
    return report_batch(predict_studies(args.sources, args.model, args.out, config, batch_options(args)))
