"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from echofm.tasks import metrics as M
from echofm.tasks.ef import area_length_volume, ef_from_masks, long_axis_length


def test_regression_metrics_by_hand():
    m = M.regression_metrics([50, 60, 70], [52, 57, 70])
    assert m["mae"] == pytest.approx((2 + 3 + 0) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 9 + 0) / 3))
    # R2 = 1 - SS_res / SS_tot = 1 - 13 / 200
    assert m["r2"] == pytest.approx(1 - 13 / 200)
    assert m["bias"] == pytest.approx((2 - 3 + 0) / 3)
    assert M.regression_metrics([5, 5], [4, 6])["r2"] is None  # constant truth: undefined, not NaN


def test_classification_metrics_by_hand():
    y = [0, 0, 1, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    m = M.classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    # F1: a = 2*1*0.5/1.5 = 2/3; b: precision 1/2, recall 1 -> 2/3; c: 1.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    # AUROC of class a: positives {0.8, 0.3} vs negatives {0.2, 0.1}: all pairs ordered -> 1.
    assert m["auroc"]["a"] == pytest.approx(1.0)
    # class b: positive 0.7 vs negatives {0.1, 0.6, 0.2} -> 1.
    assert m["auroc"]["b"] == pytest.approx(1.0)


def test_auroc_of_an_absent_class_is_null():
    m = M.classification_metrics([0, 0, 1], np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0]]))
    assert m["auroc"]["2"] is None
    assert m["auroc_macro"] == pytest.approx(1.0)


def test_multilabel_metrics_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    p = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.1]])
    m = M.multilabel_metrics(y, p, ["x", "y"])
    assert m["subset_accuracy"] == pytest.approx(2 / 3)
    assert m["auroc"]["x"] == pytest.approx(1.0)
    assert m["auroc"]["y"] == pytest.approx(0.5)  # positives {0.8, 0.1} vs negative {0.2}: 1 of 2 pairs


def test_dice_iou_by_hand():
    truth = np.zeros((1, 4, 4), np.uint8)
    truth[0, :2, :2] = 1  # 4 px of structure 1
    pred = np.zeros_like(truth)
    pred[0, :2, :1] = 1  # 2 px, all inside
    pred[0, 3, 3] = 2  # a structure absent from the truth
    m = M.dice_iou(pred, truth, {1: "lv", 2: "myo", 3: "la"})
    assert m["dice"]["lv"] == pytest.approx(2 * 2 / (2 + 4))
    assert m["iou"]["lv"] == pytest.approx(2 / 4)
    assert m["dice"]["myo"] == 0.0
    assert m["dice"]["la"] is None
    ignored = truth.copy()
    ignored[0, 3, 3] = 255
    assert M.dice_iou(pred, ignored, {2: "myo"})["dice"]["myo"] is None


def test_ef_from_masks_uses_area_length_volumes():
    lv = np.zeros((3, 40, 40), bool)
    lv[0, 5:35, 10:30] = True  # 30 x 20 (largest: ED)
    lv[1, 10:30, 12:28] = True  # 20 x 16
    lv[2, 8:32, 11:29] = True
    assert long_axis_length(lv[0]) == pytest.approx(30.0)
    v_ed = 8 * 600**2 / (3 * math.pi * 30)
    v_es = 8 * 320**2 / (3 * math.pi * 20)
    assert area_length_volume(lv[0]) == pytest.approx(v_ed)
    est = ef_from_masks(lv)
    assert (est["ed_frame"], est["es_frame"]) == (0, 1)
    assert est["ef"] == pytest.approx(100 * (v_ed - v_es) / v_ed)
    assert ef_from_masks(lv, ed=0, es=2)["es_frame"] == 2
