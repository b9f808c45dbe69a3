"""Applying a fine-tuned task model to new studies: predictions, masks and overlay videos.

``predict_frames(model, frames)`` runs a ``TaskModel`` (from ``load_task_model``) over
windows covering a whole preprocessed video, the way ``evaluate`` does, and returns the
video-level prediction: class probabilities averaged over windows (view, disease), the
per-window values and their mean (EF, as EchoNet-Dynamic reports it), or a label map per
frame with the LV area curve and the EF from the ED/ES areas (segmentation).
``predict_study(model, path)`` reads and preprocesses any echo source first (the same
preprocessing as ``echofm prepare``). ``predict_studies(sources, model, out_dir)`` is the
batch job behind ``echofm predict``: one JSON per input (plus a mask file and an overlay
video for segmentation), an index and a failures list, atomic writes, resumable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from echofm.errors import EchoFMError
from echofm.files import atomic_write, save_npy_atomic, write_csv_atomic, write_json_atomic
from echofm.labels import LV_CAVITY, STRUCTURE_COLOURS
from echofm.precision import autocast
from echofm.tasks.adapter import TaskModel

log = logging.getLogger("echofm.predict")


@dataclass
class PredictConfig:
    """How studies are read and windowed.

    stride / max_windows / period: window placement (None: as the run was evaluated —
    its ``eval_stride``, ``eval_max_windows`` and ``period``). Segmentation always uses
    every covering window so that every frame gets a mask.
    mask_sector: blank and crop to the ultrasound sector before resizing (as ``prepare``).
    overlay: write an MP4 of the frames with the coloured masks (segmentation only);
    overlay_size: its side in pixels (the model's frames are upscaled to it).
    """

    batch_size: int = 8
    stride: Optional[int] = None
    max_windows: Optional[int] = None
    period: Optional[int] = None
    device: str = "cpu"
    precision: str = "fp32"
    mask_sector: bool = True
    overlay: bool = True
    overlay_size: int = 256
    keep_paths: bool = False
    retry_failed: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("stride", "max_windows", "period"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.overlay_size < 16:
            raise ValueError(f"overlay_size must be at least 16 pixels, got {self.overlay_size}")


@dataclass
class StudyPrediction:
    """The JSON-ready ``record`` of one video; ``masks`` uint8 [T, S, S] for segmentation;
    ``frames`` the preprocessed uint8 frames the model saw ([T, S, S] or [T, S, S, 3])."""

    record: dict
    frames: np.ndarray
    masks: Optional[np.ndarray] = None


@dataclass
class PredictSummary:
    """What a batch run did and where its tables are."""

    predicted: int = 0
    skipped: int = 0
    failed: int = 0
    index: Optional[Path] = None
    failures: Optional[Path] = None
    rows: list[dict] = field(default_factory=list)


# --- windows ---------------------------------------------------------------------------

def window_settings(model: TaskModel, config: PredictConfig) -> dict:
    """period / stride / max_windows: the config's, else those the run was evaluated with."""
    saved = getattr(model, "finetune_config", {}) or {}
    return {"period": config.period or int(saved.get("period") or 1),
            "stride": config.stride or saved.get("eval_stride"),
            "max_windows": config.max_windows or saved.get("eval_max_windows")}


def study_windows(total: int, num_frames: int, period: int, stride: Optional[int],
                  max_windows: Optional[int], every_frame: bool) -> np.ndarray:
    """Frame indices [W, num_frames] of the windows covering a ``total``-frame video.

    The same placement as task evaluation (``datasets.clips.VideoWindows``): back to back
    (or every ``stride`` frames), the last window ending on the last frame, indices past
    the end of a short video clamped to its last frame. ``every_frame`` (segmentation)
    keeps all windows and shifts them through the ``period`` phases so each frame is seen.
    """
    from echofm.datasets.clips import covering_starts, window_indices

    starts = covering_starts(total, num_frames, period, stride)
    if max_windows and len(starts) > max_windows and not every_frame:
        keep = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
        starts = [starts[k] for k in keep]
    if every_frame and period > 1:
        starts = sorted({s + o for s in starts for o in range(period) if s + o < total})
    return np.stack([window_indices(total, num_frames, period, s) for s in starts])


@torch.no_grad()
def run_model(model: TaskModel, frames: np.ndarray, windows: np.ndarray, batch_size: int = 8,
              device: str = "cpu", precision: str = "fp32") -> torch.Tensor:
    """The model's raw outputs for each window (float32 on the CPU): [W, C] logits,
    [W] values, or [W, K, F, S, S] segmentation logits."""
    from echofm.datasets.clips import to_model_frames

    model.eval()
    video = to_model_frames(frames, model.cfg.img_size)  # [3, T, S, S], resized once
    outs = []
    for i in range(0, len(windows), batch_size):
        chunk = torch.stack([video[:, w] for w in windows[i:i + batch_size]]).to(device)
        with autocast(precision, device):
            outs.append(model(chunk).float().cpu())
    return torch.cat(outs)


# --- one video -------------------------------------------------------------------------

def predict_frames(model: TaskModel, frames: np.ndarray, fps: Optional[float] = None,
                   config: Optional[PredictConfig] = None,
                   pixel_spacing: Optional[tuple[float, float]] = None) -> StudyPrediction:
    """Predict one preprocessed video: uint8 frames [T, H, W] or [T, H, W, 3] (resized to
    the model's side when they differ). ``pixel_spacing`` (mm per pixel of ``frames``)
    adds areas in mm² to a segmentation."""
    config = config or PredictConfig()
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] < 1 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W] or [T, H, W, 3], got {frames.dtype} {frames.shape}")
    spec, cfg = model.spec, model.cfg
    if frames.shape[1:3] != (cfg.img_size, cfg.img_size):
        from echofm.preprocess.transforms import resize_frames

        if pixel_spacing is not None:
            pixel_spacing = (pixel_spacing[0] * frames.shape[1] / cfg.img_size,
                             pixel_spacing[1] * frames.shape[2] / cfg.img_size)
        frames = resize_frames(frames, cfg.img_size)
    settings = window_settings(model, config)
    segmentation = spec.kind == "segmentation"
    windows = study_windows(len(frames), cfg.num_frames, settings["period"], settings["stride"],
                            settings["max_windows"], every_frame=segmentation)
    out = run_model(model, frames, windows, config.batch_size, config.device, config.precision)
    record = {"task": spec.task, "kind": spec.kind, "target": spec.target, "frames": int(len(frames)),
              "fps": fps, "size": int(cfg.img_size), "period": settings["period"], "windows": int(len(windows)),
              "window_starts": [int(w[0]) for w in windows]}
    masks = None
    if spec.kind == "regression":
        values = out.reshape(-1).tolist()
        record["prediction"] = {"value": float(np.mean(values)), "window_values": [round(v, 4) for v in values],
                                "unit": "%" if spec.target.lower() == "ef" else None}
    elif spec.kind in ("multiclass", "multilabel"):
        record["prediction"] = _classification(out, spec)
    elif segmentation:
        from echofm.tasks.segmentation import video_probabilities

        masks = video_probabilities(out, torch.from_numpy(windows), len(frames)).argmax(dim=0).numpy().astype(np.uint8)
        record["prediction"] = segmentation_summary(masks, spec.classes, pixel_spacing)
    else:  # pragma: no cover - TaskSpec.kind is validated when the model is built
        raise EchoFMError(f"task kind {spec.kind!r} has no prediction output")
    return StudyPrediction(record=record, frames=frames, masks=masks)


