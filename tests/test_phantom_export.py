"""Phantom data sets laid out as the public ones: EchoNet, CAMUS, DICOM, TMED-2, folder."""

import csv
import json
from collections import defaultdict

import numpy as np
import pytest

from echofm.cli import main
from echofm.phantom import PhantomConfig, write_dataset


@pytest.fixture(scope="module")
def echonet(tmp_path_factory):
    out = tmp_path_factory.mktemp("echonet")
    write_dataset(out, "echonet", 6, seed=3, config=PhantomConfig(views=("A4C",)), save_labels=True)
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_echonet_filelist(echonet):
    rows = _rows(echonet / "FileList.csv")
    assert list(rows[0].keys()) == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                                    "NumberOfFrames", "Split"]
    assert len(rows) == 6 and {r["Split"] for r in rows} <= {"TRAIN", "VAL", "TEST"}
    for r in rows:
        ef, esv, edv = float(r["EF"]), float(r["ESV"]), float(r["EDV"])
        assert abs(ef - 100.0 * (edv - esv) / edv) < 1e-6
        assert "." not in r["FileName"] and (echonet / "Videos" / f"{r['FileName']}.avi").exists()
        assert r["FrameHeight"] == r["FrameWidth"] == "112"


def test_echonet_video_reads_back(echonet):
    import av

    name = _rows(echonet / "FileList.csv")[0]["FileName"]
    with av.open(str(echonet / "Videos" / f"{name}.avi")) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(frames) == 48 and frames[0].shape == (112, 112)


def _shoelace(x, y):
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_echonet_tracings_reproduce_label_area(echonet):
    # Read the way EchoNet-Dynamic's dataset code does: first row of a frame is the long
    # axis; the polygon is X1/Y1 down the chords then X2/Y2 back up.
    traces = defaultdict(lambda: defaultdict(list))
    order = defaultdict(list)
    with open(echonet / "VolumeTracings.csv") as f:
        assert f.readline().strip().split(",") == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
        for line in f:
            fn, x1, y1, x2, y2, frame = line.strip().split(",")
            if int(frame) not in traces[fn]:
                order[fn].append(int(frame))
            traces[fn][int(frame)].append([float(x1), float(y1), float(x2), float(y2)])
    truth = {t["name"]: t for t in map(json.loads, open(echonet / "phantom_truth.jsonl"))}
    assert len(traces) == 6
    for fn, frames in traces.items():
        assert fn.endswith(".avi")
        name = fn[:-4]
        small, large = order[fn][0], order[fn][-1]
        assert large == truth[name]["traced_ed"] and small == truth[name]["traced_es"]
        labels = np.load(echonet / "labels" / f"{name}.npz")["labels"]
        areas = {}
        for frame, rows in frames.items():
            t = np.array(rows)
            assert t.shape == (21, 4)
            x = np.concatenate([t[1:, 0], t[1:, 2][::-1]])
            y = np.concatenate([t[1:, 1], t[1:, 3][::-1]])
            areas[frame] = _shoelace(x, y)
            labelled = float((labels[frame] == 1).sum())
            assert abs(areas[frame] - labelled) / labelled < 0.04, (fn, frame, areas[frame], labelled)
        assert areas[large] > areas[small]


@pytest.fixture(scope="module")
def camus(tmp_path_factory):
    out = tmp_path_factory.mktemp("camus")
    write_dataset(out, "camus", 2, seed=5, config=PhantomConfig(size=128, views=("A2C", "A4C")))
    return out


def test_camus_layout_and_readback(camus):
    import nibabel as nib

    pdir = camus / "database_nifti" / "patient0001"
    for tag in ("2CH", "4CH"):
        info = dict(line.split(": ", 1) for line in (pdir / f"Info_{tag}.cfg").read_text().splitlines())
        assert set(info) == {"ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"}
        n = int(info["NbFrame"])
        assert info["ED"] == "1" and int(info["ES"]) == n
        seq = nib.load(pdir / f"patient0001_{tag}_half_sequence.nii.gz")
        gt = np.asarray(nib.load(pdir / f"patient0001_{tag}_half_sequence_gt.nii.gz").dataobj)
        assert seq.shape == (128, 128, n) and gt.shape == (128, 128, n)
        assert set(np.unique(gt)) <= {0, 1, 2, 3} and {1, 2, 3} <= set(np.unique(gt))
        lv = (gt == 1).sum(axis=(0, 1))
        assert lv[0] == lv.max() and lv[-1] == lv.min()
        ed = np.asarray(nib.load(pdir / f"patient0001_{tag}_ED.nii.gz").dataobj)
        assert np.array_equal(ed, np.asarray(seq.dataobj)[..., 0])
        es_gt = np.asarray(nib.load(pdir / f"patient0001_{tag}_ES_gt.nii.gz").dataobj)
        assert np.array_equal(es_gt, gt[..., -1])
        assert abs(seq.header.get_zooms()[0] - seq.header.get_zooms()[1]) < 1e-6
    splits = [(camus / "database_split" / f"subgroup_{s}.txt").read_text().split()
              for s in ("training", "validation", "testing")]
    assert sorted(sum(splits, [])) == ["patient0001", "patient0002"]


