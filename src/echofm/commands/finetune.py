"""`echofm finetune`: adapt an encoder to EF, view, segmentation or disease on a public dataset."""

from __future__ import annotations

import argparse
import json

from echofm.commands._options import (add_device, add_frame_step, add_max_windows, add_model_source, add_precision,
                                      add_quiet, add_window_step, add_workers)

NAME = "finetune"
HELP = "adapt a pretrained encoder to a clinical task (linear / attentive probe or full fine-tuning)"
DESCRIPTION = (
    "Adapt an EchoFM encoder to ejection fraction (ef), view classification (view), chamber segmentation "
    "(segment) or disease grading (disease), reading the dataset in its public layout. Writes RUN/config.json, "
    "RUN/metrics.jsonl, RUN/checkpoints/ (resume) and the best model (RUN/model.safetensors + task.json). "
    "Several GPUs or CPU processes: launch it with torchrun, e.g. "
    "`torchrun --nproc_per_node=4 -m echofm finetune ... --device cuda` (one rank per process; rank 0 writes).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from echofm.choices import DATASET_FORMATS as FORMATS
    from echofm.choices import DISEASE_SCHEMES as SCHEMES
    from echofm.choices import POOLINGS, SEG_HEADS
    from echofm.choices import TRAINING_MODES as MODES
    from echofm.tasks import TASKS

    p.add_argument("--task", required=True, choices=TASKS, help="what to learn")
    p.add_argument("--data", required=True, help="dataset folder (or the CSV file for --format csv)")
    p.add_argument("--format", required=True, choices=FORMATS, help="layout of --data")
    add_model_source(p, "--init", role="encoder to adapt")
    p.add_argument("--mode", default="linear", choices=MODES,
                   help="linear / attentive: probe on frozen features; full: fine-tune everything with "
                        "layer-wise LR decay")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--target", default=None,
                   help="label to learn (default: ef for ef, view for view, label for disease; e.g. IVSd for "
                        "EchoNet-LVH, or a manifest column)")
    p.add_argument("--labels", default=None, choices=SCHEMES,
                   help="disease label scheme (default: as3 for TMED-2, else multiclass)")
    p.add_argument("--label-fraction", type=float, default=1.0,
                   help="share of the training split to use (class-stratified, seeded): few-shot curves")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--batch-size", type=int, default=8,
                   help="clips per step and process (under torchrun the global batch is this x processes)")
    p.add_argument("--blr", type=float, default=None,
                   help="base learning rate; lr = blr * effective batch / 256, the effective batch being "
                        "batch-size x accum-steps x processes (default per mode: linear 0.04, attentive 0.004, "
                        "full 0.002; 1.2 for the linear segmentation head)")
    p.add_argument("--lr", type=float, default=None, help="absolute learning rate (overrides --blr scaling)")
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches accumulated per optimiser step")
    p.add_argument("--clip-grad", type=float, default=0.0, help="clip the gradient norm to this value (0: off)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the model")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise LR decay (full mode)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before cosine decay")
    p.add_argument("--head-only-epochs", type=float, default=0.0,
                   help="full mode: train only the head for this many epochs first, then the encoder too "
                        "(linear probing then fine-tuning, LP-FT; default 0)")
    add_frame_step(p, old=["--period"], help=(
        "take every Nth frame into a clip (default: the step that brings each video's frame rate to the one the "
        "--init model was trained at, from its input contract; every frame for a preset)"))
    add_window_step(p, old=["--eval-stride"], help="frames between evaluation windows (default: back to back, "
                                                   "covering the video)")
    add_max_windows(p, old=["--eval-max-windows"], help="at most N evaluation windows per video, evenly spread "
                                                        "(default: all)")
    p.add_argument("--pooling", default=None, choices=POOLINGS,
                   help="how the linear / attentive probe pools tokens: mean (one vector per clip) or stats "
                        "(one per time step, then their mean and standard deviation over time, which keeps how "
                        "much the heart changes over the clip); default: stats for ef, mean otherwise")
    p.add_argument("--seg-head", default=None, choices=SEG_HEADS,
                   help="segmentation head: linear (one linear map from each token to its pixels' logits: a "
                        "true linear probe) or unetr (a convolutional decoder over several depths that also "
                        "reads the frames); default: linear in --mode linear, unetr otherwise")
    p.add_argument("--seg-layers", default=None,
                   help="comma-separated encoder blocks (0-based) feeding the segmentation head (default: the "
                        "last block for the linear head, 4 evenly spaced for unetr)")
    p.add_argument("--attentive-queries", type=int, default=1, help="learned queries of the attentive probe")
    p.add_argument("--seed", type=int, default=0, help="random seed (sampling, initialisation, label fraction)")
    add_device(p, help="cpu, cuda (under torchrun: this rank's GPU, cuda:LOCAL_RANK) or auto (a GPU if there is one)")
    add_precision(p)
    add_workers(p, default=0, old=["--num-workers"], help="data-loading worker processes")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first unusable dataset item instead of logging and skipping it")
    p.add_argument("--no-sector", action="store_true",
                   help="--format csv: read the listed files as stored, without the sector pipeline (mask, crop, "
                        "resize) that echofm prepare and inference apply; for files that are already clean crops")
    p.add_argument("--no-validate", action="store_true", help="do not evaluate on the val split each epoch")
    add_quiet(p, old=["--no-progress"])


def run(args: argparse.Namespace) -> int:
    import logging

    from echofm.datasets import read_dataset
    from echofm.datasets.registry import default_scheme, default_target
    from echofm.tasks.engine import FinetuneConfig
    from echofm.tasks.finetuning import finetune
    from echofm.train.distributed import is_main_process

    # Under torchrun the other ranks stay quiet unless something fails: rank 0 reports.
    logging.basicConfig(level=logging.INFO if is_main_process() else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    target = args.target or default_target(args.task, args.format)
    seg_layers = [int(x) for x in args.seg_layers.split(",")] if args.seg_layers else None
    config = FinetuneConfig(
        task=args.task, mode=args.mode, target=target, labels=args.labels or default_scheme(args.task, args.format),
        epochs=args.epochs, batch_size=args.batch_size, accum_steps=args.accum_steps, blr=args.blr, lr=args.lr,
        clip_grad=args.clip_grad, compile=args.compile, weight_decay=args.weight_decay,
        layer_decay=args.layer_decay, warmup_epochs=args.warmup_epochs,
        head_only_epochs=args.head_only_epochs, label_fraction=args.label_fraction,
        seed=args.seed, frame_step=args.frame_step, window_step=args.window_step, max_windows=args.max_windows,
        pooling=args.pooling, seg_head=args.seg_head, seg_layers=seg_layers, attentive_queries=args.attentive_queries, precision=args.precision,
        device=args.device, num_workers=args.workers, validate=not args.no_validate,
        progress=not args.quiet)
    data = read_dataset(args.format, args.data, task=args.task,
                        target=target if args.format in ("csv", "tmed") else None, strict=args.strict,
                        preprocess=not args.no_sector)
    result = finetune(data, args.init, config, args.out, resume=args.resume)
    last = result.history[-1] if result.history else {}
    if is_main_process():
        print(json.dumps({"run": str(result.run_dir), "epochs": len(result.history),
                          "train_loss": last.get("train_loss"), "best": result.best}, indent=2))
    return 0
