"""The study pipeline: every cine of a study export through the bundle's models, one
study-level result per study, and the outputs a clinician and a PACS read.

``run_study(src, bundle, out, StudyConfig(...))`` scans SRC (``scan``), and for each cine
reads and preprocesses it as its models' input contract says, classifies its view,
routes it (apical -> LV segmentation and EF; parasternal -> disease; every cine ->
cardiac phase and heart rate), measures EF beat by beat (``beats``), and writes per clip
a JSON record, its first frame, its cine as an H.264 MP4 with the LV overlay, its LV area
curve (in its record, drawn by ``report``) and a DICOM SEG. Per
study it aggregates each measurement over the clips of the right view, weighted by view
confidence, and writes ``study.json``, ``report.html`` and a DICOM SR. A rerun skips the
clips already done (their records stay in ``OUT/.state``).

Why one module over 400 lines: it is the one place that knows the order of a study's
steps and what each step hands the next (routing by view, per-clip records, the study
aggregate); each step's own work lives in its module (``scan``, ``beats``, ``bundle``,
``report``, ``dicom_out``), and splitting the sequence itself would scatter that order.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from echofm.batch import BatchJob, BatchOptions, BatchSummary, Source
from echofm.errors import EchoFMError
from echofm.files import write_json_atomic
from echofm.labels import APICAL_VIEWS as APICAL
from echofm.labels import LV_CAVITY
from echofm.labels import PARASTERNAL_VIEWS as PARASTERNAL
from echofm.study.bundle import Bundle, load_bundle
from echofm.study.scan import Instance, Inventory, scan, study_id

log = logging.getLogger("echofm.study")

STAGES = ("read", "preprocess", "view", "segment", "ef", "disease", "phase", "write")


@dataclass
class StudyConfig:
    """How a study is run.

    device / precision: where and how the models run. deidentify: outputs get the
    patient module replaced and UIDs remapped (PS3.15 basic profile). dicom: write SEG
    and SR. overlay: write each cine as a browser-playable H.264 MP4 (``cine.mp4``, the LV
    overlay blended in where the clip was segmented). How the batch runs (failures
    allowed, paths kept, retries, progress) is ``batch.BatchOptions``; without
    keep_paths files are named by their ``batch.input_id`` only (export folders often
    carry patient names).
    """

    device: str = "cpu"
    precision: str = "fp32"
    deidentify: bool = False
    dicom: bool = True
    overlay: bool = True


@dataclass
class StudyRun:
    """What ``run_study`` did: the batch summary (counts, failures, exit status), the
    files not analysed, the studies' results and seconds per stage."""

    out: Path
    batch: "BatchSummary"
    listed: int = 0
    studies: list[dict] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)

    @property
    def exit_status(self) -> int:
        return self.batch.exit_status


