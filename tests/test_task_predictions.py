"""Each task class turns a model's per-window outputs into what `echofm predict` reports,
and names the headline of its index row; predict.py itself has no per-task branches."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import echofm
from echofm.labels import LV_CAVITY, SEGMENTATION_CLASSES
from echofm.tasks import get_task
from echofm.tasks.adapter import TaskSpec


def test_regression_is_the_mean_of_the_windows():
    spec = TaskSpec(task="ef", kind="regression", target="EF")
    pred, masks = get_task("ef").summarise_prediction(torch.tensor([50.0, 60.0, 64.0]), spec, None, 30)
    assert masks is None and pred["value"] == pytest.approx(58.0) and pred["unit"] == "%"
    assert pred["window_values"] == [50.0, 60.0, 64.0]
    assert get_task("ef").prediction_columns(pred) == {"prediction": 58.0}


def test_classification_averages_window_probabilities():
    spec = TaskSpec(task="view", kind="multiclass", target="view", classes=["A2C", "A4C", "PLAX"])
    logits = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    pred, masks = get_task("view").summarise_prediction(logits, spec, None, 32)
    mean = torch.softmax(logits, dim=-1).mean(0)
    assert masks is None and pred["label"] == ["A2C", "A4C", "PLAX"][int(mean.argmax())]
    assert pred["probabilities"]["A4C"] == pytest.approx(float(mean[1]))
    assert sum(pred["probabilities"].values()) == pytest.approx(1.0)
    assert get_task("view").prediction_columns(pred)["prediction"] == pred["label"]
    multi = TaskSpec(task="disease", kind="multilabel", target="label", classes=["ar", "as"])
    pred, _ = get_task("disease").summarise_prediction(torch.tensor([[3.0, -3.0], [2.0, -1.0]]), multi, None, 16)
    assert pred["labels"] == ["ar"] and get_task("disease").prediction_columns(pred) == {"prediction": "ar"}


def test_segmentation_gives_every_frame_a_mask_and_the_lv_ef():
    classes = SEGMENTATION_CLASSES[:2]
    spec = TaskSpec(task="segment", kind="segmentation", target="masks", classes=classes)
    T, S = 6, 8
    windows = np.array([[0, 1, 2, 3], [2, 3, 4, 5]])
    radius = np.array([3.5, 3.0, 2.0, 1.5, 2.5, 3.5])  # the cavity shrinks to frame 3, then refills
    yy, xx = np.mgrid[:S, :S]
    logits = torch.zeros(len(windows), 2, windows.shape[1], S, S)
    for w, frames in enumerate(windows):
        for k, t in enumerate(frames):
            inside = torch.from_numpy(((yy - 3.5) ** 2 + (xx - 3.5) ** 2 <= radius[t] ** 2).astype(np.float32))
            logits[w, LV_CAVITY, k] = 8 * inside - 4
    task = get_task("segment")
    pred, masks = task.summarise_prediction(logits, spec, windows, T, pixel_spacing=(0.5, 0.5))
    assert masks.shape == (T, S, S) and masks.dtype == np.uint8
    areas = pred["areas_px"]["lv_cavity"]
    assert areas == [int((masks[t] == LV_CAVITY).sum()) for t in range(T)] and np.argmin(areas) == 3
    assert pred["areas_mm2"]["lv_cavity"][0] == pytest.approx(areas[0] * 0.25)
    ef = pred["ef_from_segmentation"]["ef"]
    assert ef is not None and 0 < ef < 100
    assert task.prediction_columns(pred) == {"prediction": round(ef, 3)}


def test_predict_module_has_no_per_task_branches():
    tree = ast.parse((Path(echofm.__file__).parent / "predict.py").read_text())
    compared = [node for node in ast.walk(tree) if isinstance(node, ast.Compare)
                for const in ast.walk(node) if isinstance(const, ast.Constant)
                and const.value in ("regression", "multiclass", "multilabel", "ef", "view", "disease")]
    assert not compared, [ast.unparse(node) for node in compared]
