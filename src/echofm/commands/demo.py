"""`echofm demo`: the whole system, end to end, on data it makes itself (what `make demo` runs).

1. ``echofm synth``: phantom DICOM cines with exact ground truth, invented identifiers and
   burned-in text: a training set and a held-out test set (different phantom seeds).
2. ``echofm prepare``: sector masking, cropping, de-identification into clip caches; the
   demo checks that no identifier reaches the caches and shows a frame before and after.
3. ``echofm pretrain``: echofm-tiny on the training cache (no labels).
4. Linear probes on held-out phantoms, each for the pretrained encoder and for the same
   encoder at its random initialisation (the weights pretraining started from): EF
   (``tasks.finetuning.finetune_and_evaluate``), view (likewise) and ED/ES detection from the
   per-time-step embeddings (``analysis.probe``), beside reference figures (the training
   mean EF, the majority view, ED/ES from pixels alone).
5. ``echofm phase``: the real apical 4-chamber cine of pydicom-data, its burned-in text
   masked; cycle length and heart rate.
6. ``echofm report`` for the pretraining run; ``DIR/report.html``, ``DIR/demo_summary.json``
   and a printed table of every figure.

Every figure is measured in this run and printed whichever way it comes out.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

NAME = "demo"
HELP = "run the end-to-end demo: phantoms -> prepare -> pretrain -> probes vs random init -> real cine -> report"
DESCRIPTION = (
    "Generate phantom DICOM cines, prepare them (sector masking, de-identification), pretrain "
    "echofm-tiny, then probe EF, view and ED/ES on held-out phantoms with the pretrained encoder "
    "and with the same encoder at random initialisation; measure the cycle length and heart rate "
    "of the real apical 4-chamber cine in pydicom-data; write DIR/report.html, "
    "DIR/demo_summary.json and print a table of every figure. About 10 minutes on a 2-core CPU "
    "with the defaults; --quick takes about a minute (too short for pretraining to help).")

MARKER = ".echofm-demo"
PARTS = ("phantoms", "cache", "pretrain", "probes", "real_a4c", "figures")
REAL_CINE = "color3d_jpeg_baseline.dcm"


@dataclass
class DemoConfig:
    """Sizes of the demo run (see ``add_arguments`` for the meaning of each)."""

    out: str = "demo_out"
    seed: int = 0
    clips: int = 96
    test_clips: int = 40
    frames: int = 40
    fps: float = 15.0
    phantom_size: int = 128
    size: int = 80
    steps: int = 500
    batch_size: int = 8
    lr: float = 5e-4
    probe_epochs: int = 20
    probe_lr: float = 4e-2
    workers: int = 2


QUICK = dict(clips=16, test_clips=8, frames=24, phantom_size=96, size=64, steps=6, batch_size=4,
             probe_epochs=2)


_SIZE_HELP = {
    "clips": "training phantom cines: pretraining data and the probes' training set",
    "test_clips": "held-out phantom cines (other seeds) the probes are scored on",
    "frames": "frames per phantom cine",
    "fps": "phantom frame rate; the real cine is read at the frame stride closest to it",
    "phantom_size": "side of the phantom ultrasound image in the DICOMs, pixels",
    "size": "prepared clip and model input side, pixels (a multiple of 16)",
    "steps": "pretraining steps",
    "batch_size": "pretraining batch size",
    "lr": "pretraining peak learning rate",
    "probe_epochs": "epochs of the EF and view linear probes",
    "probe_lr": "base learning rate of the EF and view linear probes, applied as blr * 8 / 256 (the "
                "fine-tuning linear-probe default)",
    "workers": "worker processes for synth and prepare",
}


def add_arguments(p) -> None:
    import argparse

    d = DemoConfig()
    p.add_argument("--out", default=d.out, help="output folder (a previous demo's folder is cleared first)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="random seed (phantoms, pretraining, probes); the held-out phantoms use seed+1")
    for name, text in _SIZE_HELP.items():
        default = getattr(d, name)
        quick = f"; --quick: {QUICK[name]}" if name in QUICK else ""
        # SUPPRESS: an option not given is absent, so --quick can tell it from an explicit value.
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=argparse.SUPPRESS,
                       help=f"{text} (default: {default}{quick})")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke test (about a minute; too short for pretraining to help); "
                        "size options given explicitly still apply")


def build_config(args) -> DemoConfig:
    """DemoConfig from parsed options: defaults, then the --quick preset, then explicit options."""
    cfg = DemoConfig(out=args.out, seed=args.seed)
    if args.quick:
        cfg = replace(cfg, **QUICK)
    cfg = replace(cfg, **{k: getattr(args, k) for k in _SIZE_HELP if hasattr(args, k)})
    if cfg.size % 16:
        raise ValueError(f"--size {cfg.size}: must be a multiple of 16 (the patch size)")
    if cfg.clips < 8 or cfg.test_clips < 4:
        raise ValueError("--clips must be at least 8 and --test-clips at least 4")
    if cfg.clips < cfg.batch_size:
        raise ValueError(f"--clips {cfg.clips} is smaller than one pretraining batch ({cfg.batch_size})")
    return cfg


def run(args) -> int:
    return run_demo(build_config(args))


# --- the run -----------------------------------------------------------------------------

class _Steps:
    """Prints each step as it starts, and records how long each took."""

    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.time()
        self.seconds: dict[str, float] = {}

    def start(self, name: str, detail: str = "") -> float:
        self.done += 1
        print(f"\n== [{self.done}/{self.total}] {name}{'  ' + detail if detail else ''}  "
              f"(t={time.time() - self.t0:.0f}s)", flush=True)
        return time.time()

    def finish(self, name: str, started: float) -> None:
        self.seconds[name] = round(time.time() - started, 1)


def _cli(argv: list[str]) -> None:
    from echofm.cli import main as echofm

    print("$ echofm " + " ".join(argv), flush=True)
    if echofm(argv) != 0:
        from echofm.errors import EchoFMError

        raise EchoFMError(f"demo step failed (its error is printed above): echofm {' '.join(argv)}")


def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear what an earlier demo wrote there; never touch other folders."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ValueError(f"{out}: exists and was not written by `echofm demo`; choose another --out")
    for part in PARTS:
        shutil.rmtree(out / part, ignore_errors=True)
    for name in ("report.html", "demo_summary.json"):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by echofm demo; the folder is cleared when the demo runs again\n")


def run_demo(cfg: DemoConfig) -> int:
    """Run every step; write report.html and demo_summary.json; print the table."""
    logging.getLogger("echofm").setLevel(logging.ERROR)  # per-sample skip notes would drown the steps
    out = Path(cfg.out)
    _prepare_out(out)
    steps = _Steps(total=8)
    summary: dict = {"config": asdict(cfg)}
    ph, cache = out / "phantoms", out / "cache"

    t = steps.start("synthetic echo", f"{cfg.clips} training + {cfg.test_clips} held-out phantom DICOM cines")
    for split, n, seed in (("train", cfg.clips, cfg.seed), ("test", cfg.test_clips, cfg.seed + 1)):
        _cli(["synth", "--out", str(ph / split), "--format", "dicom", "--n", str(n), "--seed", str(seed),
              "--size", str(cfg.phantom_size), "--frames", str(cfg.frames), "--fps", str(cfg.fps),
              "--workers", str(cfg.workers)])
    steps.finish("synth", t)

    t = steps.start("prepare", "sector masking, crop, de-identification")
    for split in ("train", "test"):
        _cli(["prepare", str(ph / split), "--out", str(cache / split), "--size", str(cfg.size),
              "--keep-paths", "--workers", str(cfg.workers)])
    summary["data"] = _check_data(ph, cache, out / "figures")
    steps.finish("prepare", t)

    t = steps.start("pretrain", f"echofm-tiny at {cfg.size} px, {cfg.steps} steps")
    _cli(["pretrain", "--config", "echofm-tiny", "--data", str(cache / "train"), "--out", str(out / "pretrain"),
          "--steps", str(cfg.steps), "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr),
          "--frame-stride", "1", "--set", f"model.img_size={cfg.size}", "--workers", "1",
          "--checkpoint-every", "0", "--seed", str(cfg.seed)])
    summary["pretraining"] = _pretraining_summary(out / "pretrain")
    steps.finish("pretrain", t)

    from echofm.model import load_model

    pretrained = load_model(out / "pretrain" / "model").eval()
    index = _phantom_index(ph, cache)
    probes: dict = {}
    for task in ("ef", "view"):
        t = steps.start(f"{task} linear probe", "pretrained vs random init, scored on the held-out phantoms")
        probes[task] = _task_probe(task, index, pretrained, cfg, out / "probes" / task)
        steps.finish(f"{task} probe", t)

    t = steps.start("frozen-feature probes", "ED/ES from per-time-step features, EF and view ridge probes; "
                                              "pretrained vs random init (ED/ES from pixels for context)")
    probes.update(_frozen_probes(index, pretrained, cfg, out / "probes" / "frozen"))
    probes["view_ridge"]["reference"] = probes["view"]["reference"]
    steps.finish("frozen probes", t)
    summary["probes"] = probes

    t = steps.start("real apical 4-chamber cine", REAL_CINE)
    summary["real_a4c"] = _real_cine(out, cfg)
    steps.finish("real cine", t)

    t = steps.start("report")
    _cli(["report", str(out / "pretrain"), "--title", "echofm demo: pretraining"])
    summary["table"] = figure_table(summary)
    summary["better_counts"] = {k: sum(r["better"] == k for r in summary["table"])
                                for k in ("pretrained", "random init", "tie", "n/a")}
    summary["timing_s"] = {**steps.seconds, "total": round(time.time() - steps.t0, 1)}
    from echofm.files import write_text_atomic

    write_text_atomic(out / "demo_summary.json", json.dumps(summary, indent=2, default=_json_default))
    _write_report(out, summary)
    print("\n" + format_table(summary["table"]))
    counts = summary["better_counts"]
    print(f"\npretrained better on {counts['pretrained']} of {len(summary['table'])} figures, random init on "
          f"{counts['random init']}, ties {counts['tie']}")
    real = summary["real_a4c"]
    if real.get("available"):
        print(f"\nreal A4C cine ({REAL_CINE}): cycle {_num(real['cycle_frames'])} frames, heart rate "
              f"{_num(real['heart_rate_bpm'])} bpm (pixels); embedding cycle {_num(real['embedding_cycle_frames'])} frames")
    else:
        print(f"\nreal A4C cine: {real['reason']}")
    print(f"\ntotal {summary['timing_s']['total']:.0f} s; report: {out / 'report.html'}")
    return 0


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# --- data --------------------------------------------------------------------------------

def _read_truth(folder: Path) -> dict[str, dict]:
    lines = (folder / "phantom_truth.jsonl").read_text().splitlines()
    return {rec["name"]: rec for rec in (json.loads(x) for x in lines if x.strip())}


def _identifier_strings(truth: dict[str, dict]) -> set[str]:
    """Every invented identifier (whole values and the parts of names), as written in DICOM."""
    found: set[str] = set()
    for rec in truth.values():
        for value in rec.get("identifiers", {}).values():
            found.add(value)
            found.update(p for p in value.replace("^", " ").split() if len(p) >= 4)
    return found


def _check_data(ph: Path, cache: Path, figures: Path) -> dict:
    """Counts, the de-identification check and the before/after figure of one phantom."""
    import numpy as np

    from echofm.analysis.demo_figures import frames_figure
    from echofm.datasets.base import read_csv_rows
    from echofm.io import read_clip

    info: dict = {}
    leaks = 0
    for split in ("train", "test"):
        truth = _read_truth(ph / split)
        rows = read_csv_rows(cache / split / "manifest.csv", ("file", "source"))
        failures = cache / split / "failures.csv"
        failed = max(0, len(failures.read_text().splitlines()) - 1) if failures.exists() else 0
        views: dict = {}
        for rec in truth.values():
            views[rec["view"]] = views.get(rec["view"], 0) + 1
        info[split] = {"phantoms": len(truth), "prepared": len(rows), "failed": failed, "views": views}
        # Every text file of the cache is searched for every identifier of its DICOMs.
        idents = _identifier_strings(truth)
        for f in (cache / split).rglob("*"):
            if f.is_file() and f.suffix in (".csv", ".json", ".txt", ".yaml"):
                text = f.read_text(errors="replace")
                leaks += sum(text.count(s) for s in idents)
    train_seeds = {r["seed"] for r in _read_truth(ph / "train").values()}
    test_seeds = {r["seed"] for r in _read_truth(ph / "test").values()}
    info["shared_phantom_seeds"] = len(train_seeds & test_seeds)
    info["identifiers_in_cache"] = leaks
    # Before / after of the first training phantom.
    rows = read_csv_rows(cache / "train" / "manifest.csv", ("file", "source"))
    first = sorted(rows, key=lambda r: r["source"])[0]
    raw = read_clip(ph / "train" / first["source"]).frames[0]
    prepared = np.load(cache / "train" / first["file"])[0]
    frames_figure([(f"{first['source']} as stored (invented identifiers burned in)", raw),
                   ("prepared clip (sector only, cropped, resized)", prepared)],
                  figures / "phantom_deid.png", "echofm prepare on a phantom DICOM")
    info["figure"] = "figures/phantom_deid.png"
    return info


def _phantom_index(ph: Path, cache: Path):
    """A DatasetIndex of the prepared phantoms: train and test splits, labels from the truth.

    targets: ``ef`` (%), ``view``; meta: ``lv_volume`` per frame, ``ed_frames``,
    ``es_frames``, ``fps``, ``seed``. Clips are joined to their truth through the
    manifest's ``source`` column (``prepare --keep-paths``).
    """
    from echofm.datasets.base import DatasetIndex, Sample, read_csv_rows

    samples = []
    for split in ("train", "test"):
        truth = _read_truth(ph / split)
        rows = read_csv_rows(cache / split / "manifest.csv", ("file", "source", "frames"))
        for row in sorted(rows, key=lambda r: r["source"]):
            name = Path(row["source"]).stem
            rec = truth.get(name)
            if rec is None or int(row["frames"]) != rec["num_frames"]:
                continue  # not a phantom of this set, or its frames changed in preparation
            samples.append(Sample(id=f"{split}/{name}", path=cache / split / row["file"], split=split,
                                  targets={"ef": rec["ef"], "view": rec["view"]},
                                  meta={"lv_volume": rec["lv_volume"], "ed_frames": rec["ed_frames"],
                                        "es_frames": rec["es_frames"], "fps": rec["fps"], "seed": rec["seed"]}))
    return DatasetIndex(name="phantom", root=cache, samples=samples)


# --- pretraining -------------------------------------------------------------------------

def _pretraining_summary(run: Path) -> dict:
    from echofm.analysis.report import read_jsonl

    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    info: dict = {"steps": len(rows)}
    if rows:
        k = max(1, len(rows) // 10)  # mean of the first and last tenth: single steps are noisy
        for key in ("loss", "recon", "triplet", "cycle"):
            first = [r[key] for r in rows[:k]]
            last = [r[key] for r in rows[-k:]]
            info[f"{key}_first"] = sum(first) / len(first)
            info[f"{key}_last"] = sum(last) / len(last)
    return info


def random_init_model(cfg, seed: int):
    """The EchoFM model pretraining starts from: ``EchoFM(cfg)`` right after ``manual_seed(seed)``."""
    import torch

    from echofm.model.echofm import EchoFM

    torch.manual_seed(seed)
    return EchoFM(cfg).eval()


# --- probes ------------------------------------------------------------------------------

def _task_probe(task: str, index, pretrained, cfg: DemoConfig, out: Path) -> dict:
    """EF or view linear probe for both arms, scored on the test split, plus a reference."""
    import numpy as np

    from echofm.tasks.engine import FinetuneConfig
    from echofm.tasks.finetuning import finetune_and_evaluate

    config = FinetuneConfig(task=task, mode="linear", epochs=cfg.probe_epochs, batch_size=8, blr=cfg.probe_lr,
                            seed=cfg.seed, validate=False, progress=True)
    arms = {"pretrained": lambda: pretrained.encoder,
            "random": lambda: random_init_model(pretrained.cfg, cfg.seed).encoder}
    result: dict = {}
    for arm, make in arms.items():
        print(f"-- {task} probe, {arm} encoder", flush=True)
        metrics = finetune_and_evaluate(index, make(), config, out / arm)
        video = metrics["video"]
        if task == "ef":
            result[arm] = {"mae": video["mae"], "r2": video["r2"], "rmse": video["rmse"]}
            result[f"{arm}_plot"] = f"probes/{task}/{arm}/eval/ef_scatter_bland_altman.png"
        else:
            result[arm] = {"accuracy": video["accuracy"], "balanced_accuracy": video["balanced_accuracy"]}
            result[f"{arm}_plot"] = f"probes/{task}/{arm}/eval/view_confusion_matrix.png"
    train, test = index.split("train"), index.split("test")
    if task == "ef":
        mean = float(np.mean([s.targets["ef"] for s in train]))
        result["reference"] = {"name": "training-mean EF", "mae": float(np.mean([abs(s.targets["ef"] - mean) for s in test]))}
    else:
        counts: dict = {}
        for s in train:
            counts[s.targets["view"]] = counts.get(s.targets["view"], 0) + 1
        majority = max(sorted(counts), key=counts.get)
        result["reference"] = {"name": f"majority view ({majority})",
                               "accuracy": float(np.mean([s.targets["view"] == majority for s in test]))}
    result["train"], result["test"] = len(train), len(test)
    return result


def _phase_videos(samples) -> list:
    import numpy as np

    from echofm.analysis.probe import PhaseVideo

    return [PhaseVideo(id=s.id, frames=np.load(s.path), volume=np.asarray(s.meta["lv_volume"]),
                       ed_frames=list(s.meta["ed_frames"]), es_frames=list(s.meta["es_frames"]),
                       fps=s.meta["fps"]) for s in samples]


FEATURE_NAMES = {"frames": "step embeddings", "tokens": "encoder tokens per step"}


def _frozen_probes(index, pretrained, cfg: DemoConfig, out: Path) -> dict:
    """Closed-form probes on frozen features, each video embedded once per arm: ED/ES from
    per-time-step features (pixels alone for context) and EF/view ridge probes on the
    standardised pooled tokens."""
    import numpy as np
    from tqdm.auto import tqdm

    from echofm.analysis.demo_figures import phase_probe_figure
    from echofm.analysis.probe import (PhaseProbeConfig, embed_videos, phase_probe, pixel_phase_baseline,
                                       video_features, video_probe)
    from echofm.files import write_text_atomic

    train_s, test_s = index.split("train"), index.split("test")
    train, test = _phase_videos(train_s), _phase_videos(test_s)
    config = PhaseProbeConfig()
    tol = pretrained.cfg.t_patch_size * config.period
    arms = {"pretrained": pretrained, "random": random_init_model(pretrained.cfg, cfg.seed)}
    phase: dict = {}
    ridge: dict = {"ef": {}, "view": {}}
    for arm, model in arms.items():
        with tqdm(total=len(train) + len(test), desc=f"embedding, {arm} encoder", unit="video") as bar:
            train_emb = embed_videos(model, train, config, config.train_window_stride, bar.update)
            test_emb = embed_videos(model, test, config, config.window_stride, bar.update)
        for kind, res in phase_probe(train_emb, train, test_emb, test, model.cfg.t_patch_size, tol, config).items():
            phase[f"{arm}_{kind}"] = res
        x_train, x_test = video_features(train_emb), video_features(test_emb)
        for task, kind in (("ef", "regression"), ("view", "classification")):
            res = video_probe(x_train, [s.targets[task] for s in train_s], x_test, [s.targets[task] for s in test_s], kind)
            ridge[task][arm] = {**res.metrics, "alpha": res.alpha}
            write_text_atomic(out / f"{task}_ridge_{arm}.json", json.dumps(
                {"metrics": res.metrics, "alpha": res.alpha,
                 "predictions": [{"id": s.id, "true": s.targets[task], "pred": p}
                                 for s, p in zip(test_s, res.predictions)]}, indent=1, default=_json_default))
    phase["pixels"] = pixel_phase_baseline(test, tol)
    for name, res in phase.items():
        write_text_atomic(out / f"ed_es_{name}.json", json.dumps(
            {"metrics": res.metrics, "alpha": res.alpha, "cv_mse": {str(k): v for k, v in res.cv_mse.items()},
             "records": res.records}, indent=1, default=_json_default))
    examples = []
    for k, video in enumerate(test[:3]):
        methods = {}
        for arm, color in (("pretrained", "crimson"), ("random", "royalblue")):
            for kind, style in zip(config.features, ("-", "--")):
                label = f"{'random init' if arm == 'random' else arm}, {FEATURE_NAMES[kind]}"
                methods[label] = {**phase[f"{arm}_{kind}"].records[k], "color": color, "style": style}
        methods["pixels (no model)"] = {**phase["pixels"].records[k], "color": "0.4", "style": ":"}
        examples.append({"id": video.id, "volume": video.volume, "true_ed": video.ed_frames,
                         "true_es": video.es_frames, "methods": methods})
    phase_probe_figure(examples, out / "ed_es_examples.png", tol)
    ed_es: dict = {"features": list(config.features), "tolerance_frames": tol, "pixels": phase["pixels"].metrics,
                   "plot": "probes/frozen/ed_es_examples.png"}
    for kind in config.features:
        ed_es[kind] = {arm: phase[f"{arm}_{kind}"].metrics for arm in arms}
        ed_es[kind]["ridge_alpha"] = {arm: phase[f"{arm}_{kind}"].alpha for arm in arms}
    ef_mean = float(np.mean([s.targets["ef"] for s in train_s]))
    ridge["ef"]["reference"] = {"name": "training-mean EF",
                                "mae": float(np.mean([abs(s.targets["ef"] - ef_mean) for s in test_s]))}
    return {"ed_es": ed_es, "ef_ridge": ridge["ef"], "view_ridge": ridge["view"]}


# --- the real cine -----------------------------------------------------------------------

def _real_cine_path() -> Optional[Path]:
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file(REAL_CINE)
    except Exception:  # pydicom-data missing or its index unreadable
        return None
    return Path(found) if found else None


def _real_cine(out: Path, cfg: DemoConfig) -> dict:
    """Phase of the real A4C cine (pixels and the pretrained model) and its masking figure."""
    from echofm.analysis.demo_figures import frames_figure
    from echofm.inference import load_study
    from echofm.io import read_clip
    from echofm.preprocess.transforms import MaskSector

    src = _real_cine_path()
    if src is None:
        return {"available": False, "reason": "pydicom-data is not installed (pip install pydicom-data)"}
    raw = read_clip(src)
    # The model saw phantoms at cfg.fps: read the real cine at the stride closest to that rate.
    stride = max(1, round((raw.fps or cfg.fps) / cfg.fps))
    _cli(["phase", str(src), "--out", str(out / "real_a4c"), "--model", str(out / "pretrain" / "model"),
          "--size", str(cfg.size), "--stride", str(stride)])
    result = json.loads((out / "real_a4c" / "phase.json").read_text())
    masked = MaskSector()(raw)
    model_input = load_study(src, cfg.size)
    frames_figure([("as stored (burned-in text and icons)", raw.frames[0]),
                   ("sector masked", masked.frames[0]),
                   (f"model input ({cfg.size} px)", model_input.frames[0])],
                  out / "real_a4c" / "first_frame_masked.png", f"{REAL_CINE}: first frame")
    px, emb = result["pixels"], result.get("embeddings", {})
    return {"available": True, "source": REAL_CINE, "frames": result["frames"], "fps": result["fps"],
            "model_stride": stride, "cycle_frames": px["cycle_frames"], "heart_rate_bpm": px["heart_rate_bpm"],
            "ed_frames": px["ed_frames"], "es_frames": px["es_frames"],
            "embedding_cycle_frames": emb.get("cycle_frames"), "embedding_heart_rate_bpm": emb.get("heart_rate_bpm"),
            "phase_figure": "real_a4c/phase.png", "masked_figure": "real_a4c/first_frame_masked.png"}


# --- the table and the report ------------------------------------------------------------

def _row(figure: str, pretrained, random, higher_is_better: bool, reference=None, reference_name: str = "") -> dict:
    if pretrained is None or random is None or not (math.isfinite(pretrained) and math.isfinite(random)):
        better = "n/a"
    elif abs(pretrained - random) <= 1e-9 * max(1.0, abs(pretrained)):
        better = "tie"
    else:
        better = "pretrained" if (pretrained > random) == higher_is_better else "random init"
    return {"figure": figure, "pretrained": pretrained, "random": random, "reference": reference,
            "reference_name": reference_name, "higher_is_better": higher_is_better, "better": better}


def figure_table(summary: dict) -> list[dict]:
    """One row per compared figure: pretrained, random init, a reference, and which arm did better."""
    p = summary["probes"]
    ef, view, ph = p["ef"], p["view"], p["ed_es"]
    efr, viewr = p["ef_ridge"], p["view_ridge"]
    tol = ph["tolerance_frames"]
    rows = [
        _row("EF MAE (EF points), finetune probe", ef["pretrained"]["mae"], ef["random"]["mae"], False,
             ef["reference"]["mae"], ef["reference"]["name"]),
        _row("EF R2, finetune probe", ef["pretrained"]["r2"], ef["random"]["r2"], True),
        _row("view accuracy, finetune probe", view["pretrained"]["accuracy"], view["random"]["accuracy"], True,
             view["reference"]["accuracy"], view["reference"]["name"]),
        _row("view balanced accuracy, finetune probe", view["pretrained"]["balanced_accuracy"],
             view["random"]["balanced_accuracy"], True),
        _row("EF MAE (EF points), ridge probe", efr["pretrained"]["mae"], efr["random"]["mae"], False,
             efr["reference"]["mae"], efr["reference"]["name"]),
        _row("view accuracy, ridge probe", viewr["pretrained"]["accuracy"], viewr["random"]["accuracy"], True,
             viewr["reference"]["accuracy"], viewr["reference"]["name"]),
    ]
    for kind in ph["features"]:
        m, name = ph[kind], FEATURE_NAMES[kind]
        rows += [
            _row(f"ED/ES within {tol} frames, {name}", m["pretrained"]["found"], m["random"]["found"], True,
                 ph["pixels"]["found"], "pixels"),
            _row(f"ED/ES error (frames), {name}", m["pretrained"]["mae_frames"], m["random"]["mae_frames"], False,
                 ph["pixels"]["mae_frames"], "pixels"),
            _row(f"ED/ES precision, {name}", m["pretrained"]["precision"], m["random"]["precision"], True,
                 ph["pixels"]["precision"], "pixels"),
        ]
    return rows


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


TABLE_HEADER = ("figure", "pretrained", "random init", "reference", "better")


def format_table(rows: list[dict]) -> str:
    """The printed table: one line per row, numbers with three decimals; the reference's
    name follows its value."""
    w = max(len(TABLE_HEADER[0]), *(len(r["figure"]) for r in rows))
    lines = [f"{TABLE_HEADER[0]:<{w}} {TABLE_HEADER[1]:>11} {TABLE_HEADER[2]:>11}  {TABLE_HEADER[4]:<11}  "
             f"{TABLE_HEADER[3]}"]
    for r in rows:
        ref = _num(r["reference"]) + (f" ({r['reference_name']})" if r["reference_name"] else "")
        lines.append(f"{r['figure']:<{w}} {_num(r['pretrained']):>11} {_num(r['random']):>11}  {r['better']:<11}  {ref}")
    return "\n".join(lines)


def _write_report(out: Path, summary: dict) -> Path:
    from echofm.analysis.report import HtmlReport

    rep = HtmlReport("echofm demo")
    cfg = summary["config"]
    rep.paragraph(f"Phantom DICOM cines -> echofm prepare -> echofm-tiny pretrained for {cfg['steps']} steps at "
                  f"{cfg['size']} px -> linear probes on {summary['probes']['ef']['test']} held-out phantoms, "
                  f"each beside the same encoder at its random initialisation (the weights pretraining started "
                  f"from) -> the real apical 4-chamber cine of pydicom-data. Every figure below was measured in "
                  f"this run ({summary['timing_s']['total']:.0f} s).")
    rep.heading("Figures: pretrained vs random init")
    rep.raw_table([{"figure": r["figure"], "pretrained": r["pretrained"], "random init": r["random"],
                    "reference": ("" if r["reference"] is None else f"{r['reference']:.4g} ({r['reference_name']})"),
                    "better": r["better"]} for r in summary["table"]])
    counts = summary["better_counts"]
    rep.paragraph(f"Pretrained better on {counts['pretrained']} of {len(summary['table'])} figures, random init "
                  f"on {counts['random init']}, ties {counts['tie']}.")
    rep.paragraph("All probes are linear, trained on the training phantoms and scored on the held-out ones. "
                  "'finetune probe': echofm's linear mode (tasks.engine: mean-pooled tokens, LayerNorm of each "
                  "sample, one linear layer trained with AdamW). 'ridge probe': the same pooled tokens "
                  "standardised per feature over the training videos, ridge regression in closed form (one-hot "
                  "targets for views), its strength cross-validated; unlike the finetune probe it does not "
                  "depend on how small the features' variation between videos is next to their common part. "
                  "ED/ES: a ridge probe from each time step's features (the step embeddings model.embed().frames, "
                  "or the encoder tokens averaged per step) to the LV volume; ED/ES are the maxima/minima of "
                  "its curve. The pixel reference finds them from a cavity-size proxy without any model.",
                  note=True)
    data = summary["data"]
    rep.heading("Data: phantoms and their preparation")
    rep.values({"training phantoms": data["train"]["phantoms"], "prepared (training)": data["train"]["prepared"],
                "held-out phantoms": data["test"]["phantoms"], "prepared (held-out)": data["test"]["prepared"],
                "views (training)": data["train"]["views"], "views (held-out)": data["test"]["views"],
                "phantom seeds shared by the two sets": data["shared_phantom_seeds"],
                "identifier strings found in the caches": data["identifiers_in_cache"]})
    rep.figure(data["figure"], "a phantom DICOM as stored and as prepared")
    rep.heading("Pretraining")
    pre = summary["pretraining"]
    rep.values({k: v for k, v in pre.items()})
    if (out / "pretrain" / "report_curves.png").exists():
        rep.figure("pretrain/report_curves.png", "pretraining curves (metrics.jsonl)")
    rep.link("pretrain/report.html", "full pretraining report")
    rep.heading("Probe figures")
    for task, caption in (("ef", "EF: predicted vs true and Bland-Altman"), ("view", "view: confusion matrix")):
        for arm in ("pretrained", "random"):
            rel = summary["probes"][task][f"{arm}_plot"]
            if (out / rel).exists():
                rep.figure(rel, f"{caption} ({arm} encoder)")
    rep.figure(summary["probes"]["ed_es"]["plot"], "ED/ES probe curves on held-out phantoms")
    rep.paragraph("Per-video predictions and ED/ES records: probes/*/*/eval/predictions.jsonl and "
                  "probes/frozen/*.json.", note=True)
    rep.heading(f"Real apical 4-chamber cine ({REAL_CINE})")
    real = summary["real_a4c"]
    if real.get("available"):
        rep.values({k: real[k] for k in ("frames", "fps", "cycle_frames", "heart_rate_bpm", "ed_frames", "es_frames",
                                         "model_stride", "embedding_cycle_frames", "embedding_heart_rate_bpm")})
        rep.figure(real["masked_figure"], "first frame: as stored, sector masked, model input")
        rep.figure(real["phase_figure"], "cavity curve with ED/ES, pixel and embedding self-similarity")
    else:
        rep.paragraph(real["reason"])
    rep.heading("Timing (seconds)")
    rep.values(summary["timing_s"])
    rep.link("demo_summary.json", "every figure as JSON (demo_summary.json)")
    return rep.write(out / "report.html")
