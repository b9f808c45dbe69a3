"""`echofm diagnose`: periodicity diagnostics of an encoder on a folder of clips."""

from __future__ import annotations

from echofm.commands._options import (add_batch_options, add_device, add_frame_step, add_mask_sector, add_max_windows,
                                      add_model_source, add_precision, add_window_step, batch_options, report_batch)

NAME = "diagnose"
HELP = "periodicity diagnostics of an encoder: phase contrast and embedding-vs-pixel self-similarity per clip"
DESCRIPTION = (
    "Runs the model over every clip under --data (echo files or a prepared cache) in windows sampled as "
    "its input contract asks (each clip's frame rate brought to the model's) and measures, per clip: the phase contrast of the per-time-step embeddings (same-phase minus "
    "opposite-phase cosine similarity; the period comes from the folder's manifest.csv/labels.csv "
    "(cycle_frames, or heart_rate and fps) or phantom_truth.jsonl when present, else from the pixels), "
    "the same contrast on the pixel motion map, and the correlation between the embedding and pixel "
    "self-similarity maps. Writes OUT/diagnose.json (rows + summary), diagnose.csv, histograms, example "
    "maps and report.html; failures.csv lists the clips that could not be diagnosed (ids as in prepare). "
    "A re-run skips clips already diagnosed. Exit status: 0 when every clip was diagnosed, 1 when some "
    "failed (unless --allow-failures), 2 when the command could not run.")


def add_arguments(p) -> None:
    add_model_source(p)
    p.add_argument("--data", required=True, help="folder of echo studies or a prepared cache")
    p.add_argument("--out", required=True, help="output directory")
    add_frame_step(p, old=["--stride"])
    add_window_step(p)
    add_max_windows(p, default=4, help="windows per clip, evenly spread")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    p.add_argument("--examples", type=int, default=4, help="clips drawn as example self-similarity maps")
    add_mask_sector(p)
    add_precision(p)
    add_device(p)
    add_batch_options(p)


def run(args) -> int:
    from echofm.analysis.diagnose import DiagnoseConfig, run_diagnostics

    config = DiagnoseConfig(frame_step=args.frame_step, window_step=args.window_step, max_windows=args.max_windows,
                            batch_size=args.batch_size, examples=args.examples, device=args.device, precision=args.precision,
                            mask_sector=args.mask_sector)
    run = run_diagnostics(args.model, args.data, args.out, config, batch_options(args))
    summary = run.report["summary"]
    brief = {k: v["median"] for k, v in summary.items() if isinstance(v, dict)}
    return report_batch(run.summary, {"clips": summary["clips"], "median": brief, "report": f"{args.out}/report.html"})
