"""The end-to-end demo as an experiment: ``run_demo(DemoConfig(...)) -> DemoResult``.

What ``echofm demo`` (and ``make demo``) runs, each step a library call:

1. synthetic echo (``phantom.export.write_dataset``): phantom DICOM cines with exact ground
   truth, invented identifiers and burned-in text; a training set and a held-out set
   (other phantom seeds);
2. prepare (``preprocess.prepare.prepare``): sector masking, cropping, de-identification
   into clip caches, then the de-identification audit (``experiments.deid_audit``) and a
   frame before and after;
3. the pretrained encoder: by default the reference model shipped in the package
   (``echofm-tiny-phantom``, pretrained once by ``echofm/data/reference/recipe.sh``), or any
   ``init`` source; with ``pretrain`` echofm-tiny is pretrained here on the training cache
   (``train.pretrain.pretrain``), no labels. The phantoms follow the model's input contract
   (its size and frame rate);
4. the comparison, two arms, the pretrained encoder and the same encoder at its random
   initialisation (the weights pretraining started from): each fully fine-tuned with the same
   recipe and budget on ``compare_k`` labelled phantoms for EF, view and LV segmentation (ED/ES
   from the segmentation), scored per clip on held-out phantoms of other seeds, the gain with
   its paired-bootstrap 95% interval (``experiments.label_efficiency`` at one k and one seed);
   then closed-form probes on frozen features (``analysis.probe``: ED/ES from per-time-step
   features, EF and view ridge probes), beside references computed once (training-mean EF,
   majority view, ED/ES from pixels alone);
5. the real apical 4-chamber cine of pydicom-data (``analysis.study_phase``);
6. reports: the pretraining run's page (its log and config, also for a loaded model), ``DIR/report.html`` and ``DIR/demo_summary.json``.

Every figure is measured in this run and reported whichever way it comes out; a gain whose
interval contains 0 reads "no clear difference". The data are synthetic phantoms, not clinical
data, and the report says so first.

It runs 450 lines because the demo is one sequence whose steps share its config and folder:
data, the pretrained encoder (loaded under its input contract, or pretrained here), the
comparison and the real cine; the probes and the report live in ``demo_probes`` and
``demo_report``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from echofm.experiments.demo_probes import frozen_probes, reference_figures
from echofm.experiments.demo_report import REAL_CINE, figure_table, format_table, json_default, write_report

MARKER = ".echofm-demo"
PARTS = ("phantoms", "cache", "pretrain", "comparison", "probes", "real_a4c", "figures")
SPLITS = ("train", "test")


@dataclass
class DemoConfig:
    """Sizes of a demo run (``echofm demo --help`` says what each means)."""

    out: str = "demo_out"
    seed: int = 0
    init: str = "echofm-tiny-phantom"
    pretrain: bool = False
    clips: int = 96
    test_clips: int = 40
    frames: int = 40
    fps: Optional[float] = None
    phantom_size: int = 128
    size: Optional[int] = None
    steps: int = 500
    batch_size: int = 8
    lr: float = 5e-4
    compare_k: int = 32
    compare_steps: int = 120
    workers: int = 2

    def validate(self) -> "DemoConfig":
        """Raise ``ValueError`` naming the setting when the run could not work."""
        if self.size is not None and self.size % 16:
            raise ValueError(f"size {self.size}: must be a multiple of 16 (the patch size)")
        if self.clips < 8 or self.test_clips < 4:
            raise ValueError("clips must be at least 8 and test_clips at least 4")
        if self.compare_k < 4 or self.compare_steps < 1:
            raise ValueError("compare_k must be at least 4 and compare_steps at least 1")
        if self.pretrain and self.clips < self.batch_size:
            raise ValueError(f"clips {self.clips} is smaller than one pretraining batch ({self.batch_size})")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps {self.fps}: must be positive")
        return self


# With pretrain, what size and fps default to (without it they come from the model's input contract).
PRETRAIN_SIZE, PRETRAIN_FPS = 80, 15.0


# The --quick preset: a smoke test of every step in about a minute (too short to learn anything).
QUICK = dict(clips=16, test_clips=8, frames=24, phantom_size=96, steps=6, batch_size=4, compare_k=4,
             compare_steps=2)


@dataclass
class DemoResult:
    """What a demo run measured: ``summary`` is ``demo_summary.json`` (config, data, pretraining,
    comparison, probes, real_a4c, table, timing_s); ``report`` the HTML page."""

    out: Path
    summary: dict
    report: Path

    @property
    def table(self) -> list[dict]:
        return self.summary["table"]

    def text(self) -> str:
        """The printed ending of a run: the comparison, the frozen-feature figures, the real cine
        and where the report is."""
        from echofm.experiments.label_efficiency import format_comparison

        real = self.summary["real_a4c"]
        lines = [SYNTHETIC_NOTE, "",
                 f"pretrained vs random init, full fine-tuning on k={self.summary['config']['compare_k']} "
                 f"labelled phantoms, gain 95% CI by paired bootstrap over held-out clips:",
                 format_comparison(self.summary["comparison"]), "",
                 "frozen-feature probes (no interval: descriptive only):", format_table(self.table), ""]
        if real.get("available"):
            lines.append(f"real A4C cine ({REAL_CINE}): cycle {_num(real['cycle_frames'])} frames, heart rate "
                         f"{_num(real['heart_rate_bpm'])} bpm (pixels); embedding cycle "
                         f"{_num(real['embedding_cycle_frames'])} frames")
        else:
            lines.append(f"real A4C cine: {real['reason']}")
        lines += ["", f"total {self.summary['timing_s']['total']:.0f} s; report: {self.report}"]
        return "\n".join(lines)


def run_demo(config: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    """Run every step into ``config.out`` (cleared first if an earlier demo wrote it); ``say``
    receives the progress lines. Returns what was measured; writes report.html and
    demo_summary.json."""
    from echofm.files import write_text_atomic
    from echofm.model import load_model

    cfg = config.validate()
    out = Path(cfg.out)
    steps = _Steps(7, say)
    loaded = None
    if not cfg.pretrain:
        # Loaded before anything is written: a wrong --init or --size fails at once.
        loaded = load_model(cfg.init).eval()
        cfg = _follow_contract(cfg, loaded)
    else:
        cfg = replace(cfg, size=cfg.size or PRETRAIN_SIZE, fps=cfg.fps or PRETRAIN_FPS)
    prepare_out(out)
    summary: dict = {"config": asdict(cfg)}
    phantoms, cache = out / "phantoms", out / "cache"

    with steps.step("synth", "synthetic echo",
                    f"{cfg.clips} training + {cfg.test_clips} held-out phantom DICOM cines at {cfg.fps:g} fps"):
        _synth(cfg, phantoms)
    with steps.step("prepare", "prepare", f"sector masking, crop to {cfg.size} px, de-identification"):
        summary["data"] = _prepare(cfg, phantoms, cache, out / "figures", say)
    if cfg.pretrain:
        with steps.step("pretrain", "pretrain", f"echofm-tiny at {cfg.size} px, {cfg.steps} steps"):
            summary["pretraining"] = _pretrain(cfg, cache / "train", out / "pretrain")
        pretrained, start_seed = load_model(out / "pretrain" / "model").eval(), cfg.seed
    else:
        with steps.step("pretrain", "pretrained encoder", f"{cfg.init} (pretrained before the demo; "
                        "--pretrain pretrains here instead)"):
            summary["pretraining"], start_seed = _loaded_pretraining(cfg.init, out / "pretrain", cfg.seed)
        pretrained = loaded
    summary["pretraining"]["random_init_seed"] = start_seed
    from echofm.experiments.label_efficiency import random_arm

    arms = {"pretrained": pretrained, "random": random_arm(pretrained, start_seed)}
    index = _phantom_index(phantoms, cache)
    references = reference_figures(index)
    probes: dict = {}
    with steps.step("comparison", "comparison", f"pretrained vs random init, full fine-tuning on {cfg.compare_k} "
                    f"labelled phantoms, {cfg.compare_steps} steps each, EF / view / LV segmentation / ED/ES"):
        summary["comparison"], summary["comparison_detail"] = _comparison(cfg, arms, out, say)
    with steps.step("frozen probes", "frozen-feature probes", "ED/ES from per-time-step features, EF and view "
                    "ridge probes; pretrained vs random init (ED/ES from pixels for context)"):
        probes.update(frozen_probes(index, arms, references, out / "probes" / "frozen"))
    summary["probes"] = probes
    with steps.step("real cine", "real apical 4-chamber cine", REAL_CINE):
        summary["real_a4c"] = _real_cine(out, pretrained, cfg)

    with steps.step("report", "report"):
        from echofm.analysis.report import build_run_report

        build_run_report(out / "pretrain", "echofm demo: pretraining" if cfg.pretrain
                         else f"echofm demo: how {cfg.init} was pretrained")
        summary["table"] = figure_table(summary)
        summary["timing_s"] = {**steps.seconds, "total": round(time.time() - steps.t0, 1)}
        summary["cpu_s"] = {**steps.cpu_seconds, "total": round(_cpu_seconds() - steps.cpu0, 1)}
        write_text_atomic(out / "demo_summary.json", json.dumps(summary, indent=2, default=json_default))
        report = write_report(out, summary)
    return DemoResult(out=out, summary=summary, report=report)


SYNTHETIC_NOTE = "synthetic phantoms, not clinical data"


def _comparison(cfg: DemoConfig, arms: dict, out: Path, say) -> tuple[list[dict], dict]:
    """The label-efficiency comparison at one k and one seed on phantoms at the model's input
    contract (``cfg.size`` px, ``cfg.fps``, one window of frames per clip): the rows and
    where the details are."""
    from echofm.experiments.label_efficiency import LabelEfficiencyConfig, comparison_rows, run_label_efficiency

    config = LabelEfficiencyConfig(
        out=str(out / "comparison"), ks=[cfg.compare_k], seeds=[cfg.seed], modes=["full"], size=cfg.size,
        frames=arms["pretrained"].cfg.num_frames, fps=cfg.fps, heldout_clips=cfg.test_clips,
        steps=cfg.compare_steps, heldout_sets=["heldout"],
        step_probe=False)  # the frozen probes (step 5) read ED/ES from the step embeddings, with the pixel rule
    result = run_label_efficiency(config, arms=arms, say=say)
    return comparison_rows(result.cells), {
        "json": "comparison/label_efficiency.json", "page": "comparison/label_efficiency.html",
        "side_by_side": f"comparison/arms_full_k{cfg.compare_k}.png", "frames": config.frames,
        "timing_s": result.summary["timing_s"]}


# --- the run's frame -------------------------------------------------------------------------

def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system), in seconds."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Steps:
    """Says each step as it starts and records how long each took: wall-clock seconds by name
    (``seconds``) and CPU seconds (``cpu_seconds``; on a shared machine the wall clock
    counts other jobs' time too, the CPU time much less so)."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.done, self.t0, self.cpu0, self.say = total, 0, time.time(), _cpu_seconds(), say
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str, title: str, detail: str = ""):
        self.done += 1
        self.say(f"\n== [{self.done}/{self.total}] {title}{'  ' + detail if detail else ''}  "
                 f"(t={time.time() - self.t0:.0f}s)")
        started, cpu = time.time(), _cpu_seconds()
        yield
        self.seconds[name] = round(time.time() - started, 1)
        self.cpu_seconds[name] = round(_cpu_seconds() - cpu, 1)


