"""The study pipeline on real parts: a phantom exam and the real A4C cine of pydicom-data
through `echofm study` with a small phantom-trained bundle; SEG and SR read back."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from echofm.cli import main
from tests._downstream import TINY_ENCODER

hd = pytest.importorskip("highdicom")


@pytest.fixture(scope="session")
def study_out(tmp_path_factory, study_dir, bundle_dir) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    assert main(["study", str(study_dir), "--bundle", str(bundle_dir), "--out", str(out), "--quiet"]) == 0
    return out


def _sources(study_dir: Path) -> dict[str, pydicom.Dataset]:
    return {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in sorted(study_dir.rglob("*.dcm")))}


def test_synth_study_is_one_patients_exam(study_dir):
    datasets = list(_sources(study_dir).values())
    truth = json.loads((study_dir / "study_truth.json").read_text())
    clips = [json.loads(line) for line in (study_dir / "phantom_truth.jsonl").read_text().splitlines()]
    assert len(datasets) == 4
    assert {ds.StudyInstanceUID for ds in datasets} == {truth["study_instance_uid"]}
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 4
    assert len({(str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) for ds in datasets}) == 1
    assert [c["view"] for c in clips] == ["A4C", "A2C", "PLAX", "PSAX"]
    # One heart: every clip's patient parameters are the same, so the nominal EF is one value.
    assert len({c["params"]["patient"]["ef"] for c in clips}) == 1
    assert clips[0]["params"]["patient"]["ef"] == pytest.approx(truth["ef"])
    assert all(ds.Modality == "US" and int(ds.NumberOfFrames) == 45 for ds in datasets)


def test_beats_follow_the_phantom_truth():
    from echofm.phantom import PhantomConfig, generate_case
    from echofm.study.beats import lv_beats

    case = generate_case(0, PhantomConfig(size=96, num_frames=90, fps=30.0, views=("A4C",)), view="A4C")
    result = lv_beats(case.labels == 1, 30.0 * 60.0 / case.truth["heart_rate"])
    assert result["n_beats"] >= 3
    for beat in result["beats"]:
        assert min(abs(beat["es"] - es) for es in case.truth["es_frames"]) <= 1
        assert min(abs(beat["ed"] - ed) for ed in case.truth["ed_frames"]) <= 1
    assert result["ef_mean"] == pytest.approx(case.truth["ef"], abs=5.0)
    assert result["ef_sd"] == pytest.approx(np.std([b["ef"] for b in result["beats"]], ddof=1), abs=1e-3)


def test_study_outputs_agree_and_refer_to_their_sources(study_out, study_dir):
    summary = json.loads((study_out / "study.json").read_text())
    sources = _sources(study_dir)
    [study] = summary["studies"]
    assert study["clips_found"] == study["clips_analysed"] == 4
    assert study["study_instance_uid"] == next(iter(sources.values())).StudyInstanceUID
    assert summary["bundle"]["phantom"] is True and "not a clinical model" in summary["bundle"]["card"].lower()
    clips = study["clips"]
    m = study["measurements"]
    apical = [c for c in clips if c["view"]["label"] in ("A4C", "A2C")]
    for c in clips:
        assert sum(c["view"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert c["routed_to"] == (["segment", "ef"] if c in apical else
                                  ["disease"] if c["view"]["label"] in ("PLAX", "PSAX") else [])
        assert (study_out / c["files"]["first_frame"]).is_file()
    # Study EF: the view-confidence-weighted mean of the apical clips' beat-by-beat EF.
    pairs = [(c["lv"]["ef_mean"], c["view"]["confidence"]) for c in apical if c["lv"]["ef_mean"] is not None]
    if pairs:
        v, w = np.array(pairs).T
        assert m["ef"]["value"] == pytest.approx(float((v * w).sum() / w.sum()), abs=1e-3)
        assert sorted(m["ef"]["clips"]) == sorted(c["clip_id"] for c in apical if c["lv"]["ef_mean"] is not None)
    else:
        assert "ef" not in m
    # SEG per segmented cine: refers to its source instance and frames, masks on the source grid.
    for c in apical:
        if "seg" not in c["files"]:
            continue
        seg = hd.seg.segread(study_out / c["files"]["seg"])
        src = sources[c["sop_instance_uid"]]
        assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert (seg.Rows, seg.Columns) == (src.Rows, src.Columns)
        frames = [int(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                  for f in seg.PerFrameFunctionalGroupsSequence]
        areas = c["lv"]["area_px"]
        assert frames == [t + 1 for t, a in enumerate(areas) if a > 0]
        assert seg.SegmentSequence[0].SegmentLabel.startswith("Left ventricle cavity")
        assert str(seg.PatientName) == str(src.PatientName) and seg.StudyInstanceUID == src.StudyInstanceUID
        assert "InstitutionName" not in seg and "OperatorsName" not in seg
    # SR: its EF is study.json's, each clip group refers to the clip's instance.
    sr = pydicom.dcmread(study_out / study["sr"])
    text = json.dumps(sr.to_json_dict())
    for sop in (c["sop_instance_uid"] for c in clips):
        assert sop in text
    values = _sr_numbers(sr)
    if "ef" in m:
        assert m["ef"]["value"] in values["Left Ventricular Ejection Fraction by US"]
    if "heart_rate" in m:
        assert m["heart_rate"]["value"] in values["Heart rate"]
    assert str(sr.PatientName) == str(next(iter(sources.values())).PatientName)
    assert "InstitutionName" not in sr


def _sr_numbers(sr) -> dict[str, list[float]]:
    """Every numeric content item of an SR by its concept name."""
    found: dict[str, list[float]] = {}

    def walk(items):
        for item in items:
            if item.ValueType == "NUM":
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                found.setdefault(name, []).append(float(item.MeasuredValueSequence[0].NumericValue))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def test_outputs_hold_no_identifiers(study_out, study_dir):
    truth = json.loads((study_dir / "study_truth.json").read_text())
    ident = truth["identifiers"]
    clips = [json.loads(line) for line in (study_dir / "phantom_truth.jsonl").read_text().splitlines()]
    secrets = [ident["PatientName"], ident["PatientName"].split("^")[0], ident["PatientID"], ident["PatientBirthDate"],
               ident["InstitutionName"]] + clips[0]["burned_in_text"]
    for path in [study_out / "study.json", study_out / "report.html"] + list((study_out / "clips").rglob("*.json")):
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {path.name}"
    # The first frame shown is the preprocessed one: cropped to the sector, whose box starts
    # below the rows where the scanner burned the text in.
    import cv2

    from echofm.inference import load_study

    summary = json.loads((study_out / "study.json").read_text())
    by_sop = {c["sop_instance_uid"]: c for c in clips}
    for record in summary["studies"][0]["clips"]:
        truth = by_sop[record["sop_instance_uid"]]
        image = cv2.imread(str(study_out / record["files"]["first_frame"]), cv2.IMREAD_GRAYSCALE)
        clip = load_study(study_dir / f"{truth['name']}.dcm", image.shape[0])
        assert clip.sector_box[0] >= truth["region_yxyx"][0]
        assert np.array_equal(image, clip.frames[0])


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_seg_and_sr_pass_dciodvfy(study_out):
    files = list((study_out / "dicom").rglob("*.dcm"))
    assert any(f.name == "SR.dcm" for f in files)
    for f in files:
        result = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"


def test_rerun_skips_done_clips(study_out, study_dir, bundle_dir, capsys):
    before = json.loads((study_out / "study.json").read_text())
    assert main(["study", str(study_dir), "--bundle", str(bundle_dir), "--out", str(study_out), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == 0 and report["skipped"] == 4 and report["failed"] == 0
    after = json.loads((study_out / "study.json").read_text())
    assert after["studies"][0]["measurements"] == before["studies"][0]["measurements"]


def test_messy_folder_loses_no_good_clip(tmp_path, study_dir, bundle_dir, lossless_still, capsys):
    src = tmp_path / "export"
    shutil.copytree(study_dir, src)
    good = sorted(src.rglob("*.dcm"))
    ct = pydicom.dcmread(good[0])
    ct.Modality, ct.SOPInstanceUID = "CT", pydicom.uid.generate_uid()
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    (src / "other").mkdir()
    ct.save_as(src / "other" / "ct.dcm")
    data = good[1].read_bytes()
    truncated = pydicom.dcmread(good[1])
    truncated.SOPInstanceUID = truncated.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    truncated.save_as(src / "other" / "cut.dcm")
    cut = (src / "other" / "cut.dcm").read_bytes()
    (src / "other" / "cut.dcm").write_bytes(cut[:len(cut) // 2])
    (src / "other" / "notes.txt").write_text("not an image\n")
    shutil.copy(lossless_still, src / "other" / "still.dcm")
    assert len(data) > 0
    out = tmp_path / "out"
    args = ["study", str(src), "--bundle", str(bundle_dir), "--out", str(out), "--quiet", "--keep-paths"]
    assert main(args) == 1  # a clip failed: the exit status says so
    capsys.readouterr()
    assert main(args + ["--allow-failures"]) == 0
    summary = json.loads((out / "study.json").read_text())
    good_study = [s for s in summary["studies"] if s["clips_analysed"]]
    assert [s["clips_analysed"] for s in good_study] == [4]
    kinds = {x["file"]: x["kind"] for x in summary["not_analysed"]}
    assert kinds["other/ct.dcm"] == "not_echo"
    assert kinds["other/notes.txt"] == "not_dicom"
    assert kinds["other/still.dcm"] == "single_frame"
    [failure] = summary["failed"]
    assert failure["source"] == "other/cut.dcm" and "truncated" in failure["reason"]
    assert str(src) not in (out / "study.json").read_text()
    # Without --keep-paths files are named by a hash, and no reason names the path.
    out2 = tmp_path / "out2"
    assert main(args[:-1] + ["--out", str(out2), "--allow-failures"]) == 0
    text = (out2 / "study.json").read_text()
    assert "cut.dcm" not in text and "notes.txt" not in text and "export" not in text


def test_zip_source_and_unsafe_zip(tmp_path, study_dir, bundle_dir):
    from echofm.errors import EchoFMError
    from echofm.study.scan import extract_zip

    archive = tmp_path / "exam.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(study_dir.rglob("*.dcm")):
            zf.write(p, f"EXPORT/{p.relative_to(study_dir)}")
    out = tmp_path / "out"
    assert main(["study", str(archive), "--bundle", str(bundle_dir), "--out", str(out), "--quiet", "--no-dicom"]) == 0
    assert json.loads((out / "study.json").read_text())["studies"][0]["clips_analysed"] == 4
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(EchoFMError, match="outside the archive"):
        extract_zip(evil, tmp_path / "x")
    assert not (tmp_path / "escape.txt").exists()


def test_deidentify_replaces_the_patient_module(tmp_path, study_dir, bundle_dir):
    out = tmp_path / "out"
    assert main(["study", str(study_dir), "--bundle", str(bundle_dir), "--out", str(out), "--quiet",
                 "--deidentify"]) == 0
    sources = _sources(study_dir)
    src = next(iter(sources.values()))
    summary = json.loads((out / "study.json").read_text())
    [study] = summary["studies"]
    assert study["study_instance_uid"] != src.StudyInstanceUID
    for f in (out / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        assert str(ds.PatientName) != str(src.PatientName) and ds.PatientID != src.PatientID
        assert ds.get("PatientBirthDate", "") == "" and ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID == study["study_instance_uid"]
        for sop in sources:
            assert sop not in json.dumps(ds.to_json_dict())


def test_real_a4c_cine_through_the_study(tmp_path, color3d_cine, bundle_dir):
    out = tmp_path / "out"
    assert main(["study", str(color3d_cine), "--bundle", str(bundle_dir), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "study.json").read_text())
    [study] = summary["studies"]
    [clip] = study["clips"]
    src = pydicom.dcmread(color3d_cine, stop_before_pixels=True)
    assert clip["frames"] == int(src.NumberOfFrames) and clip["sop_instance_uid"] == src.SOPInstanceUID
    sr = pydicom.dcmread(out / study["sr"])
    assert src.SOPInstanceUID in json.dumps(sr.to_json_dict())
    assert sr.StudyInstanceUID == src.StudyInstanceUID


def test_seg_of_the_real_cine_round_trips(tmp_path, color3d_cine):
    """A mask made on the preprocessed frames goes back onto the source grid and into a
    SEG that highdicom reads back frame for frame."""
    from echofm.inference import load_study
    from echofm.io import read_clip
    from echofm.study.deid import reference_header
    from echofm.study.dicom_out import write_lv_seg
    from echofm.study.pipeline import to_source_grid

    raw = read_clip(color3d_cine)
    clip = load_study(color3d_cine, 64)
    masks = np.zeros((clip.num_frames, 64, 64), np.uint8)
    masks[::3, 20:40, 24:44] = 1  # every third frame
    grid = to_source_grid(masks, clip.sector_box, raw.frames.shape[1:3])
    y0, x0, y1, x1 = clip.sector_box
    assert grid[:, :y0].max() == 0 and grid[:, y1:].max() == 0 and grid[0].sum() > 0
    header = reference_header(color3d_cine)
    path = write_lv_seg(tmp_path / "seg.dcm", header, grid.astype(bool), hd.UID(), 901)
    seg = hd.seg.segread(path)
    assert seg.NumberOfFrames == len(range(0, clip.num_frames, 3))
    pixels = seg.pixel_array  # [frames, R, C]
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source_frame = int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber) - 1
        assert source_frame == 3 * k
        assert np.array_equal(pixels[k].astype(bool), grid[source_frame].astype(bool))


def test_bundle_create_checks_roles(tmp_path, bundle_dir, capsys):
    from echofm.errors import EchoFMError
    from echofm.study import create_bundle, load_bundle

    out = tmp_path / "b2"
    assert main(["bundle", "create", "--view", str(bundle_dir / "view"), "--segment", str(bundle_dir / "segment"),
                 "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert bundle.roles == ["view", "segment"]
    entry = bundle.manifest["models"]["view"]
    assert entry["contract"]["num_frames"] == TINY_ENCODER["num_frames"] and entry["training_data"]["data"]["train"] > 0
    assert entry["metrics"]["main_metric"]["name"] == "video.balanced_accuracy"
    with pytest.raises(EchoFMError, match="segment.*view|view.*segment"):
        create_bundle(tmp_path / "b3", {"view": bundle_dir / "segment", "ef": bundle_dir / "ef"})
    with pytest.raises(EchoFMError, match="bundle.json"):
        load_bundle(tmp_path)


def test_dicomdir_lists_the_study(tmp_path, study_dir):
    """A DICOMDIR names its files: those are the ones scanned, grouped by study and series."""
    from pydicom.fileset import FileSet

    from echofm.study.scan import scan

    fs = FileSet()
    for p in sorted(study_dir.rglob("*.dcm")):
        fs.add(p)
    fs.write(tmp_path / "media")
    (tmp_path / "media" / "stray.dcm").write_bytes(next(study_dir.rglob("*.dcm")).read_bytes())  # not listed
    inventory = scan(tmp_path / "media" / "DICOMDIR", tmp_path / "x")
    assert len(inventory.instances) == 4 and not inventory.listed
    [series] = inventory.studies.values()
    assert len(series) == 4
    # The folder as a whole: the stray copy is found too, as a duplicate of its SOP instance.
    folder = scan(tmp_path / "media", tmp_path / "y")
    assert len(folder.instances) == 4 and [x.kind for x in folder.listed] == ["duplicate"]


def test_study_speed_benchmark_runs_at_toy_size(bundle_dir, capsys):
    """benchmarks/study_speed.py end to end on a 2-clip exam (no speed asserted)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "study_speed.py"
    spec = importlib.util.spec_from_file_location("study_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--bundle", str(bundle_dir), "--clips", "2", "--size", "64", "--frames", "24"])
    assert report["analysed"] == 2 and report["failed"] == 0
    assert {"read", "preprocess", "view", "phase", "write"} <= set(report["stage_s_per_clip"])
    assert '"s_per_clip"' in capsys.readouterr().out


