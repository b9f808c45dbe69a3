"""Ejection fraction (or any scalar, e.g. an EchoNet-LVH measurement) regression.

Clip level: each window's prediction against the video's label. Video level, as
EchoNet-Dynamic does it: the mean of the predictions of windows covering the whole
video. ``ef_from_masks`` gives the second estimate, from segmented LV areas at ED and ES
(single-plane area-length volumes), used by the segmentation task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from echofm.datasets.base import Sample
from echofm.tasks import metrics as M
from echofm.tasks.adapter import TaskModel, TaskSpec
from echofm.tasks.base import EvalOptions, Task, plots_enabled, run_windows


def _value(sample: Sample, target: str) -> Optional[float]:
    raw = sample.targets.get(target)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


class EFTask(Task):
    """Scalar regression with an MSE loss on the standardised target."""

    name = "ef"
    default_target = "ef"

    def fit(self, train, target, options) -> TaskSpec:
        target = target or self.default_target
        values = [v for v in (_value(s, target) for s in train) if v is not None]
        if not values:
            raise ValueError(f"no training sample has a numeric {target!r} label")
        return TaskSpec(task=self.name, kind="regression", target=target, target_mean=float(np.mean(values)),
                        target_std=float(np.std(values)) if len(values) > 1 and np.std(values) > 0 else 1.0)

    def usable(self, sample, spec):
        return None if _value(sample, spec.target) is not None else f"no numeric {spec.target!r} label"

    def encode(self, sample, spec):
        return torch.tensor(_value(sample, spec.target), dtype=torch.float32)

    def loss(self, model: TaskModel, batch: dict) -> torch.Tensor:
        pred = model.head_loss_input(batch["clips"])
        return F.mse_loss(pred.float(), model.head.standardise(batch["target"].float()))

    def summarise_prediction(self, outputs, spec, windows, num_frames, pixel_spacing=None):
        """The mean of the windows' values (EchoNet-Dynamic's video-level estimate) and each window's."""
        values = outputs.reshape(-1).tolist()
        return {"value": float(np.mean(values)), "window_values": [round(v, 4) for v in values],
                "unit": "%" if spec.target.lower() == "ef" else None}, None

    def prediction_columns(self, prediction):
        return {"prediction": round(prediction["value"], 4)}

    def evaluate(self, model, samples, options: EvalOptions, plots_dir: Optional[Path] = None):
        target = model.spec.target
        clip_true, clip_pred, records = [], [], []
        for sample, item, out in run_windows(model, samples, options):
            truth = _value(sample, target)
            preds = out.reshape(-1).tolist()
            clip_true += [truth] * len(preds)
            clip_pred += preds
            records.append({"id": sample.id, "true": truth, "pred": float(np.mean(preds)),
                            "clip_preds": [round(p, 4) for p in preds]})
        video_true = [r["true"] for r in records]
        video_pred = [r["pred"] for r in records]
        metrics = {"target": target, "clip": M.regression_metrics(clip_true, clip_pred),
                   "video": M.regression_metrics(video_true, video_pred)}
        if plots_enabled(plots_dir):
            from echofm.tasks.plots import regression_plots

            label = "EF (%)" if target == "ef" else target
            regression_plots(video_true, video_pred, Path(plots_dir) / f"{target}_scatter_bland_altman.png", label)
        return metrics, records

    @staticmethod
    def main_metric(metrics):
        return "video.mae", metrics["video"]["mae"], False


# --- EF from segmented areas --------------------------------------------------------------

def long_axis_length(mask: np.ndarray) -> float:
    """Extent (pixels) of a binary mask [H, W] along its principal axis (0 if empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 2:
        return float(len(xs))
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    pts -= pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts, full_matrices=False)
    proj = pts @ vt[0]
    return float(proj.max() - proj.min() + 1.0)


def area_length_volume(mask: np.ndarray) -> float:
    """Single-plane area-length volume 8 A^2 / (3 pi L) of an LV mask (pixel units)."""
    area = float(mask.sum())
    length = long_axis_length(mask)
    return 0.0 if length == 0 else 8.0 * area * area / (3.0 * np.pi * length)


def ef_from_masks(lv: np.ndarray, ed: Optional[int] = None, es: Optional[int] = None) -> dict:
    """EF (%) from LV cavity masks [T, H, W] (bool).

    ED/ES default to the frames of largest and smallest segmented area. Returns
    ``{"ef", "ed_frame", "es_frame", "ed_area", "es_area"}``; ``ef`` is None when the ED
    volume is zero.
    """
    areas = lv.reshape(len(lv), -1).sum(axis=1)
    ed = int(np.argmax(areas)) if ed is None else int(ed)
    es = int(np.argmin(areas)) if es is None else int(es)
    edv, esv = area_length_volume(lv[ed]), area_length_volume(lv[es])
    ef = None if edv <= 0 else 100.0 * (edv - esv) / edv
    return {"ef": ef, "ed_frame": ed, "es_frame": es, "ed_area": int(areas[ed]), "es_area": int(areas[es])}