class _Timer:
    def __init__(self, totals: dict):
        self.totals = totals

    def __call__(self, stage: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.totals[stage] = timer.totals.get(stage, 0.0) + time.perf_counter() - self.t0

        return _Span()


def _routes(view: str) -> tuple[str, ...]:
    if view in APICAL:
        return ("segment", "ef")
    if view in PARASTERNAL:
        return ("disease",)
    return ()


def to_source_grid(masks: np.ndarray, box: Optional[tuple], source_shape: tuple[int, int]) -> np.ndarray:
    """Label maps [T, S, S] of the preprocessed frames back onto the source pixel grid
    [T, Rows, Columns]: undo the resize, the square pad and the crop to the sector."""
    import cv2

    T = len(masks)
    rows, cols = source_shape
    y0, x0, y1, x1 = box if box is not None else (0, 0, rows, cols)
    h, w = y1 - y0, x1 - x0
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.zeros((T, rows, cols), np.uint8)
    for t in range(T):
        big = cv2.resize(masks[t], (side, side), interpolation=cv2.INTER_NEAREST)
        out[t, y0:y1, x0:x1] = big[top:top + h, left:left + w]
    return out


def _task_prediction(bundle, role: str, raw, cache: dict, predict, timer):
    """(model, video-level prediction) of the bundle's ``role`` model on a clip, timed by stage."""
    from echofm.predict import predict_frames  # torch-heavy: imported when a clip is analysed

    model = bundle.model(role)
    with timer("preprocess"):
        clip = _preprocessed(raw, model, cache)
    with timer(role):
        return model, predict_frames(model, clip.frames, clip.fps, predict).record["prediction"]


def _preprocessed(raw, model, cache: dict):
    """The clip as ``model``'s input contract says it was trained on: its side, the sector
    masked or the whole image kept (``contract.sector_masking``). Its frames per clip and
    frame step are applied when the clip is cut into windows (``predict.window_spec``, from
    the same contract). Models of the bundle that share a side and a masking share one
    preprocessed clip."""
    from echofm.contract import sector_masking

    contract = model.contract
    return _preprocessed_at(raw, contract.image_size, sector_masking(contract), cache)


def _preprocessed_at(raw, size: int, mask_sector: bool, cache: dict):
    """``raw`` preprocessed to ``size`` pixels, sector-masked or not, made once per clip."""
    from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip

    key = (size, mask_sector)
    if key not in cache:
        cache[key] = preprocess_clip(raw, PreprocessConfig(size=size, mask_sector=mask_sector))
    return cache[key]


def ef_by_beat(model, clip, cycles: list, predict) -> dict:
    """The EF regressor beat by beat, as EchoNet-Dynamic reports it: one model window per
    beat (``cycles``: ``[ed, next ed]`` frame pairs of ``clip``, from the LV area curve),
    at the frame step of the model's contract, placed by ``windows.beat_window`` (centred
    on the beat when it spans it, else from the beat's ED), one EF each, with their mean
    and spread. No whole beat: the mean over the
    clip's windows (``predict.predict_frames``), with ``note`` saying so."""
    from echofm.predict import predict_frames, run_model
    from echofm.windows import beat_window, spec_for

    if not cycles:
        value = predict_frames(model, clip.frames, clip.fps, predict).record["prediction"]["value"]
        return {"beats": [], "ef_mean": round(float(value), 3), "ef_sd": None, "n_beats": 0,
                "method": "mean over the clip's windows",
                "note": "no whole beat (ED to the next ED) in the clip: EF from the mean over its windows"}
    total = len(clip.frames)
    spec = spec_for(model.contract, clip.fps, frame_step=predict.frame_step)
    windows = np.stack([beat_window(total, spec, a, b) for a, b in cycles])
    values = run_model(model, clip.frames, windows, predict.batch_size, predict.device,
                       predict.precision).reshape(-1).numpy().astype(np.float64)
    beats = [{"ed": int(a), "next_ed": int(b), "window": [int(w[0]), int(w[-1])], "frame_step": spec.frame_step,
              "ef": round(float(v), 3)} for (a, b), w, v in zip(cycles, windows, values)]
    return {"beats": beats, "ef_mean": round(float(values.mean()), 3),
            "ef_sd": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 3), "n_beats": len(beats),
            "method": "one window per beat (ED to the next ED): centred on a beat it spans, else from the beat's ED"}


