"""Model speed on whatever machine runs it: pretraining and embedding throughput per backend.

Prints one JSON object: the CPU (model, flags, cores, threads), the square-matmul rate of
each precision (fp32, bf16, int8 via ``torch._int_mm``), and for each preset (tiny, small)
the pretraining step (forward + backward + fused AdamW) and embedding throughput in clips/s,
peak memory, FLOPs per clip and utilisation of the matmul peak of the precision it runs in,
for torch fp32, torch auto (what ``--precision auto`` picks here), ONNX Runtime fp32 and
ONNX Runtime int8 (embedding only; ONNX does not train). Each measurement runs in a fresh
subprocess, so its peak memory (process max RSS on a CPU; torch's peak allocation on a
GPU) is its own. Embedding outputs are compared with torch fp32 (cosine of the video
embeddings).

The public EchoFM code is not part of echofm: its figures (ViT-S/16, 16 x 112 x 112,
tubelet 2, batch 4, fp32) were measured in issue 14 on an AVX2 machine whose fp32 matmul
ran at 110 GFLOP/s. Throughput is compute-bound, so they are scaled here by this machine's
fp32 matmul rate / 110 (peak memory is not scaled). Each run measures the fp32 matmul rate
in its own process, one matmul after each timed call (``matmul_gflops_here``, their median):
its utilisation and its ratio to the public code use that, so a run on a shared machine is
compared with what the machine gave it at the time. Utilisation is of the matmul peak of the
run's precision (ONNX int8: of fp32's, since ONNX Runtime's int8 kernels are not torch's).
bf16 is measured where the hardware runs it natively; elsewhere (``auto`` = fp32) only its
matmul rate is reported, from matrices sized to keep that quick.

    python benchmarks/model_speed.py [--presets echofm-tiny echofm-small] [--batch 4] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PUBLIC = {"config": "echofm-small: ViT-S/16, 16x112x112, tubelet 2, batch 4, fp32", "preset": "echofm-small",
          "train_clips_per_s": 2.38, "embed_clips_per_s": 3.63, "peak_memory_mib": 1168,
          "matmul_fp32_gflops": 110.0,
          "source": "issue 14: public EchoFM code, torch 2.13.0 CPU, 2-core AVX2 machine (no native bf16)"}
GOALS = {"train_fp32": 1.5, "train_bf16_native": 2.0, "embed_bf16_native": 3.0, "embed_no_native_bf16": 2.0,
         "peak_memory": 0.8, "embed_cosine": 0.99}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn, steps: int, device: str, warmup: int = 2, between=None) -> float:
    """Median wall time of ``fn()`` over ``steps`` calls, after ``warmup`` untimed ones;
    ``between()`` (untimed) runs after each timed call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
        if between is not None:
            between()
    return statistics.median(times)


class InterleavedMatmul:
    """The fp32 matmul rate the machine gives *during* a run: one square matmul after each
    timed call, their median. On a shared machine the load changes within seconds, so a
    rate measured before or after a run can be off by 2x (seen on a busy 2-core machine:
    45 and 11 GFLOP/s in one process, a few seconds apart)."""

    def __init__(self, device: str, n: int = 1024):
        self.device = device
        self.a = torch.randn(n, n, device=device)
        self.b = torch.randn(n, n, device=device)
        self.rates: list[float] = []

    def __call__(self) -> None:
        t = time.perf_counter()
        torch.matmul(self.a, self.b)
        sync(self.device)
        self.rates.append(2 * self.a.shape[0] ** 3 / (time.perf_counter() - t) / 1e9)

    def median(self) -> float:
        return statistics.median(self.rates)