def test_ef_regressor_beat_by_beat_in_json_and_sr(study_out):
    """Each apical clip's regressor EF is one value per beat (ED to the next ED of the LV
    area curve), with mean and spread, beside the segmentation's; the SR holds them."""
    summary = json.loads((study_out / "study.json").read_text())
    [study] = summary["studies"]
    apical = [c for c in study["clips"] if "ef" in c["routed_to"]]
    assert apical
    sr_values = _sr_numbers(pydicom.dcmread(study_out / study["sr"]))["Left Ventricular Ejection Fraction by US"]
    for c in apical:
        by_beat = c["ef_regressor_beats"]
        assert by_beat["beats_from"] == "LV area curve"
        assert c["ef_regressor"] == by_beat["ef_mean"]
        assert by_beat["n_beats"] == len(by_beat["beats"]) == len(c["lv"]["ed_to_ed"])
        if by_beat["n_beats"]:
            efs = [b["ef"] for b in by_beat["beats"]]
            assert [[b["ed"], b["next_ed"]] for b in by_beat["beats"]] == c["lv"]["ed_to_ed"]
            assert by_beat["ef_mean"] == pytest.approx(np.mean(efs), abs=1e-3)
            for b in by_beat["beats"]:
                assert 0 <= b["window"][0] <= b["window"][1] < c["frames"]
                assert b["ef"] in sr_values
        else:
            assert "no whole beat" in by_beat["note"]
        assert c["ef_regressor"] in sr_values
    assert study["measurements"]["ef_regressor"]["value"] in sr_values


