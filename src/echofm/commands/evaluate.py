"""`echofm evaluate`: score a fine-tuned model on a dataset split; metrics.json and plots."""

from __future__ import annotations

import argparse
import json

NAME = "evaluate"
HELP = "evaluate a fine-tuned model (from echofm finetune): metrics.json, predictions and plots"
DESCRIPTION = (
    "Evaluate a run of `echofm finetune` on whole videos of one split. Writes OUT/metrics.json, "
    "OUT/predictions.jsonl and plots: EF scatter / Bland-Altman, confusion matrix, ROC curves, "
    "segmentation overlays.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from echofm.choices import DATASET_FORMATS as FORMATS

    p.add_argument("--model", required=True, help="run directory of echofm finetune (holds task.json)")
    p.add_argument("--data", default=None, help="dataset folder or CSV (default: the one the run trained on)")
    p.add_argument("--format", default=None, choices=FORMATS, help="layout of --data (default: the run's)")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"), help="which split to score")
    p.add_argument("--out", required=True, help="folder for metrics.json, predictions.jsonl and plots")
    p.add_argument("--eval-stride", type=int, default=None, help="frames between windows (default: the run's)")
    p.add_argument("--eval-max-windows", type=int, default=None, help="at most this many windows per video")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda (under torchrun: this rank's GPU) or auto; under torchrun the videos are "
                        "shared out and rank 0 writes")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="numeric precision")
    p.add_argument("--strict", action="store_true", help="fail on the first unusable dataset item")
    p.add_argument("--no-sector", action="store_true", default=None,
                   help="--format csv: read the listed files as stored, without the sector pipeline "
                        "(default: as the run was trained)")
    p.add_argument("--no-plots", action="store_true", help="write metrics only")


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from echofm.datasets import read_dataset
    from echofm.errors import EchoFMError
    from echofm.tasks.adapter import load_task_model
    from echofm.tasks.base import EvalOptions
    from echofm.train.distributed import is_main_process
    from echofm.tasks.engine import CONFIG, evaluate

    # Under torchrun the other ranks stay quiet unless something fails: rank 0 reports.
    logging.basicConfig(level=logging.INFO if is_main_process() else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    run_dir = Path(args.model)
    model = load_task_model(run_dir)  # evaluate() moves it to the (per-rank) device
    run_info = json.loads((run_dir / CONFIG).read_text()) if (run_dir / CONFIG).is_file() else {}
    data_dir = args.data or run_info.get("data", {}).get("root")
    fmt = args.format or run_info.get("data", {}).get("format")
    if fmt == "manifest":
        fmt = "csv"
    if not data_dir or not fmt:
        raise EchoFMError(f"{run_dir}: give --data and --format (the run does not record them)")
    saved = getattr(model, "finetune_config", {}) or {}
    target = model.spec.target
    trained_on_sector = run_info.get("data", {}).get("preprocess", True)
    preprocess = not args.no_sector if args.no_sector is not None else trained_on_sector
    data = read_dataset(fmt, data_dir, task=model.spec.task,
                        target=target if fmt in ("csv", "tmed") else None, strict=args.strict, preprocess=preprocess)
    options = EvalOptions(period=int(saved.get("period", 1)),
                          stride=args.eval_stride if args.eval_stride is not None else saved.get("eval_stride"),
                          max_windows=args.eval_max_windows or saved.get("eval_max_windows"),
                          batch_size=args.batch_size, device=args.device, precision=args.precision)
    metrics = evaluate(model, data, split=args.split, out_dir=args.out, options=options, plots=not args.no_plots)
    if is_main_process():
        print(json.dumps(metrics, indent=2, default=str)[:4000])
    return 0
