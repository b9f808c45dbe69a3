"""Write phantom data sets laid out exactly as public echo data sets are.

Formats: ``echonet`` (EchoNet-Dynamic), ``camus`` (CAMUS NIfTI release), ``dicom``
(multi-frame ultrasound DICOM with identifiers and burned-in text, for de-identification
tests), ``tmed`` (TMED-2 still images with view and aortic-stenosis labels) and
``folder`` (plain MP4 files with ``labels.csv``). Every format also gets
``phantom_truth.jsonl``: one line of full ground truth per written item.

Why one module over 400 lines: every layout is a pair of small functions (write one item,
finish the set) behind one driver, kept side by side; the DICOM writers (a cine per item,
or one patient's exam, ``write_study``) are the longest part and the first to move out if
the layouts grow.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from echofm.choices import PHANTOM_FORMATS as FORMATS
from echofm.errors import EchoFMError
from echofm.labels import CAMUS_VIEWS, TMED_AS_LABELS
from echofm.phantom.case import PhantomCase, case_seed, generate_case, sample_patient
from echofm.phantom.config import PhantomConfig, default_views

SPLITS = ("TRAIN",) * 6 + ("VAL", "TEST")  # 75 / 12.5 / 12.5, balanced even for small n
CAMUS_LABEL_MAX = 3  # CAMUS ground truth has background, LV cavity, LV myocardium and LA only


def split_of(index: int) -> str:
    """TRAIN/VAL/TEST of the ``index``-th item (a fixed repeating pattern)."""
    return SPLITS[index % len(SPLITS)]


# --------------------------------------------------------------------------- writers


def write_video(path: Path, frames: np.ndarray, fps: float, codec: str) -> None:
    """Grey uint8 ``[T, H, W]`` frames to a video file (container from the suffix) with PyAV."""
    import av

    T, H, W = frames.shape
    if H % 2 or W % 2:
        raise EchoFMError(f"{path}: video frames must have even height and width (got {H}x{W})")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "16", "preset": "veryfast"}
        else:
            stream.bit_rate = 8_000_000
        for frame in frames:
            rgb = np.repeat(frame[:, :, None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def _systole_pair(case: PhantomCase) -> Optional[tuple[int, int]]:
    """The first (ED, ES) frame pair of one beat inside the clip, or None."""
    longest = 0.7 * 60.0 / 30.0 * case.fps  # systole never exceeds 0.7 s at 30 bpm+
    for ed in case.truth["ed_frames"]:
        later = [es for es in case.truth["es_frames"] if ed < es <= ed + longest]
        if later:
            return ed, later[0]
    return None


def _case_with_systole(seed: int, config: PhantomConfig, view: str, patient=None) -> tuple[PhantomCase, tuple]:
    """A case holding a whole systole; lengthens the clip when the rhythm is too slow."""
    cfg = config
    for _ in range(4):
        case = generate_case(seed, cfg, view=view, patient=patient)
        pair = _systole_pair(case)
        if pair:
            return case, pair
        cfg = dataclasses.replace(cfg, num_frames=int(cfg.num_frames * 1.6) + 4)
    raise EchoFMError(f"phantom seed {seed}: no whole systole in {cfg.num_frames} frames")


def _truth_line(name: str, case: PhantomCase, **extra) -> dict:
    return {"name": name, **extra, **case.truth}


def _save_labels(out: Path, name: str, case: PhantomCase) -> None:
    (out / "labels").mkdir(exist_ok=True)
    np.savez_compressed(out / "labels" / f"{name}.npz", labels=case.labels,
                        ed_frames=np.array(case.truth["ed_frames"]), es_frames=np.array(case.truth["es_frames"]))


# --------------------------------------------------------------------------- echonet


def _echonet_item(out: Path, index: int, seed: int, config: PhantomConfig, save_labels: bool) -> dict:
    s = case_seed(seed, index)
    view = "A4C" if "A4C" in config.views else config.views[0]
    case, (ed, es) = _case_with_systole(s, config, view)
    name = f"0X{int(np.random.SeedSequence([s, 1]).generate_state(1, dtype=np.uint64)[0]):016X}"
    write_video(out / "Videos" / f"{name}.avi", case.frames, case.fps, "mpeg4")
    if save_labels:
        _save_labels(out, name, case)
    t = case.truth
    row = {"FileName": name, "EF": t["ef"], "ESV": t["esv"], "EDV": t["edv"],
           "FrameHeight": case.frames.shape[1], "FrameWidth": case.frames.shape[2], "FPS": t["fps"],
           "NumberOfFrames": case.frames.shape[0], "Split": split_of(index)}
    traces = []
    for frame in (es, ed):  # EchoNet lists the small (systolic) trace first, the large last
        for x1, y1, x2, y2 in case.lv_chords(frame):
            traces.append([f"{name}.avi", x1, y1, x2, y2, frame])
    return {"row": row, "traces": traces, "truth": _truth_line(name, case, traced_ed=ed, traced_es=es)}


def _finish_echonet(out: Path, items: list[dict]) -> None:
    with open(out / "FileList.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"])
        for it in items:
            r = it["row"]
            w.writerow([r["FileName"], repr(r["EF"]), repr(r["ESV"]), repr(r["EDV"]), r["FrameHeight"],
                        r["FrameWidth"], r["FPS"], r["NumberOfFrames"], r["Split"]])
    with open(out / "VolumeTracings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for it in items:
            for fn, x1, y1, x2, y2, frame in it["traces"]:
                w.writerow([fn, f"{x1:.4f}", f"{y1:.4f}", f"{x2:.4f}", f"{y2:.4f}", frame])


# --------------------------------------------------------------------------- camus


def _camus_item(out: Path, index: int, seed: int, config: PhantomConfig, save_labels: bool) -> dict:
    import nibabel as nib

    s = case_seed(seed, index)
    patient = sample_patient(np.random.default_rng([s, 0]), config)
    name = f"patient{index + 1:04d}"
    pdir = out / "database_nifti" / name
    pdir.mkdir(parents=True, exist_ok=True)
    cases = {}
    for tag, view in CAMUS_VIEWS.items():
        case, (ed, es) = _case_with_systole(s, config, view, patient=patient)
        cases[tag] = (case, ed, es)
    ef = float(np.mean([c.truth["ef"] for c, _, _ in cases.values()]))
    quality_noise = cases["4CH"][0].truth["params"]["scanner"]["noise"] / max(config.noise, 1e-6)
    quality = "Good" if quality_noise < 0.005 else ("Medium" if quality_noise < 0.008 else "Poor")
    truths = []
    for tag, (case, ed, es) in cases.items():
        sp = case.pixel_spacing
        # CAMUS stores arrays as [width, height(, frames)]: x is the image column.
        affine = np.diag([sp[1], sp[0], 1.0, 1.0])
        seq = case.frames[ed:es + 1]
        gt = np.where(case.labels[ed:es + 1] <= CAMUS_LABEL_MAX, case.labels[ed:es + 1], 0).astype(np.uint8)
        save = lambda arr, suffix: nib.save(nib.Nifti1Image(arr, affine), pdir / f"{name}_{tag}_{suffix}.nii.gz")
        save(np.ascontiguousarray(seq.transpose(2, 1, 0)), "half_sequence")
        save(np.ascontiguousarray(gt.transpose(2, 1, 0)), "half_sequence_gt")
        save(np.ascontiguousarray(seq[0].T), "ED")
        save(np.ascontiguousarray(gt[0].T), "ED_gt")
        save(np.ascontiguousarray(seq[-1].T), "ES")
        save(np.ascontiguousarray(gt[-1].T), "ES_gt")
        (pdir / f"Info_{tag}.cfg").write_text(
            f"ED: 1\nES: {len(seq)}\nNbFrame: {len(seq)}\nSex: {case._patient.sex}\nAge: {case._patient.age}\n"
            f"ImageQuality: {quality}\nEF: {ef:.1f}\nFrameRate: {case.fps:g}\n")
        truths.append(_truth_line(f"{name}_{tag}", case, half_sequence=[ed, es], camus_ef=ef))
    return {"name": name, "split": split_of(index), "truths": truths}


def _finish_camus(out: Path, items: list[dict]) -> None:
    split_dir = out / "database_split"
    split_dir.mkdir(exist_ok=True)
    for split, fname in (("TRAIN", "subgroup_training.txt"), ("VAL", "subgroup_validation.txt"),
                         ("TEST", "subgroup_testing.txt")):
        names = [it["name"] for it in items if it["split"] == split]
        (split_dir / fname).write_text("".join(n + "\n" for n in names))


# --------------------------------------------------------------------------- dicom

_FIRST = ["Jane", "John", "Maria", "Ahmed", "Wei", "Olga", "Pierre", "Aiko", "Samuel", "Fatima"]
_LAST = ["Doe", "Smith", "Garcia", "Khan", "Chen", "Ivanova", "Martin", "Tanaka", "Okafor", "Haddad"]
_PLACES = ["Springfield General Hospital", "St. Elsewhere Medical Center", "Riverside Heart Clinic",
           "Lakeside University Hospital"]


def _ecg_trace(case: PhantomCase, width: int, seconds: float) -> np.ndarray:
    """ECG-like samples (one per pixel column) with an R wave at every ED (beat start)."""
    t = np.linspace(0.0, seconds, width)
    ecg = np.zeros_like(t)
    for b in case.truth["beats"]:
        for dt, amp, sd in ((-0.16, 0.15, 0.025), (-0.02, -0.1, 0.008), (0.0, 1.0, 0.01),
                            (0.025, -0.25, 0.008), (0.3 * b["rr"] ** 0.5, 0.3, 0.05)):
            ecg += amp * np.exp(-0.5 * ((t - b["ed_time"] - dt) / sd) ** 2)
    return ecg


def _identity(rng: np.random.Generator) -> dict:
    """Invented identifiers of one patient and exam (as a scanner would write them)."""
    return {
        "PatientName": f"{_LAST[rng.integers(10)]}^{_FIRST[rng.integers(10)]}",
        "PatientID": f"MRN{rng.integers(10**6, 10**7)}",
        "PatientBirthDate": f"{rng.integers(1930, 2005)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}",
        "AccessionNumber": f"ACC{rng.integers(10**7, 10**8)}",
        "InstitutionName": _PLACES[rng.integers(len(_PLACES))],
        "ReferringPhysicianName": f"{_LAST[rng.integers(10)]}^{_FIRST[rng.integers(10)]}^^Dr.",
        "OperatorsName": f"{_LAST[rng.integers(10)]}^{_FIRST[rng.integers(10)]}",
        "StudyDate": f"20{rng.integers(10, 25)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}",
    }


def _write_us_dicom(path: Path, case: PhantomCase, ident: dict, rng: np.random.Generator, uid_seed: str,
                    study_uid: str, series_number: int, instance_number: int) -> dict:
    """One multi-frame US DICOM of ``case`` with ``ident`` in the header and burned into the
    pixels (plus an ECG trace); returns the frame region as ``region_yxyx`` and the text."""
    import cv2
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    T, H, W = case.frames.shape
    top, bottom, side = max(24, H // 6), max(32, H // 4), max(16, W // 5)
    rows, cols = H + top + bottom, W + 2 * side
    canvas = np.zeros((T, rows, cols, 3), np.uint8)
    canvas[:, top:top + H, side:side + W] = case.frames[..., None]

    scale = max(0.3, cols / 700.0)
    text_rows = [ident["PatientName"].replace("^", " ") + "  " + ident["PatientID"],
                 ident["InstitutionName"], ident["StudyDate"]]
    overlay = np.zeros((rows, cols, 3), np.uint8)
    for k, line in enumerate(text_rows):
        cv2.putText(overlay, line, (4, int((k + 1) * top / 3.3)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    ecg = _ecg_trace(case, cols - 8, T / case.fps)
    base_y = top + H + bottom // 2
    ys = (base_y - ecg * bottom * 0.35).astype(np.int32)
    pts = np.stack([np.arange(4, cols - 4), ys], axis=1).reshape(-1, 1, 2)
    cv2.polylines(overlay, [pts], False, (0, 255, 0), 1, cv2.LINE_AA)
    canvas = np.maximum(canvas, overlay[None])
    for t in range(T):  # moving cursor on the ECG marks the current frame
        x = 4 + int(t / max(T - 1, 1) * (cols - 9))
        canvas[t, base_y - bottom // 3:base_y + bottom // 3, x] = (255, 255, 0)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uid_seed, "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "series"])
    for k, v in ident.items():
        setattr(ds, k, v)
    ds.PatientSex = case._patient.sex
    ds.PatientAge = f"{case._patient.age:03d}Y"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.Modality = "US"
    ds.Manufacturer = "echofm phantom"
    ds.ManufacturerModelName = "SynthScan 1"
    ds.DeviceSerialNumber = f"SN{rng.integers(10**5, 10**6)}"
    ds.SeriesNumber, ds.InstanceNumber = int(series_number), int(instance_number)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = T
    ds.FrameTime = f"{1000.0 / case.fps:.4f}"
    ds.CineRate = int(round(case.fps))
    ds.RecommendedDisplayFrameRate = int(round(case.fps))
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x0018, 0x1063)
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = side, top
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = side + W - 1, top + H - 1
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3  # cm
    region.PhysicalDeltaX = case.pixel_spacing[1] / 10.0
    region.PhysicalDeltaY = case.pixel_spacing[0] / 10.0
    region.ReferencePixelX0 = int(round(case.truth["sector"]["apex_col"]))
    region.ReferencePixelY0 = int(round(case.truth["sector"]["apex_row"]))
    ds.SequenceOfUltrasoundRegions = DSequence([region])
    ds.PixelData = canvas.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return {"region_yxyx": [top, side, top + H - 1, side + W - 1], "burned_in_text": text_rows,
            "sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID)}


def _dicom_item(out: Path, index: int, seed: int, config: PhantomConfig, save_labels: bool) -> dict:
    from pydicom.uid import generate_uid

    s = case_seed(seed, index)
    case = generate_case(s, config)
    rng = np.random.default_rng([s, 9])
    ident = _identity(rng)
    name = f"IMG{index + 1:05d}"
    written = _write_us_dicom(out / f"{name}.dcm", case, ident, rng, str(s),
                              generate_uid(entropy_srcs=[str(s), "study"]), 1, index + 1)
    if save_labels:
        _save_labels(out, name, case)
    return {"truth": _truth_line(name, case, identifiers=ident, region_yxyx=written["region_yxyx"],
                                 burned_in_text=written["burned_in_text"])}


def write_study(out_dir: str | os.PathLike, n: int, seed: int = 0, config: Optional[PhantomConfig] = None,
                save_labels: bool = False, progress: Optional[Callable[[int], None]] = None) -> dict:
    """One invented patient's echo exam as multi-frame US DICOM: ``n`` clips of one heart
    (one EF, one rhythm, one disease state), the views cycling through ``config.views``,
    all sharing the patient module and StudyInstanceUID, one series per clip.

    Files are ``out_dir/SERIES_kk/IMG00001.dcm`` (as an export tool writes them);
    ``phantom_truth.jsonl`` holds each clip's truth (view, ED/ES frames, EF of the clip's
    beats); the study's nominal EF is ``study_truth.json``'s ``ef``.
    """
    from pydicom.uid import generate_uid

    if int(n) < 1:
        raise EchoFMError(f"phantom study n={n}: must be at least 1 clip")
    config = (config or PhantomConfig()).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = case_seed(seed, 0)
    patient = sample_patient(np.random.default_rng([s, 0]), config)
    rng = np.random.default_rng([s, 9])
    ident = _identity(rng)
    study_uid = generate_uid(entropy_srcs=[str(s), "study"])
    truths = []
    for k in range(int(n)):
        view = config.views[k % len(config.views)]
        clip_seed = case_seed(s, k + 1)
        case = generate_case(clip_seed, config, view=view, patient=patient)
        series = out / f"SERIES_{k + 1:02d}"
        series.mkdir(exist_ok=True)
        name = f"SERIES_{k + 1:02d}/IMG00001"
        written = _write_us_dicom(out / f"{name}.dcm", case, ident, np.random.default_rng([clip_seed, 9]),
                                  str(clip_seed), study_uid, k + 1, 1)
        if save_labels:
            _save_labels(series, "IMG00001", case)
        truths.append(_truth_line(name, case, identifiers=ident, **written))
        progress and progress(1)
    with open(out / "phantom_truth.jsonl", "w") as f:
        for truth in truths:
            f.write(json.dumps(truth) + "\n")
    study = {"study_instance_uid": study_uid, "clips": len(truths), "ef": patient.ef,
             "heart_rate": patient.heart_rate, "views": [t["view"] for t in truths],
             "as_severity": patient.as_severity, "identifiers": ident}
    (out / "study_truth.json").write_text(json.dumps(study, indent=2))
    return {"format": "dicom", "study": True, "n": int(n), "seed": int(seed), "out": str(out),
            "items": len(truths), "study_instance_uid": study_uid}


# --------------------------------------------------------------------------- tmed


def _tmed_item(out: Path, index: int, seed: int, config: PhantomConfig, save_labels: bool) -> dict:
    import cv2

    s = case_seed(seed, index)
    rng = np.random.default_rng([s, 7])
    patient = sample_patient(np.random.default_rng([s, 0]), config)
    still = dataclasses.replace(config, num_frames=1)
    study = f"{1000 + index}s1"
    split = {"TRAIN": "train", "VAL": "val", "TEST": "test"}[split_of(index)]
    rows, truths = [], []
    for k in range(int(rng.integers(2, 6))):
        view = str(rng.choice(list(config.views)))
        case = generate_case(case_seed(s, k + 1), still, view=view, patient=patient)
        key = f"{study}_{k}.png"
        cv2.imwrite(str(out / "labeled" / key), case.frames[0])
        rows.append({"query_key": key, "view_label": view, "diagnosis_label": TMED_AS_LABELS[patient.as_severity],
                     "SourceFolder": "labeled", "diagnosis_classifier_split": split, "view_classifier_split": split})
        truths.append(_truth_line(key, case, study=study))
    return {"rows": rows, "truths": truths}


def _finish_tmed(out: Path, items: list[dict]) -> None:
    with open(out / "TMED2_fold0_labeledpart.csv", "w", newline="") as f:
        cols = ["query_key", "view_label", "diagnosis_label", "SourceFolder", "diagnosis_classifier_split",
                "view_classifier_split"]
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for it in items:
            w.writerows(it["rows"])


# --------------------------------------------------------------------------- folder


def _folder_item(out: Path, index: int, seed: int, config: PhantomConfig, save_labels: bool) -> dict:
    s = case_seed(seed, index)
    case = generate_case(s, config)
    name = f"clip_{index:05d}"
    write_video(out / f"{name}.mp4", case.frames, case.fps, "libx264")
    if save_labels:
        _save_labels(out, name, case)
    t, d = case.truth, case.truth["disease"]
    row = {"filename": f"{name}.mp4", "view": t["view"], "ef": round(t["ef"], 4), "edv": round(t["edv"], 4),
           "esv": round(t["esv"], 4), "heart_rate": round(t["heart_rate"], 3), "fps": t["fps"],
           "num_frames": t["num_frames"], "as_severity": d["as_severity"],
           "aortic_regurgitation": int(d["aortic_regurgitation"]), "lvh": int(d["lvh"]),
           "reduced_ef": int(d["reduced_ef"]), "irregular_rhythm": int(d["irregular_rhythm"]),
           "ed_frames": " ".join(map(str, t["ed_frames"])), "es_frames": " ".join(map(str, t["es_frames"])),
           "pixel_spacing_mm": round(t["pixel_spacing_mm"][0], 6), "split": split_of(index).lower()}
    return {"row": row, "truth": _truth_line(name, case)}


def _finish_folder(out: Path, items: list[dict]) -> None:
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(items[0]["row"].keys()))
        w.writeheader()
        w.writerows(it["row"] for it in items)


# --------------------------------------------------------------------------- driver

_ITEM = {"echonet": _echonet_item, "camus": _camus_item, "dicom": _dicom_item, "tmed": _tmed_item,
         "folder": _folder_item}
_FINISH = {"echonet": _finish_echonet, "camus": _finish_camus, "dicom": None, "tmed": _finish_tmed,
           "folder": _finish_folder}


def _work(args):
    fmt, out, index, seed, config, save_labels = args
    return _ITEM[fmt](Path(out), index, seed, config, save_labels)


def write_dataset(out_dir: str | os.PathLike, fmt: str, n: int, seed: int = 0,
                  config: Optional[PhantomConfig] = None, workers: int = 1, save_labels: bool = False,
                  progress: Optional[Callable[[int], None]] = None) -> dict:
    """Generate ``n`` items (clips; patients for camus; studies for tmed) into ``out_dir``.

    Deterministic for ``seed`` whatever ``workers`` is. ``progress(k)`` is called after
    each item. Returns a summary dict (format, n, out, files written per kind).
    """
    if fmt not in FORMATS:
        raise EchoFMError(f"phantom format {fmt!r}: unknown (choose from {', '.join(FORMATS)})")
    if int(n) < 1:
        raise EchoFMError(f"phantom n={n}: must be at least 1")
    config = (config or PhantomConfig(views=default_views(fmt))).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "echonet":
        (out / "Videos").mkdir(exist_ok=True)
    if fmt == "tmed":
        (out / "labeled").mkdir(exist_ok=True)
    jobs = [(fmt, str(out), i, int(seed), config, save_labels) for i in range(int(n))]
    items = []
    if workers > 1:
        with get_context("spawn").Pool(int(workers)) as pool:
            for it in pool.imap(_work, jobs):
                items.append(it)
                progress and progress(1)
    else:
        for job in jobs:
            items.append(_work(job))
            progress and progress(1)
    if _FINISH[fmt]:
        _FINISH[fmt](out, items)
    with open(out / "phantom_truth.jsonl", "w") as f:
        for it in items:
            for truth in it.get("truths", [it.get("truth")]):
                f.write(json.dumps(truth) + "\n")
    return {"format": fmt, "n": int(n), "seed": int(seed), "out": str(out), "items": len(items)}
