"""`echofm demo`: parse the demo's sizes and run ``echofm.experiments.demo.run_demo`` (what `make demo` runs)."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace

NAME = "demo"
HELP = ("run the end-to-end demo: phantoms -> prepare -> a pretrained encoder -> fine-tuned vs random init -> "
        "real cine -> report")
DESCRIPTION = (
    "Generate phantom DICOM cines, prepare them (sector masking, de-identification), load the "
    "shipped reference model echofm-tiny-phantom (or --init; --pretrain pretrains echofm-tiny "
    "here instead), then fine-tune the pretrained encoder and the same encoder at random "
    "initialisation on the same labelled phantoms for EF, view, LV segmentation and ED/ES and "
    "compare them on held-out phantoms with 95% intervals, and probe their frozen features; measure the cycle length and heart rate "
    "of the real apical 4-chamber cine in pydicom-data; write DIR/report.html, "
    "DIR/demo_summary.json and print a table of every figure. About 4 minutes on an idle 2-core CPU "
    "with the defaults; --quick takes about a minute (too short for pretraining to help).")

SIZE_HELP = {
    "clips": "training phantom cines: pretraining data and the probes' training set",
    "test_clips": "held-out phantom cines (other seeds) the probes are scored on",
    "frames": "frames per phantom cine",
    "fps": "phantom frame rate (without --pretrain it must be, and defaults to, the loaded model's); the model "
           "records it, so the real cine is read at the frame step closest to it",
    "phantom_size": "side of the phantom ultrasound image in the DICOMs, pixels",
    "size": "prepared clip and model input side, pixels, a multiple of 16 (without --pretrain it must be, and "
            "defaults to, the loaded model's)",
    "steps": "pretraining steps (with --pretrain)",
    "batch_size": "pretraining batch size (with --pretrain)",
    "lr": "pretraining peak learning rate (with --pretrain)",
    "compare_k": "labelled phantoms each arm is fine-tuned on in the pretrained vs random-init comparison",
    "compare_steps": "optimiser steps of each fine-tuning run in the comparison (the same for both arms)",
    "workers": "worker processes for synth and prepare",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from echofm.experiments.demo import QUICK, DemoConfig  # light: the experiment imports torch only when run

    d = DemoConfig()
    p.add_argument("--out", default=d.out, help="output folder (a previous demo's folder is cleared first)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="random seed (phantoms, pretraining, probes); the held-out phantoms use seed+1")
    p.add_argument("--init", default=d.init,
                   help="the pretrained encoder compared with its random initialisation: a shipped reference "
                        "model, a run's model folder, a .safetensors file or an hf: name (default: "
                        f"{d.init}, pretrained once by echofm; see docs/reference.md)")
    p.add_argument("--pretrain", action="store_true",
                   help="pretrain echofm-tiny on the demo's phantoms here (--steps, --batch-size, --lr) instead of "
                        "loading --init (about 8 more minutes with the defaults on a 2-core CPU)")
    types = {"fps": float, "size": int}
    for name, text in SIZE_HELP.items():
        default = getattr(d, name)
        quick = f"; --quick: {QUICK[name]}" if name in QUICK else ""
        shown = default if default is not None else "the model's; 80 px and 15 fps with --pretrain"
        # SUPPRESS: an option not given is absent, so --quick can tell it from an explicit value.
        p.add_argument("--" + name.replace("_", "-"), type=types.get(name, type(default)), default=argparse.SUPPRESS,
                       help=f"{text} (default: {shown}{quick})")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke test (about a minute; too short for pretraining to help); "
                        "size options given explicitly still apply")


def build_config(args: argparse.Namespace):
    """DemoConfig from parsed options: defaults, then the --quick preset, then explicit options."""
    from echofm.experiments.demo import QUICK, DemoConfig

    explicit = {f.name: getattr(args, f.name) for f in fields(DemoConfig) if hasattr(args, f.name)}
    return replace(DemoConfig(), **{**(QUICK if args.quick else {}), **explicit}).validate()


def run(args: argparse.Namespace) -> int:
    import logging

    from echofm.experiments.demo import run_demo

    logging.getLogger("echofm").setLevel(logging.ERROR)  # per-sample skip notes would drown the steps
    result = run_demo(build_config(args), say=lambda line: print(line, flush=True))
    print("\n" + result.text())
    return 0