def test_ef_by_beat_runs_one_window_per_beat(bundle_dir, study_dir):
    """ef_by_beat's EF of each beat is the regressor's output on the window centred on it."""
    from echofm.io import read_clip
    from echofm.predict import PredictConfig, run_model
    from echofm.study.bundle import load_bundle
    from echofm.study.pipeline import _preprocessed, ef_by_beat
    from echofm.windows import beat_window, spec_for

    model = load_bundle(bundle_dir).model("ef")
    clip = _preprocessed(read_clip(sorted(study_dir.rglob("*.dcm"))[0]), model, {})
    predict = PredictConfig(precision="fp32")
    cycles = [[2, 20], [20, 40]]
    result = ef_by_beat(model, clip, cycles, predict)
    spec = spec_for(model.contract, clip.fps)
    windows = np.stack([beat_window(len(clip.frames), spec, a, b) for a, b in cycles])
    want = run_model(model, clip.frames, windows, precision="fp32").reshape(-1).numpy()
    assert [b["ef"] for b in result["beats"]] == pytest.approx(want.tolist(), abs=1e-3)
    assert [b["window"] for b in result["beats"]] == [[int(w[0]), int(w[-1])] for w in windows]
    assert result["ef_sd"] == pytest.approx(float(np.std(want, ddof=1)), abs=1e-3)
    # No whole beat: the mean over the clip's windows, and a note.
    fallback = ef_by_beat(model, clip, [], predict)
    assert fallback["n_beats"] == 0 and "no whole beat" in fallback["note"] and fallback["ef_mean"] is not None


