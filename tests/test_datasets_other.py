"""TMED-2, EchoNet-LVH and the CSV manifest readers on small layouts written here."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from echofm.datasets import DatasetError, read_dataset
from echofm.datasets.base import load_video
from echofm.datasets.tmed import read_tmed, study_of
from tests._downstream import beating_disc, write_avi


def test_tmed_reader_studies_splits_and_skips(tmp_path):
    img_dir = tmp_path / "view_and_diagnosis_labeled_set" / "labeled"
    img_dir.mkdir(parents=True)
    rows = [("101s1_0.png", "PLAX", "mild_AS", "train"), ("101s1_1.png", "A4C", "mild_AS", "train"),
            ("102s1_0.png", "PSAX", "no_AS", "test"), ("103s1_0.png", "", "severe_AS", "val"),
            ("104s1_0.png", "A2C", "moderate_AS", "train")]
    for key, *_ in rows[:4]:  # 104s1_0.png is listed but not on disk
        Image.fromarray(np.full((20, 24), 90, np.uint8)).save(img_dir / key)
    csv_path = tmp_path / "DEV479" / "TMED2_fold0_labeledpart.csv"
    csv_path.parent.mkdir()
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query_key", "view_label", "diagnosis_label", "SourceFolder", "diagnosis_classifier_split",
                    "view_classifier_split"])
        for key, view, diag, split in rows:
            w.writerow([key, view, diag, "labeled", split, split])
    views = read_tmed(tmp_path, target="view")
    assert [s.id for s in views.samples] == ["101s1_0.png", "101s1_1.png", "102s1_0.png"]
    reasons = dict(views.skipped)
    assert "empty view_label" in reasons["103s1_0.png"] and "no image" in reasons["104s1_0.png"]
    assert views.samples[0].group == "101s1" and views.samples[2].split == "test"
    diagnosis = read_dataset("tmed", tmp_path, task="disease")
    assert {s.id for s in diagnosis.samples} == {"101s1_0.png", "101s1_1.png", "102s1_0.png", "103s1_0.png"}
    frames, _ = load_video(views.samples[0].path)
    assert frames.shape == (1, 20, 24) and frames.dtype == np.uint8
    assert study_of("1234s1_17.png") == "1234s1"


def test_lvh_reader_gathers_measurements_per_video(tmp_path):
    write_avi(tmp_path / "Batch1" / "0XAA.avi", beating_disc(6, 32, 50))
    write_avi(tmp_path / "Batch3" / "0XBB.avi", beating_disc(6, 32, 50))
    with open(tmp_path / "MeasurementsList.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "HashedFileName", "Calc", "CalcValue", "Frame", "X1", "X2", "Y1", "Y2", "split"])
        w.writerow([0, "0XAA", "IVSd", 1.1, 3, 1, 2, 3, 4, "train"])
        w.writerow([1, "0XAA", "LVPWd", 0.9, 3, 1, 2, 3, 4, "train"])
        w.writerow([2, "0XBB", "IVSd", 1.4, 5, 1, 2, 3, 4, "val"])
        w.writerow([3, "0XCC", "IVSd", 1.2, 5, 1, 2, 3, 4, "test"])  # no video
        w.writerow([4, "0XCC", "LVIDd", 4.2, 5, 1, 2, 3, 4, "test"])
        w.writerow([5, "0XBB", "LVIDd", "", 5, 1, 2, 3, 4, "val"])  # empty value
    index = read_dataset("lvh", tmp_path)
    ids = {s.id: s for s in index.samples}
    assert ids["0XAA"].targets == {"IVSd": 1.1, "LVPWd": 0.9} and ids["0XBB"].split == "val"
    assert ids["0XBB"].path.parent.name == "Batch3"
    assert [item for item, _ in index.skipped].count("0XCC") == 1  # one skip per missing video
    assert any("empty Calc" in why for _, why in index.skipped)


def test_manifest_reader_any_source(tmp_path):
    write_avi(tmp_path / "clips" / "a.avi", beating_disc(6, 32, 50))
    np.save(tmp_path / "clips" / "b.npy", np.zeros((4, 16, 16), np.uint8))
    (tmp_path / "manifest.csv").write_text(
        "path,label,split,group\nclips/a.avi,AS;AR,train,s1\nclips/b.npy,AR,test,s1\n"
        "clips/missing.avi,AS,train,\nclips/a.avi,,val,\n")
    index = read_dataset("csv", tmp_path)
    assert [s.id for s in index.samples] == ["clips/a.avi", "clips/b.npy"]
    assert index.samples[0].targets == {"label": "AS;AR"} and index.samples[1].split == "test"
    assert index.samples[0].group == "s1"
    assert len(index.skipped) == 2
    frames, fps = index.samples[0].load_frames()
    assert frames.shape == (6, 32, 32) and fps == pytest.approx(25.0)
    with pytest.raises(DatasetError, match="missing.avi is missing"):
        read_dataset("csv", tmp_path / "manifest.csv", strict=True)
    with pytest.raises(DatasetError, match="missing column"):
        read_dataset("csv", tmp_path, target="severity")
    (tmp_path / "empty.csv").write_text("path,label\nclips/a.avi,\n")
    with pytest.raises(DatasetError, match="no usable manifest items"):
        read_dataset("csv", tmp_path / "empty.csv")
    # The phantom "folder" layout names its files in a `filename` column of labels.csv.
    (tmp_path / "alias").mkdir()
    (tmp_path / "alias" / "labels.csv").write_text("filename,view\n../clips/a.avi,A4C\n")
    assert read_dataset("csv", tmp_path / "alias", target="view").samples[0].targets == {"view": "A4C"}
    with pytest.raises(DatasetError, match="unknown dataset format"):
        read_dataset("kaggle", tmp_path)
