"""`echofm predict`: fine-tuned task models on a real DICOM and an MP4, with a corrupt file in the batch.

The runs are trained for a couple of epochs on phantom data, so the predictions are not
meant to be right; the tests check what is written and that it is self-consistent.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from echofm.batch import input_id
from echofm.cli import main
from echofm.datasets import read_dataset
from echofm.io import read_clip
from echofm.phantom import PhantomConfig, generate_case, write_dataset
from echofm.phantom.export import write_video
from echofm.tasks import finetune, load_task_model
from echofm.tasks.engine import FinetuneConfig
from tests._downstream import TINY_ENCODER, save_tiny_model

MP4_FRAMES = 20
SIDE = TINY_ENCODER["img_size"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ybr_cine):
    root = tmp_path_factory.mktemp("predict")
    phantoms = PhantomConfig(size=64, num_frames=24, views=("A4C", "PLAX"))
    write_dataset(root / "views", "folder", 8, seed=1, config=phantoms)
    write_dataset(root / "echonet", "echonet", 8, seed=2, config=phantoms)  # the EchoNet layout is A4C only
    save_tiny_model(root / "init")
    quick = dict(epochs=2, batch_size=4, progress=False, validate=False)
    finetune(read_dataset("csv", root / "views", task="view", target="view"), root / "init",
             FinetuneConfig(task="view", target="view", **quick), root / "view_run")
    echonet_ef = read_dataset("echonet", root / "echonet", task="ef")
    finetune(echonet_ef, root / "init", FinetuneConfig(task="ef", **quick), root / "ef_run")
    finetune(read_dataset("echonet", root / "echonet", task="segment"), root / "init",
             FinetuneConfig(task="segment", mode="full", blr=8e-2, warmup_epochs=0, **quick), root / "seg_run")
    inputs = root / "inputs"
    inputs.mkdir()
    shutil.copy(ybr_cine, inputs / "cine.dcm")
    case = generate_case(7, PhantomConfig(size=64, num_frames=MP4_FRAMES, views=("A4C",)))
    write_video(inputs / "phantom.mp4", case.frames, case.fps, "libx264")
    (inputs / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 20)
    return root


def _outputs(out: Path) -> tuple[list[dict], list[dict], dict[int, dict]]:
    """index rows, failure rows, and the JSONs keyed by their frame count."""
    with open(out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    with open(out / "failures.csv") as f:
        failures = list(csv.DictReader(f))
    records = {}
    for row in rows:
        record = json.loads((out / row["json"]).read_text())
        records[record["frames"]] = record
    return rows, failures, records


def _check_failure(failures: list[dict], inputs: Path) -> None:
    assert len(failures) == 1 and failures[0]["id"] == input_id(inputs / "broken.mp4")
    assert "decode" in failures[0]["reason"] and str(inputs) not in failures[0]["reason"]


def test_view_probabilities_on_dicom_and_mp4(setup, tmp_path, capsys):
    out = tmp_path / "view"
    argv = ["predict", str(setup / "inputs"), "--model", str(setup / "view_run"), "--out", str(out), "--quiet"]
    assert main(argv) == 1  # broken.mp4 failed
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "done": 2, "skipped": 0, "failed": 1, "index": str(out / "index.csv"),
        "failures": str(out / "failures.csv")}
    rows, failures, records = _outputs(out)
    _check_failure(failures, setup / "inputs")
    assert sorted(records) == [MP4_FRAMES, 30]  # the MP4 and the 30-frame DICOM cine
    classes = load_task_model(setup / "view_run").spec.classes
    assert classes == ["A4C", "PLAX"]
    for record in records.values():
        pred = record["prediction"]
        assert record["task"] == "view" and record["kind"] == "multiclass" and record["size"] == SIDE
        assert "source" not in record  # paths are written only with --keep-paths
        assert list(pred["probabilities"]) == classes
        assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert pred["label"] == max(pred["probabilities"], key=pred["probabilities"].get)
        windows = np.array(pred["window_probabilities"])
        assert windows.shape == (record["windows"], len(classes)) == (len(record["window_starts"]), 2)
        assert np.allclose(windows.sum(1), 1.0, atol=1e-4)
        assert np.allclose(windows.mean(0), list(pred["probabilities"].values()), atol=1e-4)
        # Windows cover the whole video: back to back, the last one ending on the last frame.
        assert record["window_starts"][0] == 0
        assert record["window_starts"][-1] == record["frames"] - TINY_ENCODER["num_frames"]
    assert records[30]["fps"] == pytest.approx(30.0)  # from the DICOM's FrameTime
    assert {r["prediction"] for r in rows} <= set(classes)


def test_ef_value_is_the_mean_of_window_values(setup, tmp_path):
    out = tmp_path / "ef"
    assert main(["predict", str(setup / "inputs" / "phantom.mp4"), "--model", str(setup / "ef_run"),
                 "--out", str(out), "--quiet", "--keep-paths"]) == 0
    rows, failures, records = _outputs(out)
    assert not failures and len(rows) == 1
    assert rows[0]["source"] == records[MP4_FRAMES]["source"] == "phantom.mp4"
    pred = records[MP4_FRAMES]["prediction"]
    assert pred["unit"] == "%" and np.isfinite(pred["value"])
    assert len(pred["window_values"]) == records[MP4_FRAMES]["windows"] == 3  # 20 frames, windows of 8
    assert pred["value"] == pytest.approx(np.mean(pred["window_values"]), abs=1e-3)
    assert float(rows[0]["prediction"]) == pytest.approx(pred["value"], abs=1e-3)


def test_segmentation_masks_areas_and_overlay_video(setup, tmp_path):
    out = tmp_path / "seg"
    assert main(["predict", str(setup / "inputs"), "--model", str(setup / "seg_run"), "--out", str(out),
                 "--quiet", "--overlay-size", "96", "--allow-failures"]) == 0
    rows, failures, records = _outputs(out)
    _check_failure(failures, setup / "inputs")
    assert len(records) == 2
    for frames, record in records.items():
        pred = record["prediction"]
        assert pred["classes"] == ["background", "lv_cavity"]
        masks = np.load(out / pred["masks_file"])
        assert masks.dtype == np.uint8 and masks.shape == (frames, SIDE, SIDE)
        assert pred["mask_shape"] == list(masks.shape)
        assert set(np.unique(masks)) <= {0, 1}
        areas = (masks == 1).reshape(frames, -1).sum(1)
        assert pred["areas_px"]["lv_cavity"] == pred["lv_area_px"] == areas.tolist()
        ef = pred["ef_from_segmentation"]
        assert (ef["ed_frame"], ef["es_frame"]) == (int(np.argmax(areas)), int(np.argmin(areas)))
        assert (ef["ed_area"], ef["es_area"]) == (areas.max(), areas.min())
        video = read_clip(out / pred["overlay_video"])
        assert video.frames.shape[:3] == (frames, 96, 96)
        assert video.fps == pytest.approx(record["fps"], rel=1e-3)
    assert all(row["masks"] and row["overlay"] for row in rows)


def test_overlay_colours_the_masked_structures():
    from echofm.predict import overlay_frames

    frames = np.full((2, 16, 16), 100, np.uint8)
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[:, 4:8, 4:8] = 1  # LV cavity: red
    masks[1, 10:14, 10:14] = 3  # LA: blue
    video = overlay_frames(frames, masks, 32).astype(int)
    assert video.shape == (2, 32, 32, 3)
    assert (video[:, 0, 0] == 100).all()  # background untouched, grey
    lv = video[0, 10, 10]
    assert lv[0] > 150 and lv[1] < 100 and lv[2] < 100
    la = video[1, 24, 24]
    assert la[2] > 150 and la[0] < 100


def test_rerun_skips_done_inputs_and_redoes_deleted_ones(setup, tmp_path, capsys):
    out = tmp_path / "view"
    argv = ["predict", str(setup / "inputs"), "--model", str(setup / "view_run"), "--out", str(out), "--quiet"]

    def run(*extra) -> dict:
        assert main(argv + list(extra)) == 1  # broken.mp4 stays failed
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    first = run()
    assert (first["done"], first["failed"]) == (2, 1)
    again = run()
    assert (again["done"], again["skipped"], again["failed"]) == (0, 3, 1)
    rows, _, _ = _outputs(out)
    gone = out / rows[0]["json"]
    kept = out / rows[1]["json"]
    kept_mtime = kept.stat().st_mtime_ns
    gone.unlink()
    redo = run()
    assert (redo["done"], redo["skipped"]) == (1, 2)
    assert gone.exists() and kept.stat().st_mtime_ns == kept_mtime
    assert run("--retry-failed")["failed"] == 1  # tried again, still broken
    assert len(_outputs(out)[0]) == 2
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.tmp"))
    # Another model into the same folder would mix results: refused, with one clear line.
    assert main(["predict", str(setup / "inputs"), "--model", str(setup / "ef_run"), "--out", str(out), "--quiet"]) == 2
    assert "different model" in capsys.readouterr().err


def test_python_api_matches_the_command(setup, tmp_path):
    from echofm.predict import PredictConfig, predict_study

    model = load_task_model(setup / "view_run")
    result = predict_study(model, setup / "inputs" / "cine.dcm", PredictConfig())
    assert result.frames.shape == (30, SIDE, SIDE) and result.masks is None
    out = tmp_path / "one"
    assert main(["predict", str(setup / "inputs" / "cine.dcm"), "--model", str(setup / "view_run"),
                 "--out", str(out), "--quiet"]) == 0
    assert result.record["id"] == input_id(setup / "inputs" / "cine.dcm")
    saved = json.loads((out / f"{result.record['id']}.json").read_text())
    assert saved["prediction"]["probabilities"] == pytest.approx(result.record["prediction"]["probabilities"])
    with pytest.raises(ValueError, match="uint8"):
        from echofm.predict import predict_frames

        predict_frames(model, np.zeros((4, SIDE, SIDE), np.float32))