def test_each_model_preprocesses_as_its_contract_says(study_dir):
    """Side and sector masking follow each model's own input contract; models that agree
    share one preprocessed clip."""
    from types import SimpleNamespace

    from echofm.contract import InputContract
    from echofm.io import read_clip
    from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip
    from echofm.study.pipeline import _preprocessed

    raw = read_clip(sorted(study_dir.rglob("*.dcm"))[0])
    masked = SimpleNamespace(contract=InputContract(num_frames=8, image_size=32, mask_sector=True))
    masked_too = SimpleNamespace(contract=InputContract(num_frames=16, image_size=32, mask_sector=True, fps=15.0))
    whole = SimpleNamespace(contract=InputContract(num_frames=8, image_size=48, mask_sector=False))
    cache: dict = {}
    a, b, c = (_preprocessed(raw, m, cache) for m in (masked, masked_too, whole))
    assert a is b and len(cache) == 2
    assert a.frames.shape[1:3] == (32, 32) and c.frames.shape[1:3] == (48, 48)
    np.testing.assert_array_equal(c.frames, preprocess_clip(raw, PreprocessConfig(size=48, mask_sector=False)).frames)
    np.testing.assert_array_equal(a.frames, preprocess_clip(raw, PreprocessConfig(size=32, mask_sector=True)).frames)
    assert not np.array_equal(c.frames, preprocess_clip(raw, PreprocessConfig(size=48, mask_sector=True)).frames)