def _classification(logits: torch.Tensor, spec) -> dict:
    multilabel = spec.kind == "multilabel"
    window_probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)  # [W, C]
    probs = window_probs.mean(dim=0).numpy().astype(np.float64)
    pred = {"classes": list(spec.classes), "probabilities": dict(zip(spec.classes, map(float, probs))),
            "window_probabilities": [[round(float(v), 5) for v in row] for row in window_probs.numpy()]}
    if multilabel:
        pred.update(labels=[c for c, p in zip(spec.classes, probs) if p >= 0.5], threshold=0.5)
    else:
        k = int(np.argmax(probs))
        pred.update(label=spec.classes[k], confidence=float(probs[k]))
    return pred


def segmentation_summary(masks: np.ndarray, classes: Sequence[str],
                         pixel_spacing: Optional[tuple[float, float]] = None) -> dict:
    """Per-structure area curves (pixels; mm² when the spacing is known) of label maps
    [T, H, W], and, when the LV cavity is one of the classes, the EF from the ED/ES areas
    (``tasks.ef.ef_from_masks``: single-plane area-length volumes, ED = largest area)."""
    from echofm.tasks.ef import ef_from_masks

    T = len(masks)
    flat = masks.reshape(T, -1)
    areas = {name: np.count_nonzero(flat == value, axis=1).astype(int).tolist()
             for value, name in enumerate(classes) if value > 0}
    summary: dict = {"classes": list(classes), "mask_shape": list(masks.shape), "areas_px": areas}
    if pixel_spacing is not None:
        mm2 = float(pixel_spacing[0] * pixel_spacing[1])
        summary["pixel_spacing_mm"] = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        summary["areas_mm2"] = {k: [round(a * mm2, 3) for a in v] for k, v in areas.items()}
    if len(classes) > LV_CAVITY:
        name = classes[LV_CAVITY]
        summary["lv_area_px"] = areas[name]
        ef = ef_from_masks(masks == LV_CAVITY)
        summary["ef_from_segmentation"] = ef if ef["ef"] is not None else {**ef, "note": "no LV segmented"}
    return summary