def analyse_clip(instance: Instance, clip_id: str, bundle: Bundle, clip_dir: Path, config: StudyConfig, timer,
                 dicom_dir: Optional[Path] = None, header=None) -> dict:
    """One cine through the bundle: its JSON-ready record (files written into ``clip_dir``;
    ``clip_id`` names the clip, ``timer(stage)`` times each stage)."""
    from echofm.analysis.phase import PhaseResult, phase_from_pixels
    from echofm.io import read_clip
    from echofm.predict import PredictConfig, predict_frames

    predict = PredictConfig(device=config.device, precision=config.precision)
    with timer("read"):
        raw = read_clip(instance.path)
    if raw.num_frames < 2:
        raise EchoFMError(f"{instance.relative}: one frame only, not a cine")
    cache: dict = {}
    view_model = bundle.model("view")
    with timer("preprocess"):
        clip = _preprocessed(raw, view_model, cache)
    with timer("view"):
        pred = predict_frames(view_model, clip.frames, clip.fps, predict).record["prediction"]
    record: dict = {"clip_id": clip_id, "frames": raw.num_frames, "fps": raw.fps,
                    "source_shape": list(raw.frames.shape[1:3]),
                    "view": {"label": pred["label"], "confidence": round(pred["confidence"], 5),
                             "probabilities": {k: round(v, 5) for k, v in pred["probabilities"].items()}}}
    view = pred["label"]
    with timer("phase"):
        try:
            phase = phase_from_pixels(clip.frames, clip.fps)
        except ValueError:  # a cine too short for a cycle: no heart rate, the rest still holds
            phase = PhaseResult(cycle_frames=None, heart_rate_bpm=None, fps=clip.fps)
    record["phase"] = {"heart_rate_bpm": None if phase.heart_rate_bpm is None else round(phase.heart_rate_bpm, 2),
                       "cycle_frames": None if phase.cycle_frames is None else round(phase.cycle_frames, 3),
                       "ed_frames": phase.ed_frames, "es_frames": phase.es_frames,
                       "cavity_curve": [round(float(v), 4) for v in phase.cavity_curve]}
    routes = [r for r in _routes(view) if bundle.has(r)]
    record["routed_to"] = routes
    files: dict = {}
    lv_masks = None
    if "segment" in routes:
        from echofm.study.beats import lv_beats

        model = bundle.model("segment")
        with timer("preprocess"):
            seg_clip = _preprocessed(raw, model, cache)
        with timer("segment"):
            result = predict_frames(model, seg_clip.frames, seg_clip.fps, predict, seg_clip.pixel_spacing)
            lv_masks = result.masks == LV_CAVITY
            record["lv"] = lv_beats(lv_masks, phase.cycle_frames, seg_clip.pixel_spacing)
        with timer("write"):
            if dicom_dir is not None and header is not None and lv_masks.any():
                from echofm.study.dicom_out import write_lv_seg
                import highdicom as hd

                grid = to_source_grid(lv_masks.astype(np.uint8), seg_clip.sector_box, raw.frames.shape[1:3])
                name = f"SEG_{clip_id}.dcm"
                write_lv_seg(dicom_dir / name, header, grid.astype(bool), hd.UID(), 900 + (instance.series_number or 0))
                files["seg"] = f"dicom/{dicom_dir.name}/{name}"
    if "ef" in routes:
        model = bundle.model("ef")
        with timer("preprocess"):
            ef_clip = _preprocessed(raw, model, cache)
        # Beats from the segmentation's LV area curve; without one, from the pixel cycle.
        if "lv" in record:
            cycles, beats_from = record["lv"].get("ed_to_ed", []), "LV area curve"
        else:
            from echofm.study.beats import ed_to_ed

            cycles = ed_to_ed(phase.ed_frames or [], phase.cycle_frames) if phase.cycle_frames else []
            beats_from = "pixel cycle (no segmentation model)"
        with timer("ef"):
            record["ef_regressor_beats"] = {**ef_by_beat(model, ef_clip, cycles, predict), "beats_from": beats_from}
        record["ef_regressor"] = record["ef_regressor_beats"]["ef_mean"]
    if "disease" in routes:
        model, dis = _task_prediction(bundle, "disease", raw, cache, predict, timer)
        record["disease"] = {"target": model.spec.target, "label": dis.get("label"),
                             "probabilities": {k: round(v, 5) for k, v in dis["probabilities"].items()}}
    with timer("write"):
        files["first_frame"] = _png(clip_dir / "first_frame.png", clip.frames[0])
        if config.overlay:
            files["cine"] = _cine(clip_dir / "cine.mp4", raw, cache, None if lv_masks is None else result.masks)
    record["files"] = {k: (v if k == "seg" else f"clips/{clip_id}/{Path(v).name}") for k, v in files.items()}
    return record


def _png(path: Path, frame: np.ndarray) -> str:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    image = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), image)
    return path.name


CINE_SIZE = 192  # display side of cine.mp4: sharper than the models' inputs, even for yuv420p