def test_dicom_readback(tmp_path):
    import pydicom

    write_dataset(tmp_path, "dicom", 2, seed=2, config=PhantomConfig(size=128, num_frames=12, fps=25.0))
    truth = [json.loads(line) for line in open(tmp_path / "phantom_truth.jsonl")]
    ds = pydicom.dcmread(tmp_path / "IMG00001.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1" and ds.Modality == "US"
    assert int(ds.NumberOfFrames) == 12 and abs(float(ds.FrameTime) - 40.0) < 1e-3
    px = ds.pixel_array
    assert px.shape == (12, ds.Rows, ds.Columns, 3)
    reg = ds.SequenceOfUltrasoundRegions[0]
    y0, x0, y1, x1 = truth[0]["region_yxyx"]
    assert (reg.RegionLocationMinY0, reg.RegionLocationMinX0, reg.RegionLocationMaxY1, reg.RegionLocationMaxX1) \
        == (y0, x0, y1, x1)
    assert abs(reg.PhysicalDeltaX * 10 - truth[0]["pixel_spacing_mm"][1]) < 1e-6
    assert str(ds.PatientName) == truth[0]["identifiers"]["PatientName"]
    # Burned-in text and ECG lie outside the region; the region holds the grey cine.
    outside = px[:, :y0].max() > 0 and px[:, y1 + 1:].max() > 0
    inside = px[:, y0:y1 + 1, x0:x1 + 1]
    assert outside and np.array_equal(inside[..., 0], inside[..., 1])


def test_tmed_layout(tmp_path):
    write_dataset(tmp_path, "tmed", 3, seed=1, config=PhantomConfig(size=64))
    rows = _rows(tmp_path / "TMED2_fold0_labeledpart.csv")
    assert rows and set(rows[0]) >= {"query_key", "view_label", "diagnosis_label"}
    for r in rows:
        assert (tmp_path / "labeled" / r["query_key"]).exists()
        assert r["view_label"] in {"A4C", "A2C", "PLAX", "PSAX"}
        assert r["diagnosis_label"] in {"no_AS", "mild_AS", "moderate_AS", "severe_AS"}
    studies = defaultdict(set)
    for r in rows:
        studies[r["query_key"].rsplit("_", 1)[0]].add(r["diagnosis_label"])
    assert len(studies) == 3 and all(len(v) == 1 for v in studies.values())


def test_cli_folder(tmp_path, capsys):
    import av

    rc = main(["synth", "--out", str(tmp_path), "--format", "folder", "--n", "2", "--seed", "4", "--frames", "16",
               "--views", "psax,plax", "--no-progress", "--save-labels"])
    assert rc == 0
    rows = _rows(tmp_path / "labels.csv")
    assert len(rows) == 2 and {r["view"] for r in rows} <= {"PSAX", "PLAX"}
    with av.open(str(tmp_path / rows[0]["filename"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 16
    assert np.load(tmp_path / "labels" / "clip_00000.npz")["labels"].shape == (16, 112, 112)


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--views", "A5C", "--n", "1", "--no-progress"]) == 2
    assert "views" in capsys.readouterr().err


def test_workers_do_not_change_output(tmp_path):
    cfg = PhantomConfig(size=64, num_frames=8)
    write_dataset(tmp_path / "a", "folder", 2, seed=9, config=cfg, save_labels=True)
    write_dataset(tmp_path / "b", "folder", 2, seed=9, config=cfg, save_labels=True, workers=2)
    for i in range(2):
        a = np.load(tmp_path / "a" / "labels" / f"clip_{i:05d}.npz")["labels"]
        b = np.load(tmp_path / "b" / "labels" / f"clip_{i:05d}.npz")["labels"]
        assert np.array_equal(a, b)
    assert (tmp_path / "a" / "labels.csv").read_text() == (tmp_path / "b" / "labels.csv").read_text()
