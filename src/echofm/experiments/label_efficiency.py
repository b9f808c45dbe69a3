"""The label-efficiency study as library code: does a pretrained encoder need fewer labels?

It runs over 600 lines because the study is one unit: its config, the data of both
held-out sets, the two arms per task and mode, the step embeddings' ED/ES beside the pixel
rule, and the summary with intervals belong together; the statistics, the probes and the
figures already live in `analysis/`.

``run_label_efficiency(LabelEfficiencyConfig(...)) -> LabelEfficiencyResult``. Two arms, the
pretrained encoder and the same architecture at random initialisation (with ``init=None``
the very weights pretraining started from), are adapted with the same recipe and the same
budget of optimiser steps, for each

- task: ``ef`` (EF regression, mean absolute error), ``view`` (4 views, accuracy),
  ``segment`` (LV cavity, Dice on the labelled frames) and ``ed_es`` (ED/ES frames from the
  segmentation's LV-area curve, mean absolute frame error; it reuses the ``segment`` model);
- k: labelled training clips (the first k of a seeded pool, so smaller sets are nested);
- seed: draws the labelled pool and seeds the fine-tuning;
- mode: ``full`` fine-tuning (``tasks.finetuning``'s full mode, the bar) and ``probe``
  (its linear mode on the frozen encoder, a cheaper second line); with ``ed_es``, also
  ``steps``: ED/ES from a ridge probe of the frozen step embeddings (``phase_runs``), the
  pixel rule beside it (``pixel_rule_cells``);

and scored per clip on two held-out sets: ``heldout`` (phantoms from other seeds, the
default preset) and ``shifted`` (the ``shifted`` phantom preset: other gain, depth, noise,
sector width, heart-rate and EF range). The gain is oriented so that positive means the
pretrained encoder did better; each cell gets a paired bootstrap interval over held-out
clips (scores averaged over seeds) and a t interval over seeds
(``analysis.statistics``); a cell where either interval contains 0 reads "no clear difference".

Writes ``OUT/runs.jsonl`` as it goes (``summarise_cells`` reads a stopped study's lines),
then ``OUT/label_efficiency.json``, ``OUT/label_efficiency.html`` and the curves
(``analysis.label_efficiency_figures``); the fine-tuning runs go to ``OUT/runs/`` and are
deleted after scoring unless ``keep_runs``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

TASKS = ("ef", "view", "segment", "ed_es")
MODES = ("full", "probe")
HELDOUT_SETS = ("heldout", "shifted")
ARMS = ("pretrained", "random")
# task -> (metric name, higher is better)
METRICS = {"ef": ("mae", False), "view": ("accuracy", True), "segment": ("lv_dice", True),
           "ed_es": ("frame_error", False)}
FINETUNE_MODE = {"full": "full", "probe": "linear"}
# Phantom seeds of the data sets: far apart from each other and from pretraining's.
POOL_SEED, HELDOUT_SEED, SHIFTED_SEED = 10_000, 50_000, 60_000
ED_ES_TOLERANCE = 2  # frames: an ED/ES event counts as found within this distance
PHASE_MODE = "steps"  # ED/ES from a ridge probe of the frozen step embeddings (not a fine-tuning mode)
RUNS_LOG = "runs.jsonl"  # one line per scored run, written as the study goes


@dataclass
class LabelEfficiencyConfig:
    """What the study runs (the defaults are the benchmark's size; ``QUICK`` a toy size).

    tasks / ks / seeds / modes: the grid (see the module docstring). size, frames, fps:
    phantom clips (pixels, frames, frame rate); with ``init=None`` the encoder is
    echofm-tiny at ``size`` px pretrained here on phantoms at ``fps``. heldout_clips: clips
    in each held-out set. steps: optimiser steps of every fine-tuning run, whatever k (the
    same budget for both arms). batch_size: clips per step. blr: base learning rate (None:
    fine-tuning's default for the mode). head_only_fraction: the share of a full
    fine-tuning's steps that train only the head first (LP-FT; 0: none). init: a pretrained model source for
    ``load_model`` (None: pretrain here for ``pretrain_steps`` on ``pretrain_clips`` fresh
    phantoms at ``pretrain_lr``, seed ``pretrain_seed``, clip i of phantom preset
    ``pretrain_presets[i % n]``, with ``pretrain_options``: more pretraining config fields,
    dotted as ``echofm pretrain --set`` takes them, e.g. ``{"model.embed_center_alpha": 1}``;
    the labelled pools are always of the default preset). bootstrap: resamples of the
    paired bootstrap. heldout_sets: which of ``heldout`` / ``shifted`` to score on.
    seg_head: the segmentation head in both modes (``linear``: a linear map per token;
    ``unetr`` also reads the frames and was about 25x slower per step on a 2-core CPU).
    step_probe: with ``ed_es`` among the tasks, also ED/ES from the frozen step embeddings
    beside the pixel rule (mode ``steps``, ``phase_runs``). threads: torch threads (None:
    leave torch's setting). keep_runs: keep the fine-tuning
    run folders.
    """

    out: str = "label_efficiency_out"
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    ks: list[int] = field(default_factory=lambda: [16, 64, 256])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    size: int = 48
    frames: int = 16
    fps: float = 7.5
    heldout_clips: int = 48
    steps: int = 100
    batch_size: int = 8
    blr: Optional[float] = None
    head_only_fraction: float = 0.0
    init: Optional[str] = None
    # 6000 steps on 2048 clips: 2000 on 1024 left the pretrained encoder no better than random
    # init at k = 64 (docs/label_efficiency.md); the whole grid still fits in an hour on 2 cores.
    pretrain_steps: int = 6000
    pretrain_clips: int = 2048
    pretrain_lr: float = 5e-4
    pretrain_seed: int = 0
    pretrain_presets: list[str] = field(default_factory=lambda: ["default"])
    pretrain_options: dict = field(default_factory=dict)
    heldout_sets: list[str] = field(default_factory=lambda: list(HELDOUT_SETS))
    seg_head: str = "linear"
    step_probe: bool = True
    bootstrap: int = 2000
    threads: Optional[int] = None
    keep_runs: bool = False

    def validate(self) -> "LabelEfficiencyConfig":
        """Raise ``ValueError`` naming the setting when the run could not work."""
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks {bad or self.tasks}: each must be one of {', '.join(TASKS)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes {bad or self.modes}: each must be one of {', '.join(MODES)}")
        if not self.ks or min(self.ks) < 4:
            raise ValueError(f"ks {self.ks}: need at least one k, each at least 4 labelled clips")
        bad = [h for h in self.heldout_sets if h not in HELDOUT_SETS]
        if bad or not self.heldout_sets:
            raise ValueError(f"heldout_sets {bad or self.heldout_sets}: each must be one of {', '.join(HELDOUT_SETS)}")
        if not self.seeds:
            raise ValueError("seeds: need at least one seed")
        from echofm.phantom.config import PRESETS

        bad = [name for name in self.pretrain_presets if name not in PRESETS]
        if bad or not self.pretrain_presets:
            raise ValueError(f"pretrain_presets {bad or self.pretrain_presets}: each must be one of {', '.join(PRESETS)}")
        if self.size % 16:
            raise ValueError(f"size {self.size}: must be a multiple of 16 (the patch size)")
        if not 0.0 <= self.head_only_fraction < 1.0:
            raise ValueError(f"head_only_fraction {self.head_only_fraction}: must be in [0, 1)")
        if self.heldout_clips < 4 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("heldout_clips must be at least 4, steps and batch_size at least 1")
        return self


# A toy size that runs in seconds (a test runs it): too small to learn anything.
QUICK = dict(tasks=list(TASKS), ks=[4], seeds=[0, 1], modes=["full", "probe"], size=32, frames=8, heldout_clips=8,
             steps=2, batch_size=4, pretrain_steps=2, pretrain_clips=8, bootstrap=200)


@dataclass
class LabelEfficiencyResult:
    """``summary`` is ``label_efficiency.json``: config, pretraining, per-run ``runs``
    (per-clip scores), per-cell ``cells`` (means, intervals, verdicts) and ``timing_s``."""

    out: Path
    summary: dict
    report: Path
    figures: list[Path]

    @property
    def cells(self) -> list[dict]:
        return self.summary["cells"]


# --- data ------------------------------------------------------------------------------------

# Pools: all four views (the view task) and A4C only (the LV tasks); seed offset of each.
POOLS = (("views", None, 0), ("a4c", ("A4C",), 1))
SPLITS = {"train": (1, 0, 0), "test": (0, 0, 1)}


def phantom_samples(config: LabelEfficiencyConfig, preset: str, count: int, seed: int, views=None,
                    split: str = "test", labelled: str = "ed_es") -> list:
    """``count`` phantom samples of ``preset`` at the study's clip format (``size`` px,
    ``frames`` at ``fps``), ``views`` (None: all four), all in ``split``, LV maps on the
    ``labelled`` frames (``all`` or ``ed_es``)."""
    from echofm.datasets import phantom_task_dataset
    from echofm.phantom.config import phantom_preset

    extra = {"views": views} if views else {}
    phantom = phantom_preset(preset, size=config.size, num_frames=config.frames, fps=config.fps, **extra)
    return phantom_task_dataset(count, phantom, seed=seed, splits=SPLITS[split], structures="lv",
                                labelled=labelled).samples


def phantom_sets(config: LabelEfficiencyConfig, seed: int, say: Callable[[str], None] = print) -> dict:
    """The labelled pools of one seed (``all views`` for view, A4C for the LV tasks), max(ks)
    clips each, with LV maps on every frame; samples are in the ``train`` split."""
    return {name: phantom_samples(config, "default", max(config.ks), POOL_SEED + 97 * seed + offset, views,
                                  split="train", labelled="all")
            for name, views, offset in POOLS}


def heldout_sets(config: LabelEfficiencyConfig) -> dict:
    """The held-out sets, each as ``{"views": [...], "a4c": [...]}`` in the ``test`` split; LV
    maps on the ED/ES frames (where Dice is scored, as EchoNet's tracings)."""
    return {name: {pool: phantom_samples(config, preset, config.heldout_clips, base + offset, views)
                   for pool, views, offset in POOLS}
            for name, preset, base in (("heldout", "default", HELDOUT_SEED), ("shifted", "shifted", SHIFTED_SEED))
            if name in config.heldout_sets}


def _pool_of(task: str) -> str:
    return "views" if task == "view" else "a4c"


# --- the arms --------------------------------------------------------------------------------

def random_arm(pretrained, seed: int):
    """The random-init arm beside ``pretrained``: ``EchoFM(pretrained.cfg)`` built right after
    ``manual_seed(seed)`` (with pretraining's seed, the very weights pretraining started from),
    holding the pretrained model's input contract, so both arms read the same windows of the
    same clips (a fresh model's contract states no frame rate and frame step 1, which would
    differ from a pretrained model's on the same clips)."""
    import torch

    from echofm.model.echofm import EchoFM

    torch.manual_seed(seed)
    model = EchoFM(pretrained.cfg).eval()
    model.contract = pretrained.contract
    return model


def pretrain_arms(config: LabelEfficiencyConfig, out: Path) -> tuple[dict, dict]:
    """(arms, info): ``{"pretrained": EchoFM, "random": EchoFM}``. With ``config.init`` the
    pretrained model is loaded and the random arm is the same architecture freshly
    initialised under ``pretrain_seed``; without it echofm-tiny is pretrained here on
    fresh phantoms and the random arm is the weights pretraining started from. Either way
    the random arm reads clips as the pretrained model's input contract says (``random_arm``)."""
    if config.init:
        from echofm.model import load_model

        pretrained = load_model(config.init).eval()
        return {"pretrained": pretrained, "random": random_arm(pretrained, config.pretrain_seed)}, {"init": config.init}
    from echofm.train.config import load_pretrain_config
    from echofm.train.data import PhantomClips
    from echofm.train.pretrain import pretrain

    frame_step = max(1, int(round(30.0 / config.fps)))
    cfg = load_pretrain_config("echofm-tiny", {
        **config.pretrain_options, "model.img_size": config.size, "out": str(out), "steps": config.pretrain_steps,
        "batch_size": min(8, config.pretrain_clips),
        "lr": config.pretrain_lr, "warmup_fraction": 0.05, "workers": 0, "device": "cpu", "checkpoint_every": 0,
        "progress": False, "seed": config.pretrain_seed, "frame_step": frame_step, "precision": "fp32"})
    # PhantomClips generates each clip once and states its frame rate, so the pretrained
    # model's input contract says the rate its clips were made at (as `--data synth:N` does).
    source = PhantomClips(config.pretrain_clips, cfg.model, cfg.seed, cfg.frame_step, config.pretrain_presets)
    result = pretrain(cfg, dataset=source)
    history = [h for h in result.history if "loss" in h]
    info = {"init": None, "steps": config.pretrain_steps, "clips": config.pretrain_clips, "frame_step": frame_step,
            "presets": list(config.pretrain_presets), "options": dict(config.pretrain_options),
            "loss_first": history[0]["loss"] if history else None, "loss_last": history[-1]["loss"] if history else None,
            "recon_first": history[0].get("recon") if history else None,
            "recon_last": history[-1].get("recon") if history else None}
    return {"pretrained": result.model.eval(), "random": random_arm(result.model, cfg.seed)}, info


# --- one run: fine-tune, then score every held-out clip -------------------------------------------

def finetune_config(config: LabelEfficiencyConfig, task: str, mode: str, k: int, seed: int):
    """The fine-tuning recipe of one run: ``steps`` optimiser steps over k clips (2 epochs over
    the clips repeated), warm-up a tenth of them, in full mode the first ``head_only_fraction``
    of them on the head alone, fp32, no validation split."""
    from echofm.tasks.engine import FinetuneConfig

    head_only = 2 * config.head_only_fraction if mode == "full" else 0.0
    return FinetuneConfig(task="segment" if task == "ed_es" else task, mode=FINETUNE_MODE[mode], epochs=2,
                          batch_size=config.batch_size, blr=config.blr, warmup_epochs=0.2, seed=seed,
                          head_only_epochs=head_only,
                          validate=False, progress=False, precision="fp32", seg_head=config.seg_head)


def repeats_for(config: LabelEfficiencyConfig, k: int) -> int:
    """How often the k clips are repeated in each of the 2 epochs so the run takes ``steps`` steps."""
    return max(1, math.ceil(config.steps * config.batch_size / (2 * k)))


def train_run(config: LabelEfficiencyConfig, task: str, mode: str, k: int, seed: int, encoder, labelled: list,
              out: Path):
    """Fine-tune ``encoder`` on the first k ``labelled`` clips; the TaskModel."""
    from echofm.datasets.base import DatasetIndex
    from echofm.tasks.finetuning import finetune

    clips = [dataclasses.replace(s, split="train") for s in labelled[:k]]
    data = DatasetIndex(name="phantom", root=Path(f"phantom-pool-seed{seed}"),
                        samples=clips * repeats_for(config, k))
    return finetune(data, encoder, finetune_config(config, task, mode, k, seed), out).model


def clip_scores(task_model, samples: list, tasks: list[str]) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Per-clip scores of one fine-tuned model on ``samples``, for each of ``tasks`` the model
    serves: ef -> absolute error, view -> 1 if right, segment -> LV Dice over the labelled
    frames, ed_es -> mean absolute frame error of the inner true ED/ES frames (a missed
    event counts as the clip's length); and per task the clips' ``[truth, prediction]``
    (EF values, view names, LV areas in pixels of the first labelled frame, ED/ES frames)."""
    import torch

    from echofm.analysis.probe import events_from_curve, score_events
    from echofm.tasks import metrics as M
    from echofm.tasks.base import EvalOptions, run_windows
    from echofm.tasks.registry import get_task
    from echofm.tasks.segmentation import video_probabilities

    spec = task_model.spec
    options = EvalOptions(batch_size=8, precision="fp32")
    out: dict[str, list[float]] = {t: [] for t in tasks}
    pairs: dict[str, list] = {t: [] for t in tasks}
    if spec.kind != "segmentation":
        _, records = get_task(spec.task).evaluate(task_model, samples, options)
        for rec in records:
            if "ef" in out:
                out["ef"].append(abs(float(rec["pred"]) - float(rec["true"])))
                pairs["ef"].append([float(rec["true"]), round(float(rec["pred"]), 3)])
            if "view" in out:
                out["view"].append(float(rec["pred"] == rec["true"]))
                pairs["view"].append([rec["true"], rec["pred"]])
        return out, pairs
    with torch.no_grad():
        for sample, item, logits in run_windows(task_model, samples, options, segmentation=True):
            T = item["num_frames"]
            seg = video_probabilities(logits, item["indices"], T).argmax(dim=0).numpy()
            if "segment" in out:
                frames = sorted(item["masks"])
                pred = np.stack([seg[f] for f in frames])
                truth = np.stack([item["masks"][f].numpy() for f in frames])
                dice = M.dice_iou(pred, truth, {1: "lv_cavity"})["dice"]["lv_cavity"]
                out["segment"].append(float("nan") if dice is None else dice)
                pairs["segment"].append([int((truth[0] == 1).sum()), int((pred[0] == 1).sum())])
            if "ed_es" in out:
                area = (seg == 1).reshape(T, -1).sum(axis=1).astype(float)
                ed, es = events_from_curve(area)
                truth = {"ed": sample.meta["ed_frames"], "es": sample.meta["es_frames"]}
                scored = score_events({"ed": ed, "es": es}, truth, T, tolerance=ED_ES_TOLERANCE)
                out["ed_es"].append(event_error(scored, T))
                pairs["ed_es"].append([truth, {"ed": ed, "es": es}])
    return out, pairs


def event_error(scored: dict, num_frames: int) -> float:
    """A clip's mean absolute frame error over its inner true ED/ES events (``score_events``'s
    output); a missed event counts as the clip's length; NaN without inner events."""
    errors = [num_frames if e is None else e for kind in ("ed", "es") for e in scored[kind]["errors"]]
    return float(np.mean(errors)) if errors else float("nan")


def within_share(truth_and_prediction: list, num_frames: int, tolerance: int = ED_ES_TOLERANCE) -> float:
    """The share of inner true ED/ES events, pooled over clips, with a predicted event of the
    same kind within ``tolerance`` frames (the issue's "within 2 frames")."""
    from echofm.analysis.probe import score_events

    found = total = 0
    for truth, pred in truth_and_prediction:
        scored = score_events(pred, truth, num_frames, tolerance)
        errors = [e for kind in ("ed", "es") for e in scored[kind]["errors"]]
        found += sum(1 for e in errors if e is not None and e <= tolerance)
        total += len(errors)
    return found / total if total else float("nan")


# --- ED/ES from the frozen step embeddings (the bar's ED/ES line) ---------------------------------

def phase_runs(config: LabelEfficiencyConfig, arms: dict, pools: dict, heldout: dict) -> list[dict]:
    """ED/ES from frozen per-time-step embeddings, for each arm, seed and k: a ridge probe
    (``analysis.probe``) maps the step embeddings (``embed().frames``, the output the
    periodic losses train) of the first k labelled A4C clips of the seed's pool to their
    LV volume per step; the maxima and minima of its curve on a held-out clip are the ED and
    ES frames. Beside them the pixel rule (``analysis.phase``, no model, no labels) as arm
    ``pixels``. Runs like the fine-tuning ones: task ``ed_es``, mode ``steps``."""
    from echofm.analysis.probe import (PhaseProbeConfig, apply_phase_probe, embed_videos, fit_phase_probe,
                                       phase_videos, pixel_phase_baseline)

    # The clips are made at the models' rate (one window is the whole clip): frame step 1.
    probe_cfg = PhaseProbeConfig(frame_step=1, tolerance=ED_ES_TOLERANCE, features=("frames",))
    tests = {name: phase_videos(sets["a4c"]) for name, sets in heldout.items()}
    runs = []

    def run_of(arm, k, seed, name, records):
        truth = [[{"ed": r["true_ed_frames"], "es": r["true_es_frames"]}, {"ed": r["ed_frames"], "es": r["es_frames"]}]
                 for r in records]
        scores = [event_error({"ed": {"errors": r["ed_errors"]}, "es": {"errors": r["es_errors"]}}, config.frames)
                  for r in records]
        return {"task": "ed_es", "mode": PHASE_MODE, "k": k, "seed": seed, "arm": arm, "heldout": name,
                "metric": METRICS["ed_es"][0], "value": float(np.nanmean(scores)), "clip_scores": scores,
                "within_2": within_share(truth, config.frames), "truth_and_prediction": truth}

    for name, test in tests.items():
        pixels = pixel_phase_baseline(test, ED_ES_TOLERANCE).records
        runs += [run_of("pixels", k, seed, name, pixels) for k in sorted(config.ks) for seed in config.seeds]
    for arm in ARMS:
        model = arms[arm].eval()
        test_emb = {name: embed_videos(model, test, probe_cfg, probe_cfg.window_step) for name, test in tests.items()}
        for seed in config.seeds:
            train = phase_videos(pools[seed]["a4c"][:max(config.ks)])
            train_emb = embed_videos(model, train, probe_cfg, probe_cfg.train_window_step)
            for k in sorted(config.ks):
                probe = fit_phase_probe(train_emb[:k], train[:k], model.cfg.t_patch_size, probe_cfg, "frames")
                for name, test in tests.items():
                    res = apply_phase_probe(probe, test_emb[name], test, model.cfg.t_patch_size, ED_ES_TOLERANCE,
                                            "frames")
                    runs.append(run_of(arm, k, seed, name, res.records))
    return runs


def pixel_rule_cells(runs: list[dict], resamples: int = 2000) -> list[dict]:
    """Per (k, held-out set): the pretrained step embeddings' ED/ES against the pixel rule,
    the gain positive when the step embeddings' frame error is lower (paired bootstrap over
    clips, t interval over seeds, verdict as ``summarise_cells``)."""
    from echofm.analysis.statistics import oriented_gain, paired_bootstrap, t_interval, verdict

    cells = []
    mine = [r for r in runs if r["mode"] == PHASE_MODE]
    for k, held in sorted({(r["k"], r["heldout"]) for r in mine}, key=lambda x: (x[0], HELDOUT_SETS.index(x[1]))):
        by = {(r["arm"], r["seed"]): r for r in mine if (r["k"], r["heldout"]) == (k, held)}
        seeds = sorted(s for a, s in by if a == "pretrained" and ("pixels", s) in by)
        if not seeds:
            continue
        pre = np.nanmean(np.array([by["pretrained", s]["clip_scores"] for s in seeds], float), axis=0)
        pix = np.array(by["pixels", seeds[0]]["clip_scores"], float)
        clips = paired_bootstrap(pre, pix, False, resamples=resamples)
        seed_gain = t_interval(oriented_gain([by["pretrained", s]["value"] for s in seeds],
                                             [by["pixels", s]["value"] for s in seeds], False))
        better, worse = "step embeddings better", "pixel rule better"
        said = verdict(clips.lo, clips.hi, better, worse)
        if len(seeds) >= 2 and verdict(seed_gain.lo, seed_gain.hi, better, worse) != said:
            said = verdict(None, None)
        cells.append({"task": "ed_es", "metric": "frame_error", "k": k, "heldout": held, "seeds": seeds,
                      "clips": clips.n, "steps_mean": float(np.mean([by["pretrained", s]["value"] for s in seeds])),
                      "pixels_mean": by["pixels", seeds[0]]["value"],
                      "steps_within_2": float(np.mean([by["pretrained", s]["within_2"] for s in seeds])),
                      "pixels_within_2": by["pixels", seeds[0]]["within_2"],
                      "gain_mean": seed_gain.mean, "gain_ci95_seeds": [seed_gain.lo, seed_gain.hi],
                      "gain_ci95_clips": [clips.lo, clips.hi], "verdict": said,
                      "at_least_as_good": said != worse})
    return cells


# --- the study -------------------------------------------------------------------------------------

def run_label_efficiency(config: LabelEfficiencyConfig, arms: Optional[dict] = None,
                         say: Callable[[str], None] = print) -> LabelEfficiencyResult:
    """Run the grid into ``config.out`` and write the JSON, figures and HTML page.

    arms: ``{"pretrained": EchoFM, "random": EchoFM}`` to compare (the demo passes its own);
    None: ``pretrain_arms``. torch's thread count is ``config.threads`` while it runs and is
    put back afterwards.
    """
    from echofm.runtime.threads import threads_for

    cfg = config.validate()
    with threads_for(cfg.threads):
        return _run_grid(cfg, arms, say)


def _run_grid(cfg: LabelEfficiencyConfig, arms: Optional[dict], say: Callable[[str], None]) -> LabelEfficiencyResult:
    from echofm.analysis.label_efficiency_figures import arms_figure, write_figures, write_html
    from echofm.files import write_text_atomic

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    timing: dict = {}
    summary: dict = {"config": asdict(cfg)}
    if arms is None:
        say(f"pretraining echofm-tiny at {cfg.size} px for {cfg.pretrain_steps} steps" if not cfg.init
            else f"loading {cfg.init}")
        arms, summary["pretraining"] = pretrain_arms(cfg, out / "pretrain")
    else:
        summary["pretraining"] = {"init": "given by the caller"}
    timing["pretrain"] = round(time.time() - t0, 1)
    t = time.time()
    heldout = heldout_sets(cfg)
    timing["heldout_data"] = round(time.time() - t, 1)
    trained_tasks = sorted({"segment" if task == "ed_es" else task for task in cfg.tasks})
    runs: list[dict] = []
    pools: dict = {}
    log_path = out / RUNS_LOG
    log_path.unlink(missing_ok=True)
    # Modes outermost (full first), so a run stopped early has the bar's cells for every seed.
    for mode in cfg.modes:
        for seed in cfg.seeds:
            if seed not in pools:
                t = time.time()
                pools[seed] = phantom_sets(cfg, seed, say)
                timing[f"pool_seed{seed}"] = round(time.time() - t, 1)
            for trained in trained_tasks:
                served = [task for task in cfg.tasks if task == trained or (trained == "segment" and task == "ed_es")]
                for k in sorted(cfg.ks):
                    for arm in ARMS:
                        t = time.time()
                        run_dir = out / "runs" / f"{trained}_{mode}_k{k}_seed{seed}_{arm}"
                        shutil.rmtree(run_dir, ignore_errors=True)
                        model = train_run(cfg, trained, mode, k, seed, arms[arm].encoder,
                                          pools[seed][_pool_of(trained)], run_dir)
                        new_runs = []
                        for set_name, sets in heldout.items():
                            scores, pairs = clip_scores(model, sets[_pool_of(trained)], served)
                            for task, values in scores.items():
                                new_runs.append({"task": task, "mode": mode, "k": k, "seed": seed, "arm": arm,
                                                 "heldout": set_name, "metric": METRICS[task][0],
                                                 "value": float(np.nanmean(values)), "clip_scores": values,
                                                 "truth_and_prediction": pairs[task]})
                                if task == "ed_es":
                                    new_runs[-1]["within_2"] = within_share(pairs[task], cfg.frames)
                        runs += new_runs
                        with open(log_path, "a", encoding="utf-8") as log_file:  # partial results survive a stop
                            for run in new_runs:
                                log_file.write(json.dumps(run, default=_json_default) + "\n")
                        if not cfg.keep_runs:
                            shutil.rmtree(run_dir, ignore_errors=True)
                        seconds = round(time.time() - t, 1)
                        timing[f"{trained}_{mode}"] = round(timing.get(f"{trained}_{mode}", 0.0) + seconds, 1)
                        say(f"{trained} {mode} k={k} seed={seed} {arm}: "
                            + ", ".join(f"{r['task']}/{r['heldout']} {r['metric']} {r['value']:.3f}" for r in new_runs)
                            + f" ({seconds:.0f} s)")
    if "ed_es" in cfg.tasks and cfg.step_probe:
        t = time.time()
        for seed in cfg.seeds:
            pools.setdefault(seed, phantom_sets(cfg, seed, say))
        new_runs = phase_runs(cfg, arms, pools, heldout)
        runs += new_runs
        with open(log_path, "a", encoding="utf-8") as log_file:
            for run in new_runs:
                log_file.write(json.dumps(run, default=_json_default) + "\n")
        timing["ed_es_steps"] = round(time.time() - t, 1)
        say("ED/ES from frozen step embeddings: " + ", ".join(
            f"{r['arm']}/{r['heldout']} k={r['k']} seed={r['seed']} {r['value']:.2f} frames" for r in new_runs
            if r["arm"] != "pixels" or r["seed"] == cfg.seeds[0]))
    summary["runs"] = runs
    summary["cells"] = summarise_cells(runs, cfg.bootstrap)
    summary["pixel_rule"] = pixel_rule_cells(runs, cfg.bootstrap)
    summary["timing_s"] = {**timing, "total": round(time.time() - t0, 1)}
    figures = write_figures(summary, out)
    first_seed, first_set = cfg.seeds[0], cfg.heldout_sets[0]
    for mode in cfg.modes:
        for k in sorted(cfg.ks):
            mine = [r for r in runs if (r["mode"], r["k"], r["seed"], r["heldout"]) == (mode, k, first_seed, first_set)]
            figures.append(arms_figure(mine, out / f"arms_{mode}_k{k}.png",
                                       f"{mode} fine-tuning, k={k}, seed {first_seed}, {first_set} phantoms: "
                                       f"pretrained (left) vs random init (right)"))
    summary["figures"] = [p.name for p in figures]
    write_text_atomic(out / "label_efficiency.json", json.dumps(summary, indent=1, default=_json_default))
    report = write_html(summary, out / "label_efficiency.html")
    return LabelEfficiencyResult(out=out, summary=summary, report=report, figures=figures)


def summarise_cells(runs: list[dict], resamples: int = 2000) -> list[dict]:
    """One row per (task, mode, k, held-out set): each arm's mean over seeds with its t
    interval, the gain (positive: pretrained better) with a t interval over seeds and a
    paired bootstrap interval over held-out clips (each clip's score averaged over seeds),
    and the verdict: a side only when the clips' interval excludes 0 and, with 2 or more
    seeds, the seeds' interval excludes 0 on the same side (two seeds with equal gains
    give a zero-width t interval, which alone proves nothing). ED/ES cells also carry each
    arm's share of events found within 2 frames (``ARM_within_2``, mean over seeds)."""
    from echofm.analysis.statistics import oriented_gain, paired_bootstrap, t_interval, verdict

    mode_order = (*MODES, PHASE_MODE)
    keys = sorted({(r["task"], r["mode"], r["k"], r["heldout"]) for r in runs},
                  key=lambda key: (TASKS.index(key[0]), mode_order.index(key[1]), key[2], HELDOUT_SETS.index(key[3])))
    cells = []
    for task, mode, k, held in keys:
        metric, higher = METRICS[task]
        mine = [r for r in runs if (r["task"], r["mode"], r["k"], r["heldout"]) == (task, mode, k, held)]
        seeds = sorted({r["seed"] for r in mine})
        by = {(r["arm"], r["seed"]): r for r in mine}
        paired = [s for s in seeds if ("pretrained", s) in by and ("random", s) in by]
        if not paired:  # a stopped study's log may hold one arm of its last cell
            continue
        values = {arm: [by[arm, s]["value"] for s in paired] for arm in ARMS}
        seed_gain = t_interval(oriented_gain(values["pretrained"], values["random"], higher))
        clip_mean = {arm: np.nanmean(np.array([by[arm, s]["clip_scores"] for s in paired], float), axis=0)
                     for arm in ARMS}
        clips = paired_bootstrap(clip_mean["pretrained"], clip_mean["random"], higher, resamples=resamples)
        arm_ci = {arm: t_interval(values[arm]) for arm in ARMS}
        said = verdict(clips.lo, clips.hi)
        if len(paired) >= 2 and verdict(seed_gain.lo, seed_gain.hi) != said:
            said = verdict(None, None)
        cells.append({"task": task, "metric": metric, "higher_is_better": higher, "mode": mode, "k": k,
                      "heldout": held, "seeds": paired, "clips": clips.n,
                      "pretrained_mean": arm_ci["pretrained"].mean, "random_mean": arm_ci["random"].mean,
                      "pretrained_ci95": [arm_ci["pretrained"].lo, arm_ci["pretrained"].hi],
                      "random_ci95": [arm_ci["random"].lo, arm_ci["random"].hi],
                      "gain_mean": seed_gain.mean, "gain_ci95_seeds": [seed_gain.lo, seed_gain.hi],
                      "gain_ci95_clips": [clips.lo, clips.hi],
                      "verdict": said})
        if all("within_2" in by[arm, s] for arm in ARMS for s in paired):
            for arm in ARMS:
                cells[-1][f"{arm}_within_2"] = float(np.mean([by[arm, s]["within_2"] for s in paired]))
    return cells


def comparison_rows(cells: list[dict]) -> list[dict]:
    """The cells as the demo's ``comparison`` rows: ``{task, metric, mode, k, heldout,
    pretrained_mean, random_mean, gain_ci95, higher_is_better, verdict}``, the gain's interval
    the paired bootstrap over held-out clips."""
    return [{"task": c["task"], "metric": c["metric"], "mode": c["mode"], "k": c["k"], "heldout": c["heldout"],
             "pretrained_mean": c["pretrained_mean"], "random_mean": c["random_mean"],
             "gain_ci95": list(c["gain_ci95_clips"]), "higher_is_better": c["higher_is_better"],
             "verdict": c["verdict"]} for c in cells]


def format_comparison(rows: list[dict]) -> str:
    """The printed comparison table, one line per row (numbers with three decimals)."""
    lines = [f"{'task':<8} {'mode':<6} {'metric':<12} {'k':>4} {'held-out':<9} {'pretrained':>10} {'random init':>11}  "
             f"{'gain 95% CI':<18}  verdict"]
    for r in rows:
        ci = f"[{r['gain_ci95'][0]:.3f}, {r['gain_ci95'][1]:.3f}]"
        lines.append(f"{r['task']:<8} {r['mode']:<6} {r['metric']:<12} {r['k']:>4} {r['heldout']:<9} "
                     f"{r['pretrained_mean']:>10.3f} {r['random_mean']:>11.3f}  {ci:<18}  {r['verdict']}")
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