def prepare_out(out: Path) -> None:
    """Create ``out``, or clear what an earlier demo wrote there; never touch other folders."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ValueError(f"{out}: exists and was not written by `echofm demo`; choose another --out")
    for part in PARTS:
        shutil.rmtree(out / part, ignore_errors=True)
    for name in ("report.html", "demo_summary.json"):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by echofm demo; the folder is cleared when the demo runs again\n")


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


# --- data ------------------------------------------------------------------------------------

def _synth(cfg: DemoConfig, phantoms: Path) -> None:
    """The training phantoms (seed) and the held-out ones (seed + 1) as DICOM cines."""
    from tqdm.auto import tqdm

    from echofm.phantom.config import PhantomConfig, default_views
    from echofm.phantom.export import write_dataset

    config = PhantomConfig(size=cfg.phantom_size, num_frames=cfg.frames, fps=cfg.fps,
                           views=default_views("dicom")).validate()
    for split, n, seed in (("train", cfg.clips, cfg.seed), ("test", cfg.test_clips, cfg.seed + 1)):
        with tqdm(total=n, desc=f"synth {split}", unit="item") as bar:
            write_dataset(phantoms / split, "dicom", n, seed=seed, config=config, workers=cfg.workers,
                          progress=bar.update)


def _prepare(cfg: DemoConfig, phantoms: Path, cache: Path, figures: Path, say) -> dict:
    """Both caches, then counts, the de-identification audit and the before/after figure."""
    import numpy as np

    from echofm.analysis.demo_figures import frames_figure
    from echofm.batch import BatchOptions
    from echofm.datasets.base import read_csv_rows
    from echofm.datasets.phantom import read_phantom_truth
    from echofm.experiments.deid_audit import count_identifiers, identifier_strings
    from echofm.io import read_clip
    from echofm.preprocess.prepare import prepare
    from echofm.preprocess.transforms import PreprocessConfig

    info: dict = {}
    truths = {split: read_phantom_truth(phantoms / split) for split in SPLITS}
    leaks = 0
    for split in SPLITS:
        # Paths kept: the manifest's source column joins each clip to its phantom's truth.
        result = prepare([phantoms / split], cache / split, PreprocessConfig(size=cfg.size), workers=cfg.workers,
                         options=BatchOptions(keep_paths=True))
        say(result.line())
        views: dict = {}
        for rec in truths[split].values():
            views[rec["view"]] = views.get(rec["view"], 0) + 1
        rows = read_csv_rows(cache / split / "manifest.csv", ("file", "source"))
        info[split] = {"phantoms": len(truths[split]), "prepared": len(rows), "failed": result.failed, "views": views}
        leaks += count_identifiers(cache / split, identifier_strings(truths[split]))
    seeds = [{rec["seed"] for rec in truths[split].values()} for split in SPLITS]
    info["shared_phantom_seeds"] = len(seeds[0] & seeds[1])
    info["identifiers_in_cache"] = leaks
    # Before / after of the first training phantom.
    rows = read_csv_rows(cache / "train" / "manifest.csv", ("file", "source"))
    first = sorted(rows, key=lambda r: r["source"])[0]
    raw = read_clip(phantoms / "train" / first["source"]).frames[0]
    prepared = np.load(cache / "train" / first["file"])[0]
    frames_figure([(f"{first['source']} as stored (invented identifiers burned in)", raw),
                   ("prepared clip (sector only, cropped, resized)", prepared)],
                  figures / "phantom_deid.png", "echofm prepare on a phantom DICOM")
    info["figure"] = "figures/phantom_deid.png"
    return info


def _phantom_index(phantoms: Path, cache: Path):
    from echofm.datasets.phantom import read_prepared_phantoms

    return read_prepared_phantoms({split: (phantoms / split, cache / split) for split in SPLITS})


# --- pretraining -----------------------------------------------------------------------------

def _pretrain(cfg: DemoConfig, data: Path, run: Path) -> dict:
    """echofm-tiny pretrained on ``data`` at every frame (the phantoms are already at cfg.fps)."""
    from echofm.train.config import load_pretrain_config
    from echofm.train.pretrain import pretrain

    config = load_pretrain_config("echofm-tiny", {
        "data": [str(data)], "out": str(run), "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "frame_step": 1, "model.img_size": cfg.size, "workers": 1, "checkpoint_every": 0, "seed": cfg.seed})
    pretrain(config)
    return pretraining_summary(run)


def _follow_contract(cfg: DemoConfig, model) -> DemoConfig:
    """The demo's phantoms made as the loaded model's input contract says: its image size and
    frame rate. An explicit size or fps that disagrees is an error naming both."""
    contract = model.contract
    size, fps = contract.image_size, contract.fps
    if cfg.size is not None and cfg.size != size:
        raise ValueError(f"--size {cfg.size}: {cfg.init} takes {size} px clips (its input contract); "
                         f"leave --size out, or pass --pretrain to pretrain at {cfg.size} px here")
    if fps is None:
        raise ValueError(f"{cfg.init}: its input contract states no frame rate, so the demo cannot make its "
                         "phantoms as it was trained; pass --pretrain, or a model pretrained by echofm")
    if cfg.fps is not None and abs(cfg.fps - fps) > 1e-6:
        raise ValueError(f"--fps {cfg.fps:g}: {cfg.init} was pretrained on clips at {fps:g} fps (its input "
                         "contract); leave --fps out, or pass --pretrain")
    if cfg.frames < contract.num_frames:
        raise ValueError(f"--frames {cfg.frames}: {cfg.init} reads {contract.num_frames}-frame clips")
    return replace(cfg, size=size, fps=fps)


def _pretraining_run(init: str) -> Optional[Path]:
    """The folder holding the pretraining log and config of a model source, when known: the
    package's folder for a shipped reference model, RUN for a run's RUN/model."""
    from echofm.model.reference import REFERENCE_MODELS, RUN_FILES, reference_dir

    if init in REFERENCE_MODELS:
        return reference_dir()
    path = Path(init)
    for run in (path, path.parent):
        if all((run / name).is_file() for name in RUN_FILES):
            return run
    return None


def _loaded_pretraining(init: str, copy_to: Path, seed: int) -> tuple[dict, int]:
    """(summary, seed) of a loaded model's pretraining: its log's losses and the seed its
    pretraining started from (the random arm is the model at that seed), its config and log
    copied to ``copy_to`` for the report. Without a known run: the demo's own seed, said."""
    import yaml

    run = _pretraining_run(init)
    copy_to.mkdir(parents=True, exist_ok=True)
    if run is None:
        return {"source": init, "log": None, "random_init_note": "the pretraining's seed is unknown: the random "
                "arm is the architecture initialised under the demo's seed"}, seed
    from echofm.model.reference import RUN_FILES

    for name in RUN_FILES:
        shutil.copyfile(run / name, copy_to / name)
    config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    info = {"source": init, "log": str(run / "metrics.jsonl"), **pretraining_summary(run)}
    return info, int(config.get("seed", 0))