def matmul_gflops(dtype: torch.dtype, device: str, n: int = 2048, reps: int = 8) -> float:
    """Square matmul rate; int8 through ``torch._int_mm`` (int32 accumulation).

    A precision the hardware only emulates (bf16 or int8 on an AVX2 CPU: about 1 GFLOP/s)
    would take minutes at n = 2048, so a quick probe at n = 256 first sizes the matrices to
    at most a second a call."""
    if n > 256:
        probe = matmul_gflops(dtype, device, 256, reps=2)
        while n > 256 and 2 * n**3 / (probe * 1e9) > 1.0:
            n //= 2
    if dtype == torch.int8:
        a = torch.randint(-128, 127, (n, n), device=device, dtype=dtype)
        b = torch.randint(-128, 127, (n, n), device=device, dtype=dtype)
        mm = torch._int_mm
    else:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        mm = torch.matmul
    return 2 * n**3 / median_seconds(lambda: mm(a, b), reps, device) / 1e9


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_mib(device: str) -> float:
    """Peak memory so far: torch's peak allocation on a GPU; on a CPU this process's
    high-water resident set (VmHWM). Not ``ru_maxrss``: Linux carries that across
    ``execve`` from the parent, so a child would report at least the driver's peak."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clips_for(cfg, batch: int, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g).to(device)


def seeded_model(preset: str):
    from echofm import load_model

    torch.manual_seed(0)
    return load_model(preset)


# --- one measurement, in its own process -----------------------------------------------------

def measure(preset: str, mode: str, engine: str, precision: str, batch: int, steps: int, device: str,
            onnx_dir: str | None, save_to: str | None, threads: int | None = None) -> dict:
    """mode train|embed; engine torch|torch-checkpointing|onnx-fp32|onnx-int8; precision
    fp32|bf16 (torch only); threads: torch's and ONNX Runtime's (None: echofm's default)."""
    from echofm.runtime import autocast, configure_threads

    threads = configure_threads(threads=threads)
    baseline = peak_mib(device)
    from echofm.config import preset as preset_config

    cfg = preset_config(preset)
    clips = clips_for(cfg, batch, device)
    probe = InterleavedMatmul(device)
    out: dict = {"preset": preset, "mode": mode, "engine": engine, "precision": precision, "batch": batch}
    if engine.startswith("onnx"):
        from echofm.runtime.onnx import OnnxModel

        model = OnnxModel(onnx_dir, quantized=engine == "onnx-int8", threads=threads, spinning=False)
        flops = None  # the same graph as torch's embedding: the driver takes torch's count
        seconds = median_seconds(lambda: model.embed(clips), steps, device, between=probe)
        video = model.embed(clips).video
        del model  # its thread pool must not compete with the matmul measurements below
    else:
        model = seeded_model(preset).to(device)
        if engine == "torch-checkpointing":
            model.set_activation_checkpointing(True)
        if mode == "train":
            from echofm.train.optim import adamw

            model.train()
            opt = adamw(model.parameters(), lr=1e-4)
            flops = flops_of(lambda: (model(clips).loss.backward(), opt.zero_grad(set_to_none=True)))

            def step():
                with autocast(precision, device):
                    loss = model(clips).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            seconds = median_seconds(step, steps, device, between=probe)
            video = None
        else:
            model.eval()
            with torch.inference_mode():
                flops = flops_of(lambda: model.embed(clips))

            def embed():
                with torch.inference_mode(), autocast(precision, device):
                    return model.embed(clips)

            seconds = median_seconds(embed, steps, device, between=probe)
            video = embed().video.float()
    if save_to and video is not None:
        torch.save(video.cpu(), save_to)
    peak = peak_mib(device)
    # The matmul rates in this process: fp32 interleaved with the timed calls (the rate the
    # run could get), and the run's own precision after it when that is not fp32.
    # ONNX int8 is measured against the fp32 rate: its kernels (MLAS u8s8) are not the ones
    # torch._int_mm runs, which on an AVX2 CPU without VNNI reach about 1 GFLOP/s.
    own = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    out["matmul_gflops_here"] = {"fp32": round(probe.median(), 1),
                                 "fp32_after": round(matmul_gflops(torch.float32, device), 1),
                                 "own": round(probe.median() if own == torch.float32 else matmul_gflops(own, device), 1)}
    out.update({
        "clips_per_s": round(batch / seconds, 2),
        "gflop_per_clip": None if flops is None else round(flops / batch / 1e9, 2),
        "achieved_gflops": None if flops is None else round(flops / seconds / 1e9, 1),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_over_import_mib": round(peak - baseline, 1),
        "peak_memory_kind": "cuda max allocated" if device.startswith("cuda") else "process peak RSS (VmHWM)",
    })
    return out


# --- the driver -----------------------------------------------------------------------------

def run_child(args, preset: str, mode: str, engine: str, precision: str, onnx_dir: str | None,
              save_to: str | None) -> dict:
    cmd = [sys.executable, __file__, "--_one", json.dumps({
        "preset": preset, "mode": mode, "engine": engine, "precision": precision, "batch": args.batch,
        "steps": args.steps, "device": args.device, "onnx_dir": onnx_dir, "save_to": save_to, "threads": args.threads})]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        return {"preset": preset, "mode": mode, "engine": engine, "error": res.stderr[-800:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).min())


def export_for(preset: str, folder: Path) -> str:
    """Export the seeded model (the one every torch run uses) with an int8 copy."""
    from echofm.runtime.onnx import export_onnx

    export_onnx(seeded_model(preset).eval(), folder, quantize="int8")
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["echofm-tiny", "echofm-small"], help="model presets to measure")
    ap.add_argument("--batch", type=int, default=4, help="clips per step")
    ap.add_argument("--steps", type=int, default=5, help="timed calls per measurement (median)")
    ap.add_argument("--device", default="cpu", help="torch device")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime measurements")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for torch and ONNX Runtime in every run (default: echofm's choice, the usable "
                         "cores); 1 gives steadier figures on a machine shared with other work")
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print(json.dumps(measure(**json.loads(args._one))))
        return

    from echofm.runtime import detect, resolve_precision
    from echofm.runtime.backend import onnx_available

    hw = detect()
    if args.threads:
        torch.set_num_threads(args.threads)
    auto = resolve_precision("auto", args.device, hw)
    peak = {"fp32": round(matmul_gflops(torch.float32, args.device), 1),
            "bf16": round(matmul_gflops(torch.bfloat16, args.device), 1)}
    if args.device == "cpu":
        peak["int8"] = round(matmul_gflops(torch.int8, args.device), 1)
    scale = peak["fp32"] / PUBLIC["matmul_fp32_gflops"]
    public = {**PUBLIC, "scale": round(scale, 3),
              "scaled_train_clips_per_s": round(PUBLIC["train_clips_per_s"] * scale, 2),
              "scaled_embed_clips_per_s": round(PUBLIC["embed_clips_per_s"] * scale, 2)}
    onnx = onnx_available() and not args.no_onnx and args.device == "cpu"
    # torch-checkpointing: fp32 training with activation checkpointing, the memory-lean option.
    engines = ([("torch", "fp32"), ("torch", auto), ("torch-checkpointing", "fp32")]
               + ([("onnx-fp32", "fp32"), ("onnx-int8", "int8")] if onnx else []))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            onnx_dir = export_for(preset, Path(tmp) / preset) if onnx else None
            reference = None
            for engine, precision in engines:
                label = f"{engine}-{precision}" if engine.startswith("torch") else engine
                if engine == "torch" and precision == "fp32" and label in [r.get("label") for r in runs
                                                                          if r.get("preset") == preset]:
                    continue
                row = {"preset": preset, "label": label, "engine": engine, "precision": precision,
                       "is_auto": engine == "torch" and precision == auto}
                modes = {"torch": ("train", "embed"), "torch-checkpointing": ("train",)}.get(engine, ("embed",))
                for mode in modes:
                    save_to = str(Path(tmp) / f"{preset}-{label}.pt") if mode == "embed" else None
                    res = run_child(args, preset, mode, engine, precision if engine.startswith("torch") else "fp32",
                                    onnx_dir, save_to)
                    if "error" in res:
                        row[f"{mode}_error"] = res["error"]
                        continue
                    rate = res["matmul_gflops_here"]["own"]
                    row[mode] = {k: res[k] for k in ("clips_per_s", "gflop_per_clip", "achieved_gflops",
                                                     "peak_memory_mib", "peak_memory_over_import_mib")}
                    if row[mode]["gflop_per_clip"] is None:  # ONNX: torch fp32's count for the same graph
                        torch_row = next(r for r in runs if r["preset"] == preset and r["label"] == "torch-fp32")
                        row[mode]["gflop_per_clip"] = torch_row["embed"]["gflop_per_clip"]
                        row[mode]["achieved_gflops"] = round(row[mode]["gflop_per_clip"] * res["clips_per_s"], 1)
                    row[mode]["utilisation_of_own_matmul_peak"] = round(row[mode]["achieved_gflops"] / rate, 3)
                    row[mode]["matmul_gflops_here"] = res["matmul_gflops_here"]
                    # The public figures scaled by the fp32 matmul rate this run could get.
                    row[mode]["public_scale_here"] = round(res["matmul_gflops_here"]["fp32"] / PUBLIC["matmul_fp32_gflops"], 3)
                    if save_to and Path(save_to).is_file():
                        video = torch.load(save_to, weights_only=True)
                        reference = video if label == "torch-fp32" else reference
                        if reference is not None:
                            row[mode]["cosine_to_torch_fp32"] = round(cosine(reference, video), 6)
                if preset == PUBLIC["preset"]:
                    ratios = {}
                    if "train" in row:
                        scaled = PUBLIC["train_clips_per_s"] * row["train"]["public_scale_here"]
                        ratios["train_vs_public"] = round(row["train"]["clips_per_s"] / scaled, 2)
                        ratios["train_peak_memory_vs_public"] = round(row["train"]["peak_memory_mib"] / PUBLIC["peak_memory_mib"], 2)
                    if "embed" in row:
                        scaled = PUBLIC["embed_clips_per_s"] * row["embed"]["public_scale_here"]
                        ratios["embed_vs_public"] = round(row["embed"]["clips_per_s"] / scaled, 2)
                    row["vs_public_code"] = ratios
                runs.append(row)
    print(json.dumps({"hardware": hw.to_dict(), "torch": torch.__version__, "device": args.device, "threads": args.threads,
                      "precision_auto": auto, "matmul_gflops": peak, "batch": args.batch, "steps": args.steps,
                      "load_average": os.getloadavg(), "runs": runs, "public_code_reference": public,
                      "goals": goals(runs, hw.cpu_bf16 if args.device == "cpu" else auto == "bf16")}, indent=1))


