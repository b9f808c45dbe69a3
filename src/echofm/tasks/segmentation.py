"""Chamber segmentation per frame: 0 background, 1 LV cavity, 2 LV myocardium, 3 LA.

Training uses whatever frames are labelled: the ED/ES tracings of EchoNet (sparse) or
every frame of a CAMUS half sequence (dense); unlabelled frames of a window are ignored
by the loss (cross-entropy plus soft Dice over the labelled frames). Evaluation segments
every frame of each video (window probabilities averaged where windows overlap), scores
Dice and IoU per structure on the labelled frames, and, where the video has an EF label,
estimates EF from the segmented LV at ED and ES (``ef_from_masks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from echofm.labels import IGNORE, LV_CAVITY, SEGMENTATION_CLASSES
from echofm.tasks import metrics as M
from echofm.tasks.adapter import TaskModel, TaskSpec
from echofm.tasks.base import EvalOptions, Task, plots_enabled, run_windows
from echofm.tasks.ef import ef_from_masks

OVERLAY_VIDEOS = 4


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over foreground classes; logits [N, K, F, H, W], target [N, F, H, W]."""
    valid = (target != IGNORE).unsqueeze(1)
    probs = torch.softmax(logits.float(), dim=1) * valid
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1) * (target != IGNORE), logits.shape[1])
    onehot = onehot.permute(0, 4, 1, 2, 3).float() * valid
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)[1:]
    total = (probs.sum(dims) + onehot.sum(dims))[1:]
    return 1.0 - ((2 * inter + 1.0) / (total + 1.0)).mean()


