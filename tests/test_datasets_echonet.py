"""EchoNet-Dynamic and EchoNet-Pediatric readers on small layouts written here."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from echofm.datasets import DatasetError, read_dataset
from echofm.datasets.clips import ClipDataset, VideoWindows
from echofm.windows import WindowSpec, window_clips, window_indices, window_starts
from echofm.datasets.echonet import read_echonet, trace_area, trace_mask
from echofm.datasets.pediatric import read_pediatric
from tests._downstream import beating_disc, rect_chords, write_avi

HEADER = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]


def write_echonet(root, videos, tracings, frames=12, size=32):
    """videos: [(name, ef, split, has_file)], tracings: [(name.avi, frame, rows)]."""
    (root / "Videos").mkdir(parents=True)
    with open(root / "FileList.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, (name, ef, split, has_file) in enumerate(videos):
            w.writerow([name, ef, 20.0, 50.0, size, size, 25, frames, split])
            if has_file:
                write_avi(root / "Videos" / f"{name}.avi", beating_disc(frames, size, float(ef or 50), seed=i))
    with open(root / "VolumeTracings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for name, frame, rows in tracings:
            for r in rows:
                w.writerow([name, *r, frame])


@pytest.fixture()
def echonet(tmp_path):
    root = tmp_path / "EchoNet-Dynamic"
    big, small = rect_chords(8, 24, 6, 26), rect_chords(12, 20, 10, 22)
    write_echonet(root, [("0XA", 60.5, "TRAIN", True), ("0XB", 40.0, "VAL", False), ("0XC", 55.0, "TEST", True),
                         ("0XD", 35.0, "TRAIN", True)],
                  # 0XA lists its large (ED) tracing first: ED/ES must come from the areas, not the order.
                  [("0XA.avi", 3, big), ("0XA.avi", 9, small), ("0XB.avi", 1, big), ("0XB.avi", 2, small),
                   ("0XC.avi", 4, big), ("0XD.avi", 7, small), ("0XD.avi", 2, big)])
    return root


def test_tracing_mask_is_the_polygon_of_the_chord_ends():
    rows = np.array(rect_chords(8, 24, 6, 26), float)
    mask = trace_mask(rows, 32, 32)
    assert mask[16, 16] and not mask[2, 2] and not mask[16, 28]
    # The rectangle 16 x 20 px: interior points only or with its boundary, never more.
    assert 15 * 19 <= mask.sum() <= 17 * 21
    assert trace_area(rows) == pytest.approx(16 * 20)
    # The long axis (row 0) is not a vertex: a long axis far outside changes nothing.
    moved = rows.copy()
    moved[0] = [0, 0, 31, 31]
    assert np.array_equal(trace_mask(moved, 32, 32), mask)


def test_echonet_reader_labels_splits_and_ed_es_by_area(echonet, caplog):
    index = read_echonet(echonet)
    ids = {s.id: s for s in index.samples}
    assert set(ids) == {"0XA", "0XC", "0XD"}  # 0XB's video is missing: skipped
    assert index.skipped[0][0] == "0XB" and "missing" in index.skipped[0][1]
    assert "skipping 0XB" in caplog.text
    a = ids["0XA"]
    assert a.split == "train" and a.targets["ef"] == pytest.approx(60.5)
    assert (a.meta["ed_frame"], a.meta["es_frame"]) == (3, 9)
    assert (ids["0XD"].meta["ed_frame"], ids["0XD"].meta["es_frame"]) == (2, 7)
    masks = a.load_masks(32, 32)
    assert set(masks) == {3, 9} and masks[3].sum() > masks[9].sum() and masks[3].max() == 1
    # One tracing: kept for EF (no ED/ES), skipped when tracings are required.
    assert "ed_frame" not in ids["0XC"].meta and ids["0XC"].masks_loader is None
    seg = read_dataset("echonet", echonet, task="segment")
    assert {s.id for s in seg.samples} == {"0XA", "0XD"}
    assert any(item == "0XC" and "1 traced frame" in why for item, why in seg.skipped)


def test_echonet_strict_mode_raises_on_the_missing_video(echonet):
    with pytest.raises(DatasetError, match="0XB.*missing"):
        read_echonet(echonet, strict=True)


def test_echonet_layout_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="FileList.csv: file not found"):
        read_echonet(tmp_path)
    (tmp_path / "FileList.csv").write_text("Name,EF\nx,1\n")
    with pytest.raises(DatasetError, match="missing column.*FileName"):
        read_echonet(tmp_path)


def test_echonet_clip_datasets(echonet):
    index = read_echonet(echonet, require_tracings=True)
    ds = ClipDataset(index.samples, WindowSpec(num_frames=4, frame_step=2), size=16, segmentation=True)
    item = ds[0]
    assert item["clips"].shape == (3, 4, 16, 16) and 0 <= item["clips"].min() and item["clips"].max() <= 1
    assert item["masks"].shape == (4, 16, 16)
    labelled = (item["masks"] != 255).flatten(1).all(1)
    assert labelled.sum() >= 1  # the window holds a traced frame
    windows = VideoWindows(index.samples, WindowSpec(num_frames=4, frame_step=2), size=16, segmentation=True)[0]
    assert window_clips(windows["video"], windows["indices"]).shape[1:] == (3, 4, 16, 16)
    covered = set(windows["indices"].flatten().tolist())
    assert covered == set(range(12))  # segmentation: every frame gets a prediction
    plain = VideoWindows(index.samples, WindowSpec(num_frames=4, frame_step=2), size=16)[0]
    assert set(plain["indices"][0].tolist()) == {0, 2, 4, 6} and plain["indices"][-1, -1] == 11
    assert set(windows["masks"]) == {3, 9}


def test_window_helpers_cover_the_video_and_clamp_short_ones():
    assert window_starts(20, WindowSpec(4, 2)) == [0, 7, 13]
    assert window_starts(5, WindowSpec(4, 2)) == [0]
    assert window_indices(5, WindowSpec(4, 2), 0).tolist() == [0, 2, 4, 4]


def test_pediatric_reader_folds_views_and_contours(tmp_path):
    for view, names in (("A4C", ["p1", "p2", "p3"]), ("PSAX", ["q1"])):
        folder = tmp_path / view
        (folder / "Videos").mkdir(parents=True)
        with open(folder / "FileList.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"])
            for i, n in enumerate(names):
                w.writerow([f"{n}.avi", "" if n == "p3" else 50 + i, "F", 5, 20, 110, [0, 8, 9][i % 3]])
                write_avi(folder / "Videos" / f"{n}.avi", beating_disc(10, 32, 50, seed=i))
        with open(folder / "VolumeTracings.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["FileName", "X", "Y", "Frame"])
            for n in names:
                for frame, half in ((2, 10), (6, 5)):
                    for x, y in ((16 - half, 16 - half), (16 + half, 16 - half), (16 + half, 16 + half),
                                 (16 - half, 16 + half)):
                        w.writerow([f"{n}.avi", x, y, frame])
    index = read_pediatric(tmp_path)
    ids = {s.id: s for s in index.samples}
    assert set(ids) == {"A4C/p1", "A4C/p2", "PSAX/q1"}  # p3 has an empty EF: skipped
    assert [why for _, why in index.skipped] == [f"empty EF in {tmp_path / 'A4C' / 'FileList.csv'}:4"]
    assert ids["A4C/p1"].split == "train" and ids["A4C/p2"].split == "val"
    assert ids["PSAX/q1"].targets["view"] == "PSAX"
    assert (ids["A4C/p1"].meta["ed_frame"], ids["A4C/p1"].meta["es_frame"]) == (2, 6)
    mask = ids["A4C/p1"].load_masks(32, 32)[2]
    assert 19 * 19 <= mask.sum() <= 21 * 21
    with pytest.raises(DatasetError, match="unknown EchoNet-Pediatric view"):
        read_pediatric(tmp_path, views=("PLAX",))