def test_ed_to_ed_keeps_whole_cycles_only():
    from echofm.study.beats import ed_to_ed

    assert ed_to_ed([40, 2, 21, 90], 20.0) == [[2, 21], [21, 40]]  # 40 -> 90 is two cycles: a missed ED
    assert ed_to_ed([5], 20.0) == []


def test_sr_holds_the_regressor_ef_of_each_beat(tmp_path, study_dir):
    """Per beat EF, mean and SD of the regressor, under its own algorithm name; valid DICOM."""
    from echofm.study.deid import reference_header
    from echofm.study.dicom_out import ClipMeasurements, write_measurement_report

    header = reference_header(sorted(study_dir.rglob("*.dcm"))[0], False, None)
    clip = ClipMeasurements(source=header, view="A4C", view_confidence=0.9, ef=55.0, ef_regressor=51.5,
                            heart_rate=70.0, ef_regressor_beats=[50.25, 52.75], ef_regressor_sd=1.768)
    path = write_measurement_report(tmp_path / "SR.dcm", header, [clip], {"ef": 55.0, "ef_regressor": 51.5},
                                    hd.UID(), 999)
    sr = pydicom.dcmread(path)
    efs = _sr_numbers(sr)["Left Ventricular Ejection Fraction by US"]
    assert sorted(efs) == sorted([55.0, 50.25, 52.75, 51.5, 1.768, 55.0, 51.5])
    text = json.dumps(sr.to_json_dict())
    assert "echofm EF regressor" in text and "Standard Deviation" in text
    if shutil.which("dciodvfy"):
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors


