"""Label efficiency: pretrained vs random-init echofm-tiny on phantoms, EF / view / LV
segmentation / ED/ES, k labelled clips, several seeds, full fine-tuning and the frozen
probe, two held-out sets; prints the cells (means, 95% intervals, verdicts) as JSON.

Usage: python benchmarks/label_efficiency.py [--out DIR] [--quick] [--ks 16 64 256] [--seeds 0 1 2]
The study itself is ``echofm.experiments.label_efficiency`` (this script only parses options
and calls it); it writes DIR/label_efficiency.json, .html and the curves as PNG. The default
size is meant to finish within an hour on 2 idle CPU cores; --quick is a toy size that runs
in seconds and learns nothing.
"""

import argparse
import json
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name as `echofm doctor` reads it (else the platform's name)."""
    from echofm.runtime.hardware import detect

    return detect().cpu_model or platform.processor() or "unknown"


def main(argv=None) -> dict:
    from echofm.experiments.label_efficiency import MODES, QUICK, TASKS, LabelEfficiencyConfig, run_label_efficiency

    defaults = LabelEfficiencyConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/echofm_label_efficiency", help="output folder (JSON, HTML, PNG)")
    p.add_argument("--quick", action="store_true", help="toy size (seconds; learns nothing): a smoke test")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=None, help="tasks to run (default: all)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=None, help="full fine-tuning and/or the frozen probe")
    p.add_argument("--ks", nargs="+", type=int, default=None, help=f"labelled clips per run (default {defaults.ks})")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help=f"seeds (default {defaults.seeds})")
    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps per run (default {defaults.steps})")
    p.add_argument("--head-only-fraction", type=float, default=None,
                   help="share of each full fine-tuning's steps that train only the head first (LP-FT; "
                        f"default {defaults.head_only_fraction})")
    p.add_argument("--init", default=None, help="pretrained model source (default: pretrain echofm-tiny here)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help=f"pretraining steps without --init (default {defaults.pretrain_steps})")
    p.add_argument("--pretrain-clips", type=int, default=None,
                   help=f"distinct phantom clips pretraining draws from, without --init (default {defaults.pretrain_clips})")
    p.add_argument("--pretrain-presets", nargs="+", default=None, metavar="PRESET",
                   help="phantom presets of the pretraining clips, taken in turn, without --init "
                        f"(default {defaults.pretrain_presets}; the labelled clips are always 'default')")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a pretraining config field as `echofm pretrain --set` takes it, without --init "
                        "(e.g. --pretrain-set model.embed_center_alpha=1)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (default 2); the same seed gives the same figures only with the same thread count")
    p.add_argument("--quiet", action="store_true", help="print only the JSON")
    a = p.parse_args(argv)

    values = dict(QUICK) if a.quick else {}
    for name in ("tasks", "modes", "ks", "seeds", "steps", "head_only_fraction", "init", "pretrain_steps", "pretrain_clips",
                 "pretrain_presets", "threads"):
        if getattr(a, name) is not None:
            values[name] = getattr(a, name)
    if a.pretrain_set:
        from echofm.train.config import parse_value

        bad = [item for item in a.pretrain_set if "=" not in item]
        if bad:
            p.error(f"--pretrain-set {bad[0]}: expected KEY=VALUE")
        values["pretrain_options"] = {k.strip(): parse_value(v) for k, v in (i.split("=", 1) for i in a.pretrain_set)}
    try:
        config = LabelEfficiencyConfig(out=a.out, **values).validate()
    except ValueError as exc:  # a setting that cannot work: say which, without a traceback
        p.error(str(exc))
    result = run_label_efficiency(config, say=(lambda line: None) if a.quiet else print)
    report = {"cpu": cpu_name(), "threads": config.threads, "out": str(result.out),
              "config": result.summary["config"], "pretraining": result.summary["pretraining"],
              "timing_s": result.summary["timing_s"],
              "cells": [{k: c[k] for k in ("task", "metric", "mode", "k", "heldout", "pretrained_mean", "random_mean",
                                           "pretrained_within_2", "random_within_2", "gain_mean", "gain_ci95_seeds",
                                           "gain_ci95_clips", "verdict") if k in c}
                        for c in result.cells],
              "pixel_rule": result.summary["pixel_rule"]}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
