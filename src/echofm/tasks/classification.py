"""Video classification, multi-class (softmax, cross-entropy) or multi-label (sigmoid, BCE).

Subclasses (``view``, ``disease``) only say how raw labels map to class names
(``map_label``). Evaluation averages the window probabilities of each video (video
level) and, when samples carry a ``group`` holding several videos (a TMED-2 study),
averages the video probabilities of each group (study level).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from echofm.datasets.base import Sample
from echofm.tasks import metrics as M
from echofm.tasks.adapter import TaskModel, TaskSpec
from echofm.tasks.base import EvalOptions, Task, plots_enabled, run_windows

MULTILABEL_SEPARATORS = (";", "|")


def split_multilabel(raw) -> list[str]:
    """``"a;b"`` / ``"a|b"`` / a list -> class names (blank parts dropped)."""
    if isinstance(raw, (list, tuple)):
        parts = list(raw)
    else:
        text = str(raw)
        for sep in MULTILABEL_SEPARATORS[1:]:
            text = text.replace(sep, MULTILABEL_SEPARATORS[0])
        parts = text.split(MULTILABEL_SEPARATORS[0])
    return sorted({p.strip() for p in map(str, parts) if p.strip()})


class ClassificationTask(Task):
    """Multi-class or multi-label classification of ``Sample.targets[target]``."""

    name = "classify"
    default_target = "label"
    fixed_classes: Optional[list[str]] = None  # a scheme with fixed classes (AS grades) sets this

    def scheme(self, options: dict) -> str:
        return options.get("labels") or "multiclass"

    def map_label(self, raw, scheme: str) -> Optional[str]:
        """Raw label -> class name, or None when it has no class under ``scheme``."""
        text = str(raw).strip()
        return text or None

    def classes_for(self, scheme: str) -> Optional[list[str]]:
        return self.fixed_classes

    def fit(self, train, target, options) -> TaskSpec:
        target = target or self.default_target
        scheme = self.scheme(options)
        kind = "multilabel" if scheme == "multilabel" else "multiclass"
        classes = self.classes_for(scheme)
        if classes is None:
            found: set[str] = set()
            for s in train:
                raw = s.targets.get(target)
                if raw in (None, ""):
                    continue
                if kind == "multilabel":
                    found.update(split_multilabel(raw))
                else:
                    name = self.map_label(raw, scheme)
                    if name is not None:
                        found.add(name)
            classes = sorted(found)
        if len(classes) < 2 and kind == "multiclass":
            raise ValueError(f"{self.name}: need at least two classes of {target!r} in the training split, "
                             f"found {classes or 'none'}")
        if not classes:
            raise ValueError(f"{self.name}: no labels of {target!r} in the training split")
        return TaskSpec(task=self.name, kind=kind, target=target, classes=list(classes), scheme=scheme)

    def _class_index(self, sample: Sample, spec: TaskSpec) -> Optional[int]:
        raw = sample.targets.get(spec.target)
        if raw in (None, ""):
            return None
        name = self.map_label(raw, spec.scheme)
        return spec.classes.index(name) if name in spec.classes else None

    def usable(self, sample, spec):
        raw = sample.targets.get(spec.target)
        if raw in (None, ""):
            return f"no {spec.target!r} label"
        if spec.kind == "multilabel":
            unknown = [c for c in split_multilabel(raw) if c not in spec.classes]
            return f"labels {unknown} not among the trained classes" if unknown else None
        if self._class_index(sample, spec) is None:
            return f"label {raw!r} has no class under scheme {spec.scheme!r} (classes {spec.classes})"
        return None

    def encode(self, sample, spec):
        if spec.kind == "multilabel":
            present = split_multilabel(sample.targets[spec.target])
            return torch.tensor([1.0 if c in present else 0.0 for c in spec.classes])
        return torch.tensor(self._class_index(sample, spec), dtype=torch.long)

    def loss(self, model: TaskModel, batch: dict) -> torch.Tensor:
        logits = model(batch["clips"]).float()
        if model.spec.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, batch["target"].float())
        return F.cross_entropy(logits, batch["target"])

    def summarise_prediction(self, outputs, spec, windows, num_frames, pixel_spacing=None):
        """Class probabilities averaged over the windows (and each window's); the label
        (multi-class: the most probable; multi-label: every class at 0.5 or more)."""
        multilabel = spec.kind == "multilabel"
        window_probs = torch.sigmoid(outputs) if multilabel else torch.softmax(outputs, dim=-1)  # [W, C]
        probs = window_probs.mean(dim=0).numpy().astype(np.float64)
        pred = {"classes": list(spec.classes), "probabilities": dict(zip(spec.classes, map(float, probs))),
                "window_probabilities": [[round(float(v), 5) for v in row] for row in window_probs.numpy()]}
        if multilabel:
            pred.update(labels=[c for c, p in zip(spec.classes, probs) if p >= 0.5], threshold=0.5)
        else:
            k = int(np.argmax(probs))
            pred.update(label=spec.classes[k], confidence=float(probs[k]))
        return pred, None

    def prediction_columns(self, prediction):
        if "labels" in prediction:  # multi-label
            return {"prediction": ";".join(prediction["labels"])}
        return {"prediction": prediction["label"], "confidence": round(prediction["confidence"], 5)}

    def evaluate(self, model, samples, options: EvalOptions, plots_dir: Optional[Path] = None):
        spec = model.spec
        multilabel = spec.kind == "multilabel"
        records, probs, truths, groups = [], [], [], []
        for sample, item, out in run_windows(model, samples, options):
            p = (torch.sigmoid(out) if multilabel else torch.softmax(out, dim=-1)).mean(dim=0).numpy()
            y = self.encode(sample, spec).numpy()
            probs.append(p)
            truths.append(y)
            groups.append(sample.group)
            rec = {"id": sample.id, "group": sample.group, "probs": [round(float(v), 5) for v in p]}
            if multilabel:
                rec.update(true=[c for c, v in zip(spec.classes, y) if v], pred=[c for c, v in zip(spec.classes, p) if v >= 0.5])
            else:
                rec.update(true=spec.classes[int(y)], pred=spec.classes[int(np.argmax(p))])
            records.append(rec)
        P, Y = np.stack(probs), np.stack(truths)
        metrics: dict = {"target": spec.target, "scheme": spec.scheme, "classes": spec.classes}
        metrics["video"] = self._metrics(Y, P, spec)
        by_group = defaultdict(list)
        for i, g in enumerate(groups):
            if g is not None:
                by_group[g].append(i)
        if by_group and any(len(v) > 1 for v in by_group.values()):
            GP = np.stack([P[idx].mean(axis=0) for idx in by_group.values()])
            if multilabel:
                GY = np.stack([Y[idx].max(axis=0) for idx in by_group.values()])
            else:  # a study's label: the most common label of its videos
                GY = np.array([Counter(Y[idx].tolist()).most_common(1)[0][0] for idx in by_group.values()])
            metrics["study"] = self._metrics(GY, GP, spec)
        if plots_enabled(plots_dir):
            self._plots(Y, P, spec, metrics["video"], Path(plots_dir))
        return metrics, records

    @staticmethod
    def _metrics(Y: np.ndarray, P: np.ndarray, spec: TaskSpec) -> dict:
        if spec.kind == "multilabel":
            return M.multilabel_metrics(Y, P, spec.classes)
        return M.classification_metrics(Y.astype(int), P, spec.classes)

    @staticmethod
    def _plots(Y, P, spec: TaskSpec, video_metrics: dict, folder: Path) -> None:
        from echofm.tasks.plots import confusion_plot, roc_plot

        if spec.kind == "multilabel":
            onehot = Y
        else:
            confusion_plot(video_metrics["confusion_matrix"], spec.classes, folder / f"{spec.task}_confusion_matrix.png")
            onehot = np.eye(len(spec.classes))[Y.astype(int)]
        roc_plot(onehot, P, spec.classes, folder / f"{spec.task}_roc.png")

    @staticmethod
    def main_metric(metrics):
        v = metrics["video"]
        if "balanced_accuracy" in v:
            return "video.balanced_accuracy", v["balanced_accuracy"], True
        return "video.macro_f1", v["macro_f1"], True