def predict_study(model: TaskModel, path: str | Path, config: Optional[PredictConfig] = None) -> StudyPrediction:
    """Read any echo source (DICOM, video, NIfTI, prepared ``.npy`` ...), preprocess it as
    ``prepare`` does at the model's side, and predict it."""
    from echofm.inference import load_study

    config = config or PredictConfig()
    clip = load_study(path, model.cfg.img_size, mask_sector=config.mask_sector)
    if clip.num_frames < 1:
        raise EchoFMError(f"{path}: no frames")
    result = predict_frames(model, clip.frames, clip.fps, config, clip.pixel_spacing)
    result.record["content_hash"] = clip.content_hash
    return result


# --- overlay video ---------------------------------------------------------------------

def overlay_frames(frames: np.ndarray, masks: np.ndarray, size: int, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB [T, size, size, 3]: each frame (upscaled, bilinear) with its label map
    (upscaled, nearest) blended in the structure colours of the evaluation figures."""
    import cv2

    out = np.empty((len(frames), size, size, 3), np.uint8)
    for t, (frame, labels) in enumerate(zip(frames, masks)):
        image = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        lab = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)
        for value, colour in STRUCTURE_COLOURS.items():
            m = lab == value
            rgb[m] = (1 - alpha) * rgb[m] + alpha * 255.0 * np.asarray(colour, np.float32)
        out[t] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def write_overlay_video(path: str | Path, frames: np.ndarray, masks: np.ndarray, fps: Optional[float] = None,
                        size: int = 256) -> Path:
    """Write the overlay (see ``overlay_frames``) as an H.264 MP4, atomically."""
    import av
    from fractions import Fraction

    size += size % 2  # yuv420p needs even sides
    video = overlay_frames(frames, masks, size)
    rate = Fraction(float(fps) if fps and fps > 0 else 30.0).limit_denominator(1000)

    def write(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            for frame in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    atomic_write(path, write)
    return Path(path)


# --- many studies ----------------------------------------------------------------------

STATE_DIR = ".state"
SETTINGS_FILE = "settings.json"


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the weights (and task spec, for a task model): a resumed run must use the same model."""
    digest = hashlib.blake2b(digest_size=16)
    spec = getattr(model, "spec", None)
    if spec is not None:
        digest.update(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_settings(state: Path, settings: dict) -> None:
    """Record a run's model and settings in ``state``; refuse to resume with different ones."""
    path = state / SETTINGS_FILE
    if path.exists():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise EchoFMError(f"{state.parent}: holds outputs of a different model or settings "
                              f"({', '.join(changed)} changed); choose another --out")
    else:
        write_json_atomic(path, settings)


def finished(marker: Path, out: Path, retry_failed: bool,
             expected_files: Callable[[dict], Optional[list[str]]] = lambda record: record.get("files", [])) -> bool:
    """A previous run's result for this input is complete: it failed (and no retry is asked),
    or every file it wrote is still in ``out``.

    ``expected_files(record)`` names the files the successful record must have left, or
    returns None when the record no longer satisfies this run (it is then redone).
    """
    if not marker.exists():
        return False
    try:
        record = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if record.get("status") == "failed":
        return not retry_failed
    files = expected_files(record)
    return files is not None and all((out / name).is_file() for name in files)


def predict_studies(sources: Sequence[str | Path], model: TaskModel | str | Path, out_dir: str | Path,
                    config: Optional[PredictConfig] = None) -> PredictSummary:
    """Predict every echo source under ``sources`` into ``out_dir``.

    Per input: ``<id>.json`` (``id`` = the first 20 hex digits of the decoded pixels'
    hash, so no file name or path leaks into outputs), and for segmentation
    ``<id>_masks.npy`` (uint8 [T, S, S] label maps) and ``<id>_overlay.mp4``.
    ``index.csv`` lists the predictions, ``failures.csv`` the inputs that could not be
    read or predicted (the batch carries on). A re-run skips inputs whose outputs exist.
    """
    from tqdm import tqdm

    from echofm.preprocess.prepare import input_key, scan_sources
    from echofm.tasks.adapter import load_task_model

    config = config or PredictConfig()
    run_name = None
    if not isinstance(model, TaskModel):
        run_name = str(model)
        model = load_task_model(model, map_location="cpu")
    model = model.to(config.device).eval()
    out = Path(out_dir)
    state = out / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    check_settings(state, {"model": model_fingerprint(model), "mask_sector": config.mask_sector,
                            **window_settings(model, config)})
    found = scan_sources(sources)
    summary = PredictSummary()
    bar = tqdm(found, unit="study", desc="predict", disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
    for source in bar:
        marker = state / f"{input_key(source)}.json"
        if finished(marker, out, config.retry_failed):
            summary.skipped += 1
            continue
        try:
            result = predict_study(model, source.path, config)
        except (EchoFMError, ValueError, OSError, RuntimeError) as exc:
            # RuntimeError: a decoder or torch failing on one odd input must not end the batch.
            summary.failed += 1
            log.warning("predict: %s failed: %s", source.relative, exc)
            write_json_atomic(marker, {"status": "failed", "file": source.relative, "reason": str(exc)})
            continue
        files = _write_outputs(out, result, config, source.relative if config.keep_paths else None, run_name)
        row = _index_row(result.record, files)
        if config.keep_paths:
            row["source"] = source.relative
        write_json_atomic(marker, {"status": "done", "files": files, "row": row})
        summary.predicted += 1
    summary.rows, failures = collect_records(state)
    summary.index = write_csv_atomic(out / "index.csv", summary.rows)
    summary.failures = write_csv_atomic(out / "failures.csv", failures, ["file", "reason"])
    return summary


def _write_outputs(out: Path, result: StudyPrediction, config: PredictConfig, source: Optional[str],
                   run_name: Optional[str]) -> list[str]:
    record = dict(result.record)
    ident = record.pop("content_hash")[:20]
    record = {"id": ident, **({"source": source} if source else {}), **({"model": run_name} if run_name else {}),
              **record}
    files = [f"{ident}.json"]
    if result.masks is not None:
        save_npy_atomic(out / f"{ident}_masks.npy", result.masks)
        record["prediction"]["masks_file"] = f"{ident}_masks.npy"
        files.append(f"{ident}_masks.npy")
        if config.overlay:
            write_overlay_video(out / f"{ident}_overlay.mp4", result.frames, result.masks, record.get("fps"),
                                config.overlay_size)
            record["prediction"]["overlay_video"] = f"{ident}_overlay.mp4"
            files.append(f"{ident}_overlay.mp4")
    # The JSON last: its presence means every file it lists is complete.
    write_json_atomic(out / f"{ident}.json", record)
    return files


def _index_row(record: dict, files: list[str]) -> dict:
    pred = record["prediction"]
    row = {"id": files[0][:-len(".json")], "task": record["task"], "frames": record["frames"],
           "fps": record["fps"] or "", "windows": record["windows"], "json": files[0]}
    if "label" in pred:
        row.update(prediction=pred["label"], confidence=round(pred["confidence"], 5))
    elif "labels" in pred:
        row["prediction"] = ";".join(pred["labels"])
    elif "value" in pred:
        row["prediction"] = round(pred["value"], 4)
    elif "ef_from_segmentation" in pred:
        ef = pred["ef_from_segmentation"]["ef"]
        row["prediction"] = "" if ef is None else round(ef, 3)
    if "masks_file" in pred:
        row["masks"] = pred["masks_file"]
    if "overlay_video" in pred:
        row["overlay"] = pred["overlay_video"]
    return row


def collect_records(state: Path) -> tuple[list[dict], list[dict]]:
    """(done rows, failures) from the per-input records of a resumable batch run."""
    rows, failures = [], []
    for marker in sorted(state.glob("*.json")):
        if marker.name == SETTINGS_FILE:
            continue
        record = json.loads(marker.read_text())
        if record.get("status") == "done":
            rows.append(record["row"])
        elif record.get("status") == "failed":
            failures.append({"file": record["file"], "reason": record["reason"]})
    return rows, failures

