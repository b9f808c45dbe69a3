"""Applying a fine-tuned task model to new studies: predictions, masks and overlay videos.

``predict_frames(model, frames)`` runs a ``TaskModel`` (from ``load_task_model``) over
windows covering a whole preprocessed video, the way ``evaluate`` does, and returns the
video-level prediction: class probabilities averaged over windows (view, disease), the
per-window values and their mean (EF, as EchoNet-Dynamic reports it), or a label map per
frame with the LV area curve and the EF from the ED/ES areas (segmentation).
``predict_study(model, path)`` reads and preprocesses any echo source first (the same
preprocessing as ``echofm prepare``). ``predict_studies(sources, model, out_dir)`` is the
batch job behind ``echofm predict``: one JSON per input (plus a mask file and an overlay
video for segmentation), an index and a failures list, atomic writes, resumable (the
job skeleton is ``echofm.batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from echofm.batch import BatchJob, BatchOptions, BatchSummary, input_id, model_fingerprint, scan_sources
from echofm.errors import EchoFMError
from echofm.files import atomic_write, save_npy_atomic, write_json_atomic
from echofm.labels import STRUCTURE_COLOURS
from echofm.tasks.adapter import TaskModel
from echofm.tasks.registry import get_task
from echofm.windows import WindowSpec, plan_windows, run_windows, spec_for


@dataclass
class PredictConfig:
    """How studies are read and windowed.

    frame_step: take every Nth frame (None: what the model's input contract asks for each
    study's frame rate). window_step / max_windows: window placement (None: as the run was
    evaluated). Segmentation always uses every covering window so that every frame gets a mask.
    mask_sector: blank and crop to the ultrasound sector before resizing (as ``prepare``), or
    keep the whole image (None: as the model's input contract says, ``contract.sector_masking``).
    overlay: write an MP4 of the frames with the coloured masks (segmentation only);
    overlay_size: its side in pixels (the model's frames are upscaled to it).
    backend: torch, or onnx (the model is then an ``echofm export`` folder of a task
    model, or one of its .onnx files).
    """

    batch_size: int = 8
    window_step: Optional[int] = None
    max_windows: Optional[int] = None
    frame_step: Optional[int] = None
    device: str = "cpu"
    precision: str = "auto"
    mask_sector: Optional[bool] = None
    overlay: bool = True
    overlay_size: int = 256
    backend: str = "torch"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("window_step", "max_windows", "frame_step"):
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


# --- windows ---------------------------------------------------------------------------

def window_spec(model: TaskModel, total: int, fps: Optional[float], config: PredictConfig,
                where: str = "a study") -> tuple[WindowSpec, np.ndarray]:
    """The windows ``[W, F]`` of a ``total``-frame study at ``fps``: the frame step from the
    model's input contract, window placement as the run was evaluated; the config overrides."""
    from echofm.tasks.base import saved_eval_options

    options = saved_eval_options(model, window_step=config.window_step, max_windows=config.max_windows)
    spec = spec_for(model.contract, fps, frame_step=config.frame_step, window_step=options.window_step,
                    max_windows=options.max_windows, every_frame=model.spec.kind == "segmentation", where=where)
    return spec, plan_windows(total, spec)


def run_model(model: TaskModel, frames: np.ndarray, windows: np.ndarray, batch_size: int = 8,
              device: str = "cpu", precision: str = "auto") -> torch.Tensor:
    """The model's raw outputs for each window (float32 on the CPU): [W, C] logits,
    [W] values, or [W, K, F, S, S] segmentation logits."""
    model.eval()
    return run_windows(model, frames, windows, batch_size, device, precision, size=model.cfg.img_size)


# --- one video -------------------------------------------------------------------------

def predict_frames(model: TaskModel, frames: np.ndarray, fps: Optional[float] = None,
                   config: Optional[PredictConfig] = None,
                   pixel_spacing: Optional[tuple[float, float]] = None, where: str = "a study") -> StudyPrediction:
    """Predict one preprocessed video: uint8 frames [T, H, W] or [T, H, W, 3] (resized to
    the model's side when they differ) at ``fps`` (None: not stated; see ``echofm.contract``).
    ``pixel_spacing`` (mm per pixel of ``frames``) adds areas in mm² to a segmentation."""
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
    window, windows = window_spec(model, len(frames), fps, config, where)
    out = run_model(model, frames, windows, config.batch_size, config.device, config.precision)
    record = {"task": spec.task, "kind": spec.kind, "target": spec.target, "frames": int(len(frames)),
              "fps": fps, "size": int(cfg.img_size), "frame_step": window.frame_step, "windows": int(len(windows)),
              "window_starts": [int(w[0]) for w in windows]}
    record["prediction"], masks = get_task(spec.task).summarise_prediction(out, spec, windows, len(frames),
                                                                           pixel_spacing)
    return StudyPrediction(record=record, frames=frames, masks=masks)


def predict_study(model: TaskModel, path: str | Path, config: Optional[PredictConfig] = None) -> StudyPrediction:
    """Read any echo source (DICOM, video, NIfTI, prepared ``.npy`` ...), preprocess it as
    ``prepare`` does at the model's side, and predict it. The record's ``id`` is the
    input's ``batch.input_id`` (the name ``predict_studies`` gives its outputs)."""
    from echofm.contract import sector_masking
    from echofm.inference import load_study

    config = config or PredictConfig()
    mask_sector = sector_masking(getattr(model, "contract", None), config.mask_sector)
    clip = load_study(path, model.cfg.img_size, mask_sector=mask_sector)
    if clip.num_frames < 1:
        raise EchoFMError(f"{path}: no frames")
    result = predict_frames(model, clip.frames, clip.fps, config, clip.pixel_spacing, where=Path(path).name)
    result.record["id"] = input_id(path)
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

def predict_studies(sources: Sequence[str | Path], model: TaskModel | str | Path, out_dir: str | Path,
                    config: Optional[PredictConfig] = None, options: Optional[BatchOptions] = None) -> BatchSummary:
    """Predict every echo source under ``sources`` into ``out_dir``.

    Per input: ``<id>.json`` (``id`` = ``batch.input_id``, the hash of the file's bytes,
    so no file name or path leaks into outputs), and for segmentation ``<id>_masks.npy``
    (uint8 [T, S, S] label maps) and ``<id>_overlay.mp4``. ``index.csv`` lists the
    predictions, ``failures.csv`` the inputs that could not be read or predicted (the
    batch carries on; the summary's exit status says so). A re-run skips inputs whose
    outputs exist; a folder written by another model or settings is refused.
    """
    from echofm.runtime import configure_threads, load_inference_model

    config = config or PredictConfig()
    configure_threads()
    found = scan_sources(sources)  # before anything is created: a missing input leaves no folder
    run_name = None
    if isinstance(model, (str, Path)):
        run_name = str(model)
        model = load_inference_model(model, config.backend, "task", config.device)
    model = model.to(config.device).eval()
    from echofm.contract import sector_masking

    settings = {"model": model_fingerprint(model),
                "mask_sector": sector_masking(getattr(model, "contract", None), config.mask_sector),
                "frame_step": config.frame_step, "window_step": config.window_step, "max_windows": config.max_windows}
    if config.backend != "torch":
        settings["backend"] = config.backend
    job = BatchJob("predict", out_dir, settings, options).open()
    keep_paths = job.options.keep_paths
    for item in job.run(job.pending(found)):
        try:
            result = predict_study(model, item.source.path, config)
        except (EchoFMError, ValueError, OSError, RuntimeError) as exc:
            # RuntimeError: a decoder or torch failing on one odd input must not end the batch.
            job.failed(item, exc)
            continue
        files = _write_outputs(job.out, item.id, result, config, item.source.relative if keep_paths else None,
                               run_name)
        job.done(item, _index_row(result.record, files), files)
    return job.finish()


def _write_outputs(out: Path, ident: str, result: StudyPrediction, config: PredictConfig, source: Optional[str],
                   run_name: Optional[str]) -> list[str]:
    record = {k: v for k, v in result.record.items() if k != "id"}
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
    row = {"task": record["task"], "frames": record["frames"],
           "fps": record["fps"] or "", "windows": record["windows"], "json": files[0]}
    row.update(get_task(record["task"]).prediction_columns(pred))
    if "masks_file" in pred:
        row["masks"] = pred["masks_file"]
    if "overlay_video" in pred:
        row["overlay"] = pred["overlay_video"]
    return row
