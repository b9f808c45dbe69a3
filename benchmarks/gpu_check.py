"""GPU check: echofm-large pretraining and embedding throughput, MFU, memory, data loading (JSON).

One command, at most about 8 minutes on one GPU (``--budget`` seconds, default 420):

    python benchmarks/gpu_check.py                      # echofm-large on cuda, bf16, flash SDPA

For each of {eager, torch.compile} x {no checkpointing, activation checkpointing} it finds
the largest batch that fits (doubling until out of memory, up to ``--max-batch``), then
times ``--steps`` pretraining steps (forward with masking + backward + fused AdamW) in bf16
with flash attention, and reports clips/s, model FLOPs utilisation (model FLOPs per step,
counted once, i.e. without the recomputation checkpointing adds, / step time / the GPU's
peak) and peak memory. Then embedding clips/s at the largest batch that fits, and the data
loader's sustained clips/s from a prepared cache (made here with `echofm synth` + `echofm
prepare` in a temporary folder) with ``--workers`` workers.

MFU is given against the measured bf16 matmul rate of this GPU and, where the GPU is known,
against its dense bf16 peak from the data sheet. The target (issue 14) is MFU >= 40% on
an H100/H200 class GPU. On a CPU (``--device cpu --preset echofm-tiny --steps 1``) it
runs the same code paths at toy size, so the test suite keeps it from rotting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets (SXM parts).
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def datasheet_peak(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)


def matmul_flops(device: str, dtype=torch.bfloat16, n: int = 8192, reps: int = 10) -> float:
    """Measured square matmul rate (FLOP/s)."""
    n = n if device.startswith("cuda") else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def attention_context(device: str):
    """Flash SDPA on CUDA (fails loudly if the kernel cannot run); the default elsewhere."""
    if device.startswith("cuda"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION])
    return contextlib.nullcontext()


class Trainer:
    """One pretraining configuration: model, optimiser and a step function."""

    def __init__(self, preset: str, device: str, compiled: bool, checkpointing: bool, precision: str):
        from echofm import load_model
        from echofm.train.optim import adamw

        torch.manual_seed(0)
        self.device = device
        self.model = load_model(preset).to(device).train()
        self.model.set_activation_checkpointing(checkpointing)
        self.opt = adamw(self.model.parameters(), lr=1e-4)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.cfg = self.model.cfg
        self.precision = precision

    def clips(self, batch: int) -> torch.Tensor:
        c = self.cfg
        return torch.rand(batch, 3, c.num_frames, c.img_size, c.img_size, device=self.device)

    def step(self, clips: torch.Tensor) -> None:
        from echofm.runtime import autocast

        with attention_context(self.device), autocast(self.precision, self.device):
            loss = self.forward(clips).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def train_flops_per_clip(preset: str, device: str) -> float:
    """Model FLOPs of one pretraining step per clip (forward + backward, counted once)."""
    from torch.utils.flop_counter import FlopCounterMode

    from echofm import load_model

    model = load_model(preset).to(device).train()
    c = model.cfg
    clips = torch.rand(1, 3, c.num_frames, c.img_size, c.img_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(clips).loss.backward()
    del model
    free_memory(device)
    return float(counter.get_total_flops())


def largest_batch(try_batch, max_batch: int, deadline: float) -> tuple[int, list]:
    """Double the batch from 1 while ``try_batch(b)`` fits; returns (largest that fit, notes)."""
    best, notes, b = 0, [], 1
    while b <= max_batch and time.perf_counter() < deadline:
        try:
            try_batch(b)
            best = b
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            notes.append(f"batch {b}: out of memory")
            break
        b *= 2
    return best, notes


def measure_training(args, compiled: bool, checkpointing: bool, flops_per_clip: float, peaks: dict,
                     deadline: float) -> dict:
    name = f"{'compiled' if compiled else 'eager'}{' + checkpointing' if checkpointing else ''}"
    if compiled and not args.compile:
        return {"config": name, "skipped": "torch.compile off (pass --compile; on by default on CUDA)"}
    if time.perf_counter() > deadline:
        return {"config": name, "skipped": "time budget spent"}
    free_memory(args.device)
    trainer = Trainer(args.preset, args.device, compiled, checkpointing, args.precision)

    def fits(b: int) -> None:
        clips = trainer.clips(b)
        for _ in range(2):  # the second step has the optimiser state allocated
            trainer.step(clips)
        sync(args.device)

    batch, notes = largest_batch(fits, args.max_batch, deadline)
    if batch == 0:
        return {"config": name, "error": "batch 1 does not fit", "notes": notes}
    clips = trainer.clips(batch)  # the search has warmed this batch size up
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(args.steps):
        trainer.step(clips)
    sync(args.device)
    seconds = (time.perf_counter() - t) / args.steps
    achieved = flops_per_clip * batch / seconds
    out = {"config": name, "batch": batch, "clips_per_s": round(batch / seconds, 2),
           "step_s": round(seconds, 4), "achieved_tflops": round(achieved / 1e12, 2),
           "mfu_vs_measured_matmul": round(achieved / peaks["measured"], 3), "notes": notes}
    if peaks.get("datasheet"):
        out["mfu_vs_datasheet"] = round(achieved / peaks["datasheet"], 3)
    if args.device.startswith("cuda"):
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del trainer
    free_memory(args.device)
    return out


def measure_embedding(args, deadline: float) -> dict:
    from echofm import load_model

    if time.perf_counter() > deadline:
        return {"skipped": "time budget spent"}
    free_memory(args.device)
    torch.manual_seed(0)
    model = load_model(args.preset).to(args.device).eval()
    c = model.cfg

    def run(b: int) -> None:
        clips = torch.rand(b, 3, c.num_frames, c.img_size, c.img_size, device=args.device)
        from echofm.runtime import autocast

        with torch.inference_mode(), attention_context(args.device), autocast(args.precision, args.device):
            model.embed(clips)
        sync(args.device)

    batch, notes = largest_batch(run, args.max_batch, deadline)
    if batch == 0:
        return {"error": "batch 1 does not fit", "notes": notes}
    t = time.perf_counter()
    for _ in range(args.steps):
        run(batch)
    seconds = (time.perf_counter() - t) / args.steps
    out = {"batch": batch, "clips_per_s": round(batch / seconds, 2), "notes": notes}
    if args.device.startswith("cuda"):
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del model
    free_memory(args.device)
    return out


def measure_loader(args, deadline: float) -> dict:
    """Sustained clips/s of the pretraining DataLoader over a prepared cache (after the first batch)."""
    from torch.utils.data import DataLoader

    from echofm.cli import main as echofm
    from echofm.config import preset
    from echofm.train.data import build_pretrain_dataset

    if time.perf_counter() > deadline:
        return {"skipped": "time budget spent"}
    cfg = preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        raw, cache = Path(tmp) / "synth", Path(tmp) / "cache"
        t = time.perf_counter()
        quiet = contextlib.redirect_stdout(sys.stderr)  # their JSON summaries are not this report
        with quiet:
            synth = echofm(["synth", "--out", str(raw), "--n", str(args.cache_clips), "--frames", str(max(cfg.num_frames, 32)),
                            "--size", "128", "--workers", str(max(1, args.workers))])
            prepare = echofm(["prepare", str(raw), "--out", str(cache), "--size", str(cfg.img_size),
                              "--workers", str(max(1, args.workers))])
        if synth or prepare:
            return {"error": f"echofm synth exited {synth}, echofm prepare exited {prepare}"}
        made = time.perf_counter() - t
        dataset = build_pretrain_dataset([str(cache)], cfg, 0)
        batch = max(1, min(args.loader_batch, len(dataset)))
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=args.workers, drop_last=True,
                            pin_memory=args.device.startswith("cuda"), persistent_workers=args.workers > 0)
        clips, first, t0 = 0, None, time.perf_counter()
        for epoch in range(args.loader_epochs):
            for item in loader:
                if first is None:
                    first, t0 = time.perf_counter() - t0, time.perf_counter()
                    continue
                clips += item.shape[0]
        seconds = time.perf_counter() - t0
    return {"workers": args.workers, "batch": batch, "cache_clips": len(dataset), "epochs": args.loader_epochs,
            "clips_per_s": round(clips / seconds, 1) if clips else None, "first_batch_s": round(first or 0, 2),
            "cache_made_in_s": round(made, 1)}


def timed(fn, *args) -> dict:
    """``fn(*args)`` with the wall time it took added as ``seconds``."""
    t = time.perf_counter()
    out = fn(*args)
    out["seconds"] = round(time.perf_counter() - t, 1)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="echofm-large", help="model preset (the released ViT-L/16 by default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--max-batch", type=int, default=256, help="stop doubling the batch here")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="also measure torch.compile (default: on for CUDA, off for CPU where it takes minutes)")
    ap.add_argument("--workers", type=int, default=8, help="data-loader workers")
    ap.add_argument("--cache-clips", type=int, default=64, help="clips in the prepared cache for the loader test")
    ap.add_argument("--loader-batch", type=int, default=16, help="data-loader batch")
    ap.add_argument("--loader-epochs", type=int, default=3, help="passes over the cache")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later parts are skipped past it")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.compile is None:
        args.compile = args.device.startswith("cuda")
    from echofm.runtime import resolve_precision

    # bf16 on a GPU is the point of the check; a CPU gets what --precision auto gives it.
    args.precision = "bf16" if args.device.startswith("cuda") else resolve_precision("auto", args.device)
    start = time.perf_counter()
    deadline = start + args.budget
    from echofm.runtime import detect

    hw = detect()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peaks = {"measured": matmul_flops(args.device, dtype), "datasheet": datasheet_peak(args.device)}
    report: dict = {
        "preset": args.preset, "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else hw.cpu_model,
        "torch": torch.__version__, "precision": args.precision, "attention": "flash SDPA" if args.device.startswith("cuda")
        else "default SDPA (flash is CUDA only)",
        "matmul_tflops_measured": round(peaks["measured"] / 1e12, 2),
        "bf16_datasheet_tflops": None if not peaks["datasheet"] else peaks["datasheet"] / 1e12,
    }
    flops = train_flops_per_clip(args.preset, args.device)
    report["train_gflop_per_clip"] = round(flops / 1e9, 1)
    report["training"] = [timed(measure_training, args, compiled, ckpt, flops, peaks, deadline)
                          for compiled in (False, True) for ckpt in (False, True)]
    report["embedding"] = timed(measure_embedding, args, deadline)
    report["data_loader"] = timed(measure_loader, args, deadline)
    report["seconds"] = round(time.perf_counter() - start, 1)
    best = max((r.get("mfu_vs_datasheet", r.get("mfu_vs_measured_matmul", 0)) for r in report["training"]
                if "clips_per_s" in r), default=None)
    report["best_mfu"] = best
    report["mfu_goal"] = 0.40
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
