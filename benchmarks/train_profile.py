"""Where a pretraining step's time goes: torch.profiler's self CPU time grouped by operator class.

One JSON object: for each precision asked (fp32 by default; bf16 only where the CPU runs it
natively, or with ``--allow-emulated-bf16``), the median step time, and the profiled steps'
self CPU time per operator class (matmul, attention, elementwise and normalisation, data
movement, optimizer, other) in ms per step and as a share, with the ten most expensive
operators. Self time (not total) so nested calls are not counted twice: ``aten::linear``
shows almost nothing of its own, its ``aten::addmm`` carries the matmul.

    python benchmarks/train_profile.py [--preset echofm-small] [--batch 4] [--steps 3] [--embed] [--threads 1]

``--embed`` profiles the embedding call (inference mode) instead of a training step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict

import torch

# Operator classes by aten name (without "aten::"); a name in none of them is "other".
# Prefix matches for the families with many variants (backward, out=, in-place).
CLASSES = (
    ("optimizer", ("_fused_adam", "_foreach_", "adam")),
    ("attention", ("_scaled_dot_product", "scaled_dot_product", "_softmax", "softmax")),
    ("matmul", ("addmm", "mm", "bmm", "matmul", "linear", "convolution", "_convolution", "mkldnn_convolution",
                "conv3d", "_int_mm", "baddbmm", "einsum")),
    ("elementwise_and_norm", ("gelu", "layer_norm", "native_layer_norm", "add", "add_", "mul", "mul_", "div", "div_",
                              "sub", "rsub", "pow", "mean", "sum", "var", "rsqrt", "sqrt", "exp", "masked_fill",
                              "where", "neg", "clamp", "threshold", "norm", "addcmul", "addcdiv", "lerp",
                              "sigmoid", "tanh", "max", "min", "abs", "cumsum", "argsort", "sort", "bernoulli",
                              "rand", "cosine_similarity", "log", "sign", "mse_loss", "relu", "std", "linalg_vector_norm",
                              "clamp_min", "maximum", "minimum", "eq", "ne", "lt", "gt", "le", "ge", "logical_not")),
    ("data_movement", ("copy_", "contiguous", "clone", "cat", "stack", "gather", "scatter", "scatter_add_",
                       "index", "index_select", "index_put_", "permute", "transpose", "view", "reshape", "expand",
                       "slice", "select", "unbind", "split", "empty", "expand_as", "empty_like", "empty_strided", "to",
                       "_to_copy", "repeat", "repeat_interleave", "as_strided", "flatten", "t", "narrow",
                       "unsqueeze", "squeeze", "detach", "zeros", "zeros_like", "ones", "ones_like", "new_zeros",
                       "new_ones", "new_empty", "resize_", "set_", "fill_", "zero_", "_unsafe_view", "alias",
                       "lift_fresh", "full", "arange", "linspace", "_reshape_alias", "unfold", "roll",
                       "embedding_backward", "gather_backward", "select_backward", "slice_backward",
                       "stack_backward", "unbind_backward")),
)


def op_class(name: str) -> str:
    """The class of an operator: exact aten name first, then a family prefix
    (``gelu_backward`` -> elementwise, ``mkldnn_convolution`` -> matmul)."""
    base = name.split("::")[-1]
    for cls, names in CLASSES:
        if base in names:
            return cls
    for cls, names in CLASSES:
        if any(len(n) >= 3 and base.startswith(n) for n in names):
            return cls
    return "other"


def native_bf16() -> bool:
    from echofm.runtime import detect

    return bool(detect().cpu_bf16)


def profile(preset: str, batch: int, steps: int, precision: str, embed: bool, threads: int | None = None) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from echofm import load_model
    from echofm.config import preset as preset_config
    from echofm.runtime import autocast, configure_threads
    from echofm.train.optim import adamw

    threads = configure_threads(threads=threads)
    torch.manual_seed(0)
    model = load_model(preset)
    cfg = preset_config(preset)
    clips = torch.rand(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(1))
    if embed:
        model.eval()

        def step():
            with torch.inference_mode(), autocast(precision):
                model.embed(clips)
    else:
        model.train()
        opt = adamw(model.parameters(), lr=1e-4)

        def step():
            with autocast(precision):
                loss = model(clips).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_class: dict = defaultdict(float)
    by_op: dict = defaultdict(float)
    for ev in prof.key_averages():
        self_ms = ev.self_cpu_time_total / 1000.0 / steps
        if self_ms <= 0:
            continue
        by_class[op_class(ev.key)] += self_ms
        by_op[ev.key] += self_ms
    total = sum(by_class.values())
    return {
        "preset": preset, "mode": "embed" if embed else "train", "precision": precision, "batch": batch,
        "threads": threads, "median_step_s": round(statistics.median(times), 4),
        "clips_per_s": round(batch / statistics.median(times), 2),
        "profiled_self_cpu_ms_per_step": round(total, 1),
        "by_class_ms": {k: round(v, 1) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
        "by_class_share": {k: round(v / total, 3) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
        "top_ops_ms": {k: round(v, 1) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:10]},
        "matmul_bound_speedup_limit": round(total / max(total - by_class.get("matmul", 0.0), 1e-9), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="echofm-small", help="model preset")
    ap.add_argument("--batch", type=int, default=4, help="clips per step")
    ap.add_argument("--steps", type=int, default=3, help="timed and profiled steps (after 2 warm-up steps)")
    ap.add_argument("--precision", nargs="+", default=None,
                    help="precisions to profile (default: fp32, and bf16 where the CPU runs it natively)")
    ap.add_argument("--allow-emulated-bf16", action="store_true",
                    help="profile bf16 even where the CPU only emulates it (about 100x slower)")
    ap.add_argument("--embed", action="store_true", help="profile the embedding call instead of a training step")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: echofm's choice, the usable cores); 1 is steadier on a shared machine")
    args = ap.parse_args(argv)
    native = native_bf16()
    wanted = args.precision or (["fp32", "bf16"] if native else ["fp32"])
    runs, skipped = [], []
    for precision in wanted:
        if precision == "bf16" and not native and not args.allow_emulated_bf16:
            skipped.append({"precision": "bf16", "reason": "the CPU has no native bf16 (emulated, about 100x slower)"})
            continue
        runs.append(profile(args.preset, args.batch, args.steps, precision, args.embed, args.threads))
    from echofm.runtime import detect

    hw = detect()
    report = {"cpu": hw.to_dict(), "torch": torch.__version__, "load_average": os.getloadavg(),
              "runs": runs, "skipped": skipped}
    json.dump(report, sys.stdout, indent=1)
    print()
    return report


if __name__ == "__main__":
    main()