def pretraining_summary(run: Path) -> dict:
    """Steps logged, and each loss as the mean of the first and of the last tenth of the steps
    (single steps are noisy)."""
    from echofm.analysis.report import read_jsonl

    rows = [r for r in read_jsonl(Path(run) / "metrics.jsonl") if "loss" in r]
    info: dict = {"steps": len(rows)}
    if rows:
        k = max(1, len(rows) // 10)
        for key in ("loss", "recon", "triplet", "cycle"):
            first, last = [r[key] for r in rows[:k]], [r[key] for r in rows[-k:]]
            info[f"{key}_first"] = sum(first) / len(first)
            info[f"{key}_last"] = sum(last) / len(last)
    return info


# --- the real cine ---------------------------------------------------------------------------

def _real_cine_path() -> Optional[Path]:
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file(REAL_CINE)
    except Exception:  # pydicom-data missing or its index unreadable
        return None
    return Path(found) if found else None


def _real_cine(out: Path, model, cfg: DemoConfig) -> dict:
    """Phase of the real A4C cine (pixels and the pretrained model) and its masking figure."""
    from echofm.analysis.demo_figures import frames_figure
    from echofm.analysis.study_phase import study_phase
    from echofm.inference import load_study
    from echofm.io import read_clip
    from echofm.preprocess.transforms import MaskSector

    src = _real_cine_path()
    if src is None:
        return {"available": False, "reason": "pydicom-data is not installed (pip install pydicom-data)"}
    raw = read_clip(src)
    # No frame step by hand: the model's input contract (phantoms at cfg.fps) sets it.
    result = study_phase(src, out / "real_a4c", model, size=cfg.size)
    masked = MaskSector()(raw)
    model_input = load_study(src, cfg.size)
    frames_figure([("as stored (burned-in text and icons)", raw.frames[0]),
                   ("sector masked", masked.frames[0]),
                   (f"model input ({cfg.size} px)", model_input.frames[0])],
                  out / "real_a4c" / "first_frame_masked.png", f"{REAL_CINE}: first frame")
    px, emb = result["pixels"], result.get("embeddings", {})
    return {"available": True, "source": REAL_CINE, "frames": result["frames"], "fps": result["fps"],
            "model_frame_step": emb.get("frame_step"), "cycle_frames": px["cycle_frames"], "heart_rate_bpm": px["heart_rate_bpm"],
            "ed_frames": px["ed_frames"], "es_frames": px["es_frames"],
            "embedding_cycle_frames": emb.get("cycle_frames"), "embedding_heart_rate_bpm": emb.get("heart_rate_bpm"),
            "phase_figure": "real_a4c/phase.png", "masked_figure": "real_a4c/first_frame_masked.png"}