def test_clip_summary_reads_both_efs_beat_by_beat():
    """The one clip summary (report.html and the serve page) shows the regressor's EF beat
    by beat as it shows the segmentation's: mean, SD, each beat; one beat has no spread."""
    from echofm.study.report import clip_facts

    record = {"clip_id": "c" * 32, "frames": 90, "fps": 30.0,
              "view": {"label": "A4C", "confidence": 0.9, "probabilities": {"A4C": 0.9, "A2C": 0.1}},
              "phase": {"heart_rate_bpm": 60.0, "cycle_frames": 30.0},
              "lv": {"beats": [{"ef": 55.0}], "ef_mean": 55.0, "ef_sd": 0.0, "n_beats": 1},
              "ef_regressor": 50.0,
              "ef_regressor_beats": {"beats": [{"ef": 48.0}, {"ef": 52.0}], "ef_mean": 50.0, "ef_sd": 2.828,
                                     "n_beats": 2}}
    facts = dict(clip_facts(record))
    assert facts["EF (segmentation)"] == "55.0 % from 1 beat (no spread)"
    assert facts["EF (regressor)"].startswith("50.0 % ± 2.8")
    assert "over 2 beats [48.0, 52.0]" in facts["EF (regressor)"]
    record["ef_regressor_beats"] = {"beats": [], "ef_mean": 47.0, "ef_sd": None, "n_beats": 0,
                                    "note": "no whole beat"}
    assert dict(clip_facts(record))["EF (regressor)"] == "47.0 % (no whole beat)"