def goals(runs: list[dict], native_bf16: bool) -> dict:
    """Each goal of issue 14 for the preset the public code was measured on: value and met."""
    rows = {r["label"]: r for r in runs if r["preset"] == PUBLIC["preset"]}

    def ratio(label: str, key: str):
        return rows.get(label, {}).get("vs_public_code", {}).get(key)

    out: dict = {}
    if "torch-fp32" in rows:
        value = ratio("torch-fp32", "train_vs_public")
        out["train_fp32_vs_public"] = {"value": value, "goal": GOALS["train_fp32"],
                                       "met": value is not None and value >= GOALS["train_fp32"]}
        value = ratio("torch-fp32", "train_peak_memory_vs_public")
        out["peak_memory_vs_public"] = {"value": value, "goal": GOALS["peak_memory"],
                                        "met": value is not None and value <= GOALS["peak_memory"]}
    if "torch-checkpointing-fp32" in rows:  # the memory-lean option: its memory and its speed
        value = ratio("torch-checkpointing-fp32", "train_peak_memory_vs_public")
        out["peak_memory_with_checkpointing_vs_public"] = {
            "value": value, "goal": GOALS["peak_memory"], "met": value is not None and value <= GOALS["peak_memory"],
            "train_vs_public": ratio("torch-checkpointing-fp32", "train_vs_public")}
    best = max((r for r in rows.values() if r.get("embed", {}).get("cosine_to_torch_fp32", 1.0) >= GOALS["embed_cosine"]
                and "embed" in r), key=lambda r: r["embed"]["clips_per_s"], default=None)
    if best is not None:
        value = ratio(best["label"], "embed_vs_public")
        goal = GOALS["embed_bf16_native"] if native_bf16 else GOALS["embed_no_native_bf16"]
        out["embed_best_vs_public"] = {"backend": best["label"], "value": value, "goal": goal,
                                       "met": value is not None and value >= goal}
    if native_bf16 and "torch-bf16" in rows:
        value = ratio("torch-bf16", "train_vs_public")
        out["train_bf16_vs_public"] = {"value": value, "goal": GOALS["train_bf16_native"],
                                       "met": value is not None and value >= GOALS["train_bf16_native"]}
    return out


if __name__ == "__main__":
    main()
