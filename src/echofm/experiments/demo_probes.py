"""The demo's probes: each compares arms (the pretrained encoder and the same encoder at its
random initialisation) on the held-out phantoms, beside model-free reference figures.

Closed-form probes on frozen features (``analysis.probe``); the fine-tuned comparison is
``experiments.label_efficiency``'s. A dataset here is a ``DatasetIndex`` with ``train``
and ``test`` splits, ``ef``/``view`` targets and per-frame truth in ``meta``
(``datasets.phantom.read_prepared_phantoms``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from echofm.experiments.demo_report import FEATURE_NAMES, json_default


def reference_figures(index) -> dict:
    """What the probes are measured against, without any model: the training-mean EF's MAE on
    the test split, and the accuracy of always answering the training split's majority view."""
    import numpy as np

    train, test = index.split("train"), index.split("test")
    mean = float(np.mean([s.targets["ef"] for s in train]))
    counts: dict = {}
    for s in train:
        counts[s.targets["view"]] = counts.get(s.targets["view"], 0) + 1
    majority = max(sorted(counts), key=counts.get)
    return {"ef": {"name": "training-mean EF", "mae": float(np.mean([abs(s.targets["ef"] - mean) for s in test]))},
            "view": {"name": f"majority view ({majority})",
                     "accuracy": float(np.mean([s.targets["view"] == majority for s in test]))}}


def frozen_probes(index, arms: dict, references: dict, out: Path) -> dict:
    """Closed-form probes on frozen features, each video embedded once per arm: ED/ES from
    per-time-step features (pixels alone for context) and EF/view ridge probes on the
    standardised pooled tokens. Writes the per-video records and a figure into ``out``."""
    from tqdm.auto import tqdm

    from echofm.analysis.demo_figures import phase_probe_figure
    from echofm.analysis.probe import (PhaseProbeConfig, embed_videos, phase_probe, phase_videos,
                                       pixel_phase_baseline, probe_tolerance, video_features)
    from echofm.files import write_text_atomic
    from echofm.probes.ridge import video_probe

    train_s, test_s = index.split("train"), index.split("test")
    train, test = phase_videos(train_s), phase_videos(test_s)
    config = PhaseProbeConfig()
    t_patch = arms["pretrained"].cfg.t_patch_size
    tol = probe_tolerance(arms["pretrained"], config, test)
    phase: dict = {}
    ridge: dict = {"ef": {}, "view": {}}
    write = lambda name, payload: write_text_atomic(out / name, json.dumps(payload, indent=1, default=json_default))
    for arm, model in arms.items():
        with tqdm(total=len(train) + len(test), desc=f"embedding, {arm} encoder", unit="video") as bar:
            train_emb = embed_videos(model, train, config, config.train_window_step, bar.update)
            test_emb = embed_videos(model, test, config, config.window_step, bar.update)
        for kind, res in phase_probe(train_emb, train, test_emb, test, t_patch, tol, config).items():
            phase[f"{arm}_{kind}"] = res
        x_train, x_test = video_features(train_emb), video_features(test_emb)
        for task, kind in (("ef", "regression"), ("view", "classification")):
            res = video_probe(x_train, [s.targets[task] for s in train_s], x_test, [s.targets[task] for s in test_s], kind)
            ridge[task][arm] = {**res.metrics, "alpha": res.alpha}
            write(f"{task}_ridge_{arm}.json", {"metrics": res.metrics, "alpha": res.alpha, "predictions": [
                {"id": s.id, "true": s.targets[task], "pred": p} for s, p in zip(test_s, res.predictions)]})
    phase["pixels"] = pixel_phase_baseline(test, tol)
    for name, res in phase.items():
        write(f"ed_es_{name}.json", {"metrics": res.metrics, "alpha": res.alpha,
                                     "cv_mse": {str(k): v for k, v in res.cv_mse.items()}, "records": res.records})
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
    ridge["ef"]["reference"], ridge["view"]["reference"] = references["ef"], references["view"]
    return {"ed_es": ed_es, "ef_ridge": ridge["ef"], "view_ridge": ridge["view"]}
