"""`echofm pretrain`: parse options into a PretrainConfig and call echofm.train.pretrain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from echofm.commands._options import add_device, add_frame_step, add_precision, add_quiet, add_workers

NAME = "pretrain"
HELP = "pretrain an EchoFM model (one process, or every rank under torchrun)"
DESCRIPTION = (
    "Pretrain EchoFM (masked video modelling + periodic contrastive learning) on prepared "
    "caches, folders of echo files or generated phantoms. Runs as one process on CPU or GPU, "
    "or under `torchrun --nproc_per_node=G [--nnodes=...]` with DistributedDataParallel. "
    "Writes RUN/config.yaml, RUN/metrics.jsonl, RUN/checkpoints/ and, at the end, RUN/model "
    "(load it with echofm.load_model). Example: echofm pretrain --config echofm-tiny "
    "--data synth:256 --out runs/try --steps 200")

# CLI flag -> PretrainConfig field, for the plain typed overrides.
_OVERRIDES = {
    "batch_size": int, "accum_steps": int, "epochs": int, "steps": int, "blr": float, "lr": float,
    "min_lr": float, "warmup_steps": int, "weight_decay": float, "clip_grad": float,
    "checkpoint_every": int, "keep_last": int, "seed": int, "init": str,
}
# Shared flags (echofm.commands._options) -> PretrainConfig field.
_SHARED = ("frame_step", "precision", "device", "workers")
_HELP = {
    "batch_size": "clips per process per micro-batch",
    "accum_steps": "micro-batches accumulated per optimiser step",
    "epochs": "passes over the data (used when --steps is 0)",
    "steps": "optimiser steps to train (overrides --epochs)",
    "blr": "base learning rate; lr = blr * effective batch / 256",
    "lr": "absolute learning rate (overrides --blr scaling)",
    "min_lr": "learning rate at the end of the cosine decay",
    "warmup_steps": "linear warmup steps (default: warmup_fraction of all steps)",
    "weight_decay": "AdamW weight decay (not applied to norms, biases, positions, tokens)",
    "clip_grad": "clip the gradient norm to this value (0: off)",
    "checkpoint_every": "write a checkpoint every N optimiser steps (0: only at the end)",
    "keep_last": "checkpoints to keep (0: all)",
    "seed": "random seed (data order, masks, initial weights)",
    "init": "start from these weights (a saved model dir or a public EchoFM .pth)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="a preset (echofm-tiny/small/base/large) or a YAML run config; "
                             "default: RUN/config.yaml when resuming, else echofm-tiny")
    parser.add_argument("--data", action="append", default=None, metavar="SPEC",
                        help="a prepared cache dir, a folder of echo files, synth:N (N phantom clips) or synth:N:PRESET[+PRESET...] (phantom presets in turn); repeat to mix")
    parser.add_argument("--out", required=True, metavar="RUN", help="run directory")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="resume: 'auto' = latest good checkpoint in RUN (fresh start if none), "
                             "or a checkpoint file")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                        help="stop with a checkpoint after this many steps (the schedule still "
                             "spans all steps); continue later with --resume auto")
    for name, kind in _OVERRIDES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=_HELP[name])
    add_frame_step(parser, old=["--frame-stride"], help=(
        "take every Nth frame of the data into a window (default 4: 16 frames span ~2 s at 30 fps, about "
        "two beats); phantoms are generated at 30/N fps. The model records it, with the data's frame "
        "rate, in its input contract"))
    add_precision(parser, default=None)
    add_device(parser, default=None, help="auto, cpu or cuda (under torchrun each rank takes cuda:LOCAL_RANK); "
                                          "default auto")
    add_workers(parser, default=None, help="DataLoader worker processes per rank (default 4)")
    parser.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute block activations in backward (less memory, ~30%% slower)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="light echo augmentations (crop/scale jitter, rotation, gain, speckle) on "
                             "prepared-cache clips")
    add_quiet(parser, old=["--no-progress"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config field, YAML-typed; model.X reaches the model config "
                             "(e.g. --set model.mask_ratio=0.9 --set warmup_fraction=0.1)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as JSON and exit")


def build_config(args: argparse.Namespace):
    """The PretrainConfig that ``args`` describe (config file/preset, then overrides)."""
    from echofm.train.config import CONFIG_NAME, ConfigError, load_pretrain_config, parse_value

    overrides: dict = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value)
    for name in (*_OVERRIDES, *_SHARED):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    for name in ("activation_checkpointing", "compile", "augment"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.quiet:
        overrides["progress"] = False
    if args.data:
        overrides["data"] = args.data
    overrides["out"] = args.out
    source = args.config
    if source is None:
        saved = Path(args.out) / CONFIG_NAME
        source = str(saved) if args.resume and saved.is_file() else "echofm-tiny"
    return load_pretrain_config(source, overrides)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from echofm.train.pretrain import pretrain

    result = pretrain(cfg, resume=args.resume, stop_after=args.stop_after)
    if result.model_dir is None:
        print(f"stopped at step {result.step}/{result.total_steps}; checkpoint {result.checkpoint}; "
              f"continue with --resume auto")
    return 0
