"""Model speed on this machine: pretraining-step and embedding throughput, FLOPs, utilisation.

Prints one JSON object. Each (preset, precision) runs in a fresh subprocess so that its
peak memory (max RSS) is its own. Usage:

    python benchmarks/model_speed.py [--presets echofm-tiny echofm-small] [--batch 4]
        [--steps 6] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch


def matmul_gflops(dtype: torch.dtype, device: str, n: int = 2048, reps: int = 10) -> float:
    """Square matmul rate; int8 goes through ``torch._int_mm`` (int32 accumulation)."""
    if dtype == torch.int8:
        a = b = torch.randint(-128, 127, (n, n), device=device, dtype=dtype)
        mm = torch._int_mm
    else:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        mm = torch.matmul
    return 2 * n**3 / seconds_per_call(lambda: mm(a, b), reps, device) / 1e9


PUBLIC = {"config": "ViT-S/16, 16x112x112, tubelet 2, batch 4, fp32", "train_clips_per_s": 4,
          "embed_clips_per_s": 8, "source": "issue 2 (measured on this CPU)"}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds_per_call(fn, steps: int, device: str, warmup: int = 2) -> float:
    """Mean wall time of ``fn()`` over ``steps`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / steps


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measure_one(preset: str, precision: str, batch: int, steps: int, device: str) -> dict:
    from echofm import autocast, load_model

    torch.manual_seed(0)
    model = load_model(preset).to(device)
    c = model.cfg
    clips = torch.rand(batch, 3, c.num_frames, c.img_size, c.img_size, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        with autocast(precision, device):
            out = model(clips)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def embed():
        with torch.no_grad(), autocast(precision, device):
            model.embed(clips)

    model.train()
    train_flops = flops_of(lambda: (model(clips).loss.backward(), opt.zero_grad(set_to_none=True)))
    embed_flops = flops_of(lambda: model.embed(clips).video)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    train_s = seconds_per_call(train_step, steps, device)
    model.eval()
    embed_s = seconds_per_call(embed, steps, device)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "preset": preset, "precision": precision, "batch": batch, "device": device,
        "input": [3, c.num_frames, c.img_size, c.img_size],
        "train_clips_per_s": round(batch / train_s, 2),
        "embed_clips_per_s": round(batch / embed_s, 2),
        "train_gflop_per_clip": round(train_flops / batch / 1e9, 2),
        "embed_gflop_per_clip": round(embed_flops / batch / 1e9, 2),
        "train_achieved_gflops": round(train_flops / train_s / 1e9, 1),
        "embed_achieved_gflops": round(embed_flops / embed_s / 1e9, 1),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max allocated" if device.startswith("cuda") else "process max RSS",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", nargs="+", default=["echofm-tiny", "echofm-small"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print(json.dumps(measure_one(args._one[0], args._one[1], args.batch, args.steps, args.device)))
        return
    peak = {p: round(matmul_gflops(d, args.device), 1)
            for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    if args.device == "cpu":  # for context: integer matmul (VNNI) is the CPU's fastest path
        peak_int8 = round(matmul_gflops(torch.int8, args.device), 1)
    runs = []
    for preset in args.presets:
        for precision in args.precisions:
            cmd = [sys.executable, __file__, "--_one", preset, precision, "--batch", str(args.batch),
                   "--steps", str(args.steps), "--device", args.device]
            res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if res.returncode:
                runs.append({"preset": preset, "precision": precision, "error": res.stderr[-500:]})
                continue
            run = json.loads(res.stdout.strip().splitlines()[-1])
            run["train_utilisation"] = round(run["train_achieved_gflops"] / peak[precision], 3)
            run["embed_utilisation"] = round(run["embed_achieved_gflops"] / peak[precision], 3)
            # Upper bound if every FLOP ran at the measured matmul rate of this precision.
            run["embed_ceiling_clips_per_s"] = round(peak[precision] / run["embed_gflop_per_clip"], 1)
            run["train_ceiling_clips_per_s"] = round(peak[precision] / run["train_gflop_per_clip"], 1)
            if "small" in preset:
                run["train_vs_public"] = round(run["train_clips_per_s"] / PUBLIC["train_clips_per_s"], 2)
                run["embed_vs_public"] = round(run["embed_clips_per_s"] / PUBLIC["embed_clips_per_s"], 2)
            runs.append(run)
    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else platform.processor() or platform.machine())
    print(json.dumps({"device": device_name, "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "matmul_gflops": peak,
                      "int8_matmul_gops": peak_int8 if args.device == "cpu" else None,
                      "runs": runs, "public_code_reference": PUBLIC}, indent=1))


if __name__ == "__main__":
    main()
