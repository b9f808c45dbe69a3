"""Pretraining throughput: clips/s and peak memory per preset, batch and precision (JSON).

One optimiser step = forward (masked, all objectives) + backward + AdamW, as in the
pretraining loop. Each configuration runs in its own subprocess so its peak memory is
its own (CPU: peak resident set of that process; CUDA: torch's peak allocation).

    python benchmarks/pretrain_speed.py                      # CPU grid, fp32 and bf16
    python benchmarks/pretrain_speed.py --device cuda        # echofm-large, bf16, on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

CPU_GRID = [("echofm-tiny", 1), ("echofm-tiny", 4), ("echofm-small", 1), ("echofm-small", 4),
            ("echofm-base", 1)]
CUDA_GRID = [("echofm-large", 1), ("echofm-large", 2), ("echofm-large", 4), ("echofm-large", 8)]


def measure(preset: str, batch: int, precision: str, device: str, steps: int, warmup: int,
            checkpointing: bool, compile_model: bool) -> dict:
    """Time ``steps`` optimiser steps after ``warmup`` untimed ones."""
    import torch

    import echofm
    from echofm.train.optim import build_optimizer

    torch.manual_seed(0)
    model = echofm.load_model(preset).to(device)
    model.set_activation_checkpointing(checkpointing)
    forward = torch.compile(model) if compile_model else model
    optimizer = build_optimizer(model, 1e-4, 0.05)
    c = model.cfg
    clips = torch.rand(batch, 3, c.num_frames, c.img_size, c.img_size, device=device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def step():
        with echofm.autocast(precision, device):
            out = forward(clips)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    # Median: robust to other processes stealing the CPU for a step or two.
    seconds = statistics.median(times)
    row = {"preset": preset, "batch": batch, "precision": precision, "device": device,
           "activation_checkpointing": checkpointing, "compile": compile_model,
           "s_per_step": round(seconds, 4), "s_per_step_all": [round(t, 3) for t in times], "clips_per_s": round(batch / seconds, 3)}
    if device == "cuda":
        row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        row["card"] = torch.cuda.get_device_name()
    else:
        row["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        row["rss_after_setup_gb"] = round(rss_before, 3)
        row["threads"] = torch.get_num_threads()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", action="append", choices=["fp32", "bf16"],
                    help="repeatable; default: fp32 and bf16 on CPU, bf16 on CUDA")
    ap.add_argument("--config", action="append", metavar="PRESET:BATCH",
                    help="repeatable; default: a small CPU grid, or echofm-large x 1/2/4/8 on CUDA")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 CPU, 10 CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3 CPU, 3 CUDA)")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--one", nargs=3, metavar=("PRESET", "BATCH", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    cuda = args.device == "cuda"
    steps = args.steps or (10 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else 3
    if args.one:  # child process: one configuration
        preset, batch, precision = args.one
        print(json.dumps(measure(preset, int(batch), precision, args.device, steps, warmup,
                                 args.activation_checkpointing, args.compile)))
        return
    grid = ([(c.split(":")[0], int(c.split(":")[1])) for c in args.config] if args.config
            else (CUDA_GRID if cuda else CPU_GRID))
    precisions = args.precision or (["bf16"] if cuda else ["fp32", "bf16"])
    rows = []
    for preset, batch in grid:
        for precision in precisions:
            cmd = [sys.executable, __file__, "--device", args.device, "--steps", str(steps),
                   "--warmup", str(warmup), "--one", preset, str(batch), precision]
            cmd += ["--activation-checkpointing"] if args.activation_checkpointing else []
            cmd += ["--compile"] if args.compile else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:  # e.g. out of memory: record it and go on
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"preset": preset, "batch": batch, "precision": precision, "error": tail})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                      "results": rows}, indent=1))


if __name__ == "__main__":
    main()