def video_probabilities(window_logits: torch.Tensor, indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Per-frame class probabilities [K, T, S, S] of a whole video from its windows.

    window_logits: [W, K, F, S, S]; indices: [W, F] frame index of each window position.
    Where windows overlap their softmax probabilities are averaged; a frame no window
    covers stays all zero.
    """
    probs = torch.softmax(window_logits.float(), dim=1)
    K, S = probs.shape[1], probs.shape[-1]
    total = torch.zeros(K, num_frames, S, S)
    count = torch.zeros(num_frames)
    for w, idx in enumerate(torch.as_tensor(indices)):
        # A clamped index repeats the last frame: count it once per window.
        uniq, first = np.unique(idx.numpy(), return_index=True)
        total[:, uniq] += probs[w][:, first]
        count[uniq] += 1
    return total / count.clamp(min=1).view(1, num_frames, 1, 1)


def segmentation_summary(masks: np.ndarray, classes: Sequence[str],
                         pixel_spacing: Optional[tuple[float, float]] = None) -> dict:
    """Per-structure area curves (pixels; mm² when the spacing is known) of label maps
    [T, H, W], and, when the LV cavity is one of the classes, the EF from the ED/ES areas
    (``tasks.ef.ef_from_masks``: single-plane area-length volumes, ED = largest area)."""
    T = len(masks)
    flat = masks.reshape(T, -1)
    areas = {name: np.count_nonzero(flat == value, axis=1).astype(int).tolist()
             for value, name in enumerate(classes) if value > 0}
    summary: dict = {"classes": list(classes), "mask_shape": list(masks.shape), "areas_px": areas}
    if pixel_spacing is not None:
        mm2 = float(pixel_spacing[0] * pixel_spacing[1])
        summary["pixel_spacing_mm"] = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        summary["areas_mm2"] = {k: [round(a * mm2, 3) for a in v] for k, v in areas.items()}
    if len(classes) > LV_CAVITY:
        name = classes[LV_CAVITY]
        summary["lv_area_px"] = areas[name]
        ef = ef_from_masks(masks == LV_CAVITY)
        summary["ef_from_segmentation"] = ef if ef["ef"] is not None else {**ef, "note": "no LV segmented"}
    return summary


class SegmentationTask(Task):
    name = "segment"
    default_target = "masks"

    def fit(self, train, target, options) -> TaskSpec:
        # Classes: up to the largest label value seen in a few training items (EchoNet: LV only).
        highest = 1
        for sample in train[:8]:
            frames, _ = sample.load_frames()
            for m in sample.load_masks(frames.shape[1], frames.shape[2]).values():
                highest = max(highest, int(m.max()))
        if highest >= len(SEGMENTATION_CLASSES):
            raise ValueError(f"segmentation labels go up to {highest}; expected 0..{len(SEGMENTATION_CLASSES) - 1}")
        return TaskSpec(task=self.name, kind="segmentation", target="masks", classes=SEGMENTATION_CLASSES[:highest + 1],
                        seg_layers=list(options.get("seg_layers") or []))

    def usable(self, sample, spec):
        return None if sample.masks_loader is not None else "no segmentation labels"

    def encode(self, sample, spec):
        return torch.zeros(())  # the masks travel in the batch, not as a target

    def loss(self, model: TaskModel, batch: dict) -> torch.Tensor:
        logits = model(batch["clips"])
        target = batch["masks"]
        if not (target != IGNORE).any():
            return logits.sum() * 0.0
        ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE)
        return ce + soft_dice_loss(logits, target)

    def summarise_prediction(self, outputs, spec, windows, num_frames, pixel_spacing=None):
        """Label maps of every frame (the windows' probabilities averaged per frame, then the
        most probable class) and their ``segmentation_summary``."""
        probs = video_probabilities(outputs, torch.as_tensor(windows), num_frames)
        masks = probs.argmax(dim=0).numpy().astype(np.uint8)
        return segmentation_summary(masks, spec.classes, pixel_spacing), masks

    def prediction_columns(self, prediction):
        """The EF from the segmented ED/ES areas (blank without an LV class or an LV found)."""
        ef = prediction.get("ef_from_segmentation", {}).get("ef")
        return {"prediction": "" if ef is None else round(ef, 3)}

    def evaluate(self, model, samples, options: EvalOptions, plots_dir: Optional[Path] = None):
        spec = model.spec
        structures = {i: n for i, n in enumerate(spec.classes) if i > 0}
        preds, truths, records, overlay_rows = [], [], [], []
        ef_true, ef_pred = [], []
        for sample, item, out in run_windows(model, samples, options, segmentation=True):
            T = item["num_frames"]
            seg = video_probabilities(out, item["indices"], T).argmax(dim=0).numpy().astype(np.uint8)  # [T, S, S]
            rec: dict = {"id": sample.id, "labelled_frames": sorted(item["masks"])}
            for f, truth in item["masks"].items():
                preds.append(seg[f])
                truths.append(truth.numpy())
            if item["masks"]:
                frame_scores = M.dice_iou(np.stack([seg[f] for f in item["masks"]]),
                                          np.stack([t.numpy() for t in item["masks"].values()]), structures)
                rec["dice"] = frame_scores["dice"]
            ef_label = sample.targets.get("ef")
            ed, es = sample.meta.get("ed_frame"), sample.meta.get("es_frame")
            if 1 in structures:
                est = ef_from_masks(seg == 1, ed if ed is not None and ed < T else None,
                                    es if es is not None and es < T else None)
                rec["ef_from_segmentation"] = est
                if ef_label not in (None, "") and est["ef"] is not None:
                    ef_true.append(float(ef_label))
                    ef_pred.append(est["ef"])
            records.append(rec)
            if len(overlay_rows) < 2 * OVERLAY_VIDEOS and item["masks"]:
                for f in sorted(item["masks"])[:2]:
                    w, k = np.argwhere(item["indices"].numpy() == f)[0]
                    image = item["clips"][w, :, k].mean(dim=0).numpy()
                    overlay_rows.append((f"{sample.id} frame {f}", image, seg[f], item["masks"][f].numpy()))
        if not preds:
            raise ValueError("segmentation evaluation: none of the videos has a labelled frame")
        P, Y = np.stack(preds), np.stack(truths)
        metrics: dict = {"classes": spec.classes, "frames": int(len(P)), "pooled": M.dice_iou(P, Y, structures)}
        metrics["per_frame_dice"] = {}
        for value, name in structures.items():
            d = M.per_image_dice(P, Y, value)
            metrics["per_frame_dice"][name] = None if np.all(np.isnan(d)) else float(np.nanmean(d))
        if ef_true:
            metrics["ef_from_segmentation"] = M.regression_metrics(ef_true, ef_pred)
        if plots_enabled(plots_dir):
            from echofm.tasks.plots import regression_plots, segmentation_overlays

            if overlay_rows:
                segmentation_overlays(overlay_rows, Path(plots_dir) / "segmentation_overlays.png")
            if len(ef_true) > 1:
                regression_plots(ef_true, ef_pred, Path(plots_dir) / "ef_from_segmentation.png")
        return metrics, records

    @staticmethod
    def main_metric(metrics):
        return "pooled.dice_mean", metrics["pooled"]["dice_mean"] or 0.0, True