def _cine(path: Path, raw, cache: dict, masks: Optional[np.ndarray]) -> str:
    """The clip as shown (preprocessed, so sector-masked: no burned-in text) with its label
    maps blended in (``predict.write_overlay_video``, the one overlay renderer), as H.264."""
    from echofm.predict import write_overlay_video

    frames = _preprocessed_at(raw, CINE_SIZE, True, cache).frames  # masked: no burned-in text shown
    labels = masks if masks is not None else np.zeros(frames.shape[:3], np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_overlay_video(path, frames, labels, raw.fps, size=CINE_SIZE)
    return path.name


# --------------------------------------------------------------------------- aggregation


def _weighted(values: list[tuple[float, float]]) -> Optional[dict]:
    """Mean and spread (weighted SD) of (value, weight) pairs."""
    pairs = [(v, w) for v, w in values if v is not None and np.isfinite(v)]
    if not pairs:
        return None
    v = np.array([p[0] for p in pairs], float)
    w = np.array([max(p[1], 1e-6) for p in pairs], float)
    mean = float(np.sum(v * w) / np.sum(w))
    sd = float(np.sqrt(np.sum(w * (v - mean) ** 2) / np.sum(w))) if len(v) > 1 else 0.0
    return {"value": round(mean, 3), "sd": round(sd, 3), "n_clips": len(v)}


def aggregate(records: list[dict]) -> dict:
    """Per-study measurements from the clips' records, each from the clips of the right
    view, weighted by view confidence, naming the clips that contributed."""
    out: dict = {}

    def add(name, pairs, unit, method):
        stat = _weighted([(v, w) for _, v, w in pairs])
        if stat:
            out[name] = {**stat, "unit": unit, "method": method,
                         "clips": [c for c, v, _ in pairs if v is not None]}

    conf = lambda r: r["view"]["confidence"]
    apical = [r for r in records if r["view"]["label"] in APICAL]
    add("ef", [(r["clip_id"], r.get("lv", {}).get("ef_mean"), conf(r)) for r in apical], "%",
        "LV segmentation, beat-by-beat area-length EF per clip, clips weighted by view confidence")
    add("ef_regressor", [(r["clip_id"], r.get("ef_regressor"), conf(r)) for r in apical], "%",
        ("EF regressor beat by beat (one window per beat; a clip with no whole beat: mean over its windows), "
         "mean per clip, clips weighted by view confidence"))
    add("heart_rate", [(r["clip_id"], r["phase"]["heart_rate_bpm"], conf(r)) for r in records], "bpm",
        "cycle length from pixel self-similarity, every cine, weighted by view confidence")
    parasternal = [r for r in records if "disease" in r]
    if parasternal:
        classes = list(parasternal[0]["disease"]["probabilities"])
        weights = np.array([conf(r) for r in parasternal])
        probs = np.array([[r["disease"]["probabilities"][c] for c in classes] for r in parasternal])
        mean = (probs * weights[:, None]).sum(0) / weights.sum()
        out["disease"] = {"target": parasternal[0]["disease"]["target"], "label": classes[int(np.argmax(mean))],
                          "probabilities": dict(zip(classes, np.round(mean, 5).tolist())),
                          "clips": [r["clip_id"] for r in parasternal],
                          "method": "disease model on parasternal clips, probabilities weighted by view confidence"}
    views: dict = {}
    for r in records:
        views[r["view"]["label"]] = views.get(r["view"]["label"], 0) + 1
    out["views"] = views
    return out


# --------------------------------------------------------------------------- driver


def _settings(bundle: Bundle, config: StudyConfig) -> dict:
    return {"bundle": bundle.fingerprint(), "deidentify": config.deidentify, "dicom": config.dicom,
            "overlay": config.overlay}


def _resume_key(instance: Instance) -> str:
    # The SOP Instance UID names a clip across runs, even when a ZIP is extracted afresh.
    import hashlib

    return hashlib.blake2b(f"sop:{instance.sop_uid}".encode(), digest_size=16).hexdigest()


def run_study(src: str | Path, bundle: Bundle | str | Path, out: str | Path,
              config: Optional[StudyConfig] = None, options: Optional[BatchOptions] = None) -> StudyRun:
    """Analyse every cine under ``src`` with ``bundle`` into ``out`` (see the module docstring)."""
    from echofm.study.deid import UIDMap, reference_header

    config = config or StudyConfig()
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if not Path(src).exists():
        raise EchoFMError(f"{src}: no such file or folder")
    if config.dicom:
        try:
            import highdicom  # noqa: F401
        except ImportError:
            raise EchoFMError("the DICOM SEG and SR need highdicom (pip install 'echofm[study]'); "
                              "or pass --no-dicom") from None
    job = BatchJob("study", out, _settings(bundle, config), options, unit="clip").open()
    out = job.out
    salt_file = job.state / "deid_salt"
    if config.deidentify and not salt_file.exists():
        salt_file.write_text(secrets.token_hex(16))
    uids = UIDMap(salt_file.read_text()) if config.deidentify else None
    inventory = scan(src, job.state / "extracted")
    by_path = {inst.path: inst for inst in inventory.instances}
    sources = [Source(inst.path, inventory.root) for inst in inventory.instances]
    timer = _Timer({})
    for item in job.run(job.pending(sources, key_of=lambda source: _resume_key(by_path[source.path]))):
        inst = by_path[item.source.path]
        sid = study_id(uids(inst.study_uid) if uids else inst.study_uid)
        dicom_dir = out / "dicom" / sid if config.dicom else None
        try:
            header = None
            if dicom_dir is not None:
                dicom_dir.mkdir(parents=True, exist_ok=True)
                header = reference_header(inst.path, config.deidentify, uids)
            record = analyse_clip(inst, item.id, bundle, out / "clips" / item.id, config, timer, dicom_dir, header)
        except (EchoFMError, ValueError, OSError, RuntimeError) as exc:
            # RuntimeError: a decoder or torch failing on one odd input must not end the study.
            job.failed(item, exc)
            continue
        record.update(study_id=sid, series_number=inst.series_number,
                      sop_instance_uid=uids(inst.sop_uid) if uids else inst.sop_uid)
        clip_json = f"clips/{item.id}/clip.json"
        write_json_atomic(out / clip_json, record)
        files = list(record["files"].values()) + [clip_json]
        job.done(item, {"study_id": sid, "view": record["view"]["label"], "clip_json": clip_json}, files)
    summary = job.finish()
    run = StudyRun(out=out, batch=summary, listed=len(inventory.listed), stage_seconds=timer.totals)
    with timer("write"):
        _finish(run, inventory, bundle, config, uids, job.options)
    return run


def _finish(run: StudyRun, inventory: Inventory, bundle: Bundle, config: StudyConfig, uids,
            options: BatchOptions) -> None:
    """study.json, the SR per study and report.html from every clip record so far."""
    import json

    from echofm import __version__
    from echofm.files import write_csv_atomic
    from echofm.study.report import write_report

    out = run.out
    records = [json.loads((out / row["clip_json"]).read_text()) for row in run.batch.rows]
    known = {_clip_study(inst, uids) for inst in inventory.instances}
    records = [r for r in records if r["study_id"] in known]
    studies = []
    for study_uid, series in inventory.studies.items():
        sid = study_id(uids(study_uid) if uids else study_uid)
        clips = [r for r in records if r["study_id"] == sid]
        clips.sort(key=lambda r: (r.get("series_number") or 0, r["clip_id"]))
        measurements = aggregate(clips)
        entry = {"study_id": sid, "study_instance_uid": uids(study_uid) if uids else study_uid,
                 "clips_found": sum(len(v) for v in series.values()), "clips_analysed": len(clips),
                 "measurements": measurements, "clips": clips}
        if config.dicom and clips:
            entry["sr"] = _write_sr(out, sid, clips, measurements, inventory, config, uids)
        studies.append(entry)
    listed = [{"file": x.relative if options.keep_paths else _file_id(x.path), "kind": x.kind, "reason": x.reason}
              for x in inventory.listed]
    summary = {"echofm_version": __version__,
               "bundle": {"name": bundle.manifest.get("name"), "phantom": bundle.manifest.get("phantom", False),
                          "card": bundle.manifest.get("card", ""), "models": bundle.roles},
               "deidentified": config.deidentify, "studies": studies, "not_analysed": listed,
               "failed": run.batch.failure_rows}
    write_json_atomic(out / "study.json", summary)
    write_csv_atomic(out / "not_analysed.csv", listed, ["file", "kind", "reason"])
    write_report(out / "report.html", summary)
    run.studies = studies


def _clip_study(inst: Instance, uids) -> str:
    return study_id(uids(inst.study_uid) if uids else inst.study_uid)


def _file_id(path: Path) -> str:
    from echofm.batch import input_id

    try:
        return input_id(path)
    except OSError:
        return "unreadable"


def _write_sr(out: Path, sid: str, clips: list[dict], measurements: dict, inventory: Inventory,
              config: StudyConfig, uids) -> Optional[str]:
    import highdicom as hd

    from echofm.study.deid import reference_header
    from echofm.study.dicom_out import ClipMeasurements, write_measurement_report

    by_sop = {(uids(i.sop_uid) if uids else i.sop_uid): i for i in inventory.instances}
    entries = []
    for r in clips:
        inst = by_sop[r["sop_instance_uid"]]
        header = reference_header(inst.path, config.deidentify, uids)
        by_beat = r.get("ef_regressor_beats") or {}
        entries.append(ClipMeasurements(source=header, view=r["view"]["label"], view_confidence=r["view"]["confidence"],
                                        ef=r.get("lv", {}).get("ef_mean"), ef_regressor=r.get("ef_regressor"),
                                        heart_rate=r["phase"]["heart_rate_bpm"],
                                        ef_regressor_beats=[b["ef"] for b in by_beat.get("beats", [])],
                                        ef_regressor_sd=by_beat.get("ef_sd") if by_beat.get("n_beats", 0) > 1 else None))
    values = {"ef": (measurements.get("ef") or {}).get("value"),
              "ef_regressor": (measurements.get("ef_regressor") or {}).get("value"),
              "heart_rate": (measurements.get("heart_rate") or {}).get("value")}
    path = out / "dicom" / sid / "SR.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_measurement_report(path, entries[0].source, entries, values, hd.UID(), 999)
    return f"dicom/{sid}/SR.dcm"
