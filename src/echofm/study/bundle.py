"""Model bundles: one folder holding the task models a study needs, and its manifest.

A bundle is ``B/bundle.json`` plus one sub-folder per role (``view``, ``segment``,
``ef``, ``disease``), each a saved task model (``model.safetensors`` + ``task.json``)
with the run's ``config.json`` and metrics. The manifest names every model with its
input contract, a summary of its training data and its metrics, and a card saying what
the bundle is for. ``create_bundle`` assembles one from fine-tuning runs (and checks that
each loads and does its role's task); ``phantom_bundle`` trains a complete demonstration
bundle on phantoms; ``load_bundle`` reads one back.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from echofm.errors import EchoFMError
from echofm.files import write_json_atomic
from echofm.labels import LV_CAVITY, STRUCTURES, VIEWS

BUNDLE_FORMAT = "echofm-bundle/1"
MANIFEST = "bundle.json"
ROLES = ("view", "segment", "ef", "disease")
# The task each role's model must have been fine-tuned for.
ROLE_TASK = {"view": "view", "segment": "segment", "ef": "ef", "disease": "disease"}
MODEL_FILES = ("model.safetensors", "task.json")
RUN_FILES = ("config.json", "metrics.jsonl")
PHANTOM_CARD = ("Phantom-trained demonstration bundle: every model was trained on echofm's synthetic "
                "phantoms only. It shows the study pipeline working end to end; it is NOT a clinical model "
                "and its outputs say nothing about real patients.")


def input_contract(model) -> dict:
    """How a task model's input is made (frames per clip, frame step, side, sector masking,
    intensity): the model's own ``contract`` when it has one, else read from its config."""
    contract = getattr(model, "contract", None)
    if contract is not None:
        return contract.to_dict() if hasattr(contract, "to_dict") else dict(contract)
    saved = getattr(model, "finetune_config", {}) or {}
    return {"num_frames": int(model.cfg.num_frames), "frame_step": int(saved.get("period") or 1),
            "img_size": int(model.cfg.img_size), "mask_sector": True,
            "intensity": "uint8 grey scaled to [0, 1], repeated to 3 channels"}


def _check_role(role: str, model, run: Path) -> None:
    spec = model.spec
    want = ROLE_TASK[role]
    if spec.task != want:
        raise EchoFMError(f"{run}: is a {spec.task!r} model; --{role} needs a {want!r} model")
    if role == "segment" and (len(spec.classes) <= LV_CAVITY or spec.classes[LV_CAVITY] != STRUCTURES[LV_CAVITY]):
        raise EchoFMError(f"{run}: segmentation classes {spec.classes} have no LV cavity as class 1")
    if role == "ef" and spec.kind != "regression":
        raise EchoFMError(f"{run}: --ef needs a regression model, got {spec.kind}")


def _training_summary(run: Path, model) -> dict:
    config = {}
    if (run / "config.json").is_file():
        config = json.loads((run / "config.json").read_text())
    spec = model.spec
    summary = {"data": config.get("data", {}), "init": config.get("init"), "task": spec.task,
               "target": spec.target, "kind": spec.kind, "classes": list(spec.classes), "mode": model.mode}
    if spec.kind == "regression":
        summary["target_mean"], summary["target_std"] = spec.target_mean, spec.target_std
    return summary


def _metrics(run: Path) -> dict:
    """The run's evaluation metrics (``metrics.json`` beside or below it), else the last
    validation record of its training log."""
    for path in (run / "metrics.json", run / "eval" / "metrics.json", run.parent / "eval" / "metrics.json"):
        if path.is_file():
            return {"source": path.name if path.parent == run else str(path.relative_to(run.parent)),
                    **json.loads(path.read_text())}
    log = run / "metrics.jsonl"
    if log.is_file():
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if lines:
            return {"source": "metrics.jsonl (last epoch)", **lines[-1]}
    return {}


def create_bundle(out: str | Path, runs: dict[str, str | Path], name: str = "echofm bundle",
                  card: Optional[str] = None, phantom: bool = False) -> Path:
    """Copy the saved task models of ``runs`` (role -> fine-tuning run folder) into the
    bundle ``out`` and write its manifest; every model is loaded first and must do its
    role's task. Needs a view model and at least one of segment / ef."""
    from echofm.tasks.adapter import load_task_model

    runs = {role: Path(path) for role, path in runs.items() if path is not None}
    unknown = sorted(set(runs) - set(ROLES))
    if unknown:
        raise EchoFMError(f"bundle: unknown role(s) {', '.join(unknown)} (choose from {', '.join(ROLES)})")
    if "view" not in runs:
        raise EchoFMError("bundle: needs a view model (--view): the study pipeline routes clips by view")
    if not {"segment", "ef"} & set(runs):
        raise EchoFMError("bundle: needs an LV segmentation (--segment) or EF (--ef) model")
    out = Path(out)
    if (out / MANIFEST).exists():
        raise EchoFMError(f"{out}: holds a bundle already; choose another --out")
    models = {}
    loaded = {}
    for role, run in runs.items():
        if not run.is_dir():
            raise EchoFMError(f"{run}: not a folder (--{role} takes a fine-tuning run folder)")
        try:
            model = load_task_model(run)
        except EchoFMError:
            raise
        except Exception as exc:  # a damaged safetensors file, a foreign task.json
            raise EchoFMError(f"{run}: the {role} model does not load ({type(exc).__name__}: {exc})") from exc
        _check_role(role, model, run)
        loaded[role] = (run, model)
    out.mkdir(parents=True, exist_ok=True)
    for role, (run, model) in loaded.items():
        dest = out / role
        dest.mkdir(exist_ok=True)
        for fname in MODEL_FILES + RUN_FILES:
            if (run / fname).is_file():
                shutil.copy2(run / fname, dest / fname)
        metrics = _metrics(run)
        if metrics:
            write_json_atomic(dest / "metrics.json", metrics)
        spec = model.spec
        models[role] = {"path": role, "task": spec.task, "kind": spec.kind, "target": spec.target,
                        "classes": list(spec.classes), "contract": input_contract(model),
                        "training_data": _training_summary(run, model), "metrics": metrics}
    from echofm import __version__

    manifest = {"format": BUNDLE_FORMAT, "name": name, "echofm_version": __version__, "phantom": bool(phantom),
                "card": card or "", "models": models}
    write_json_atomic(out / MANIFEST, manifest)
    load_bundle(out).load_all()  # what was written loads back
    return out


@dataclass
class Bundle:
    """A bundle read from disk; ``model(role)`` loads (once) and returns a task model."""

    root: Path
    manifest: dict
    _models: dict = field(default_factory=dict, repr=False)

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLES if r in self.manifest["models"]]

    def has(self, role: str) -> bool:
        return role in self.manifest["models"]

    def model(self, role: str):
        from echofm.tasks.adapter import load_task_model

        if not self.has(role):
            raise EchoFMError(f"{self.root}: the bundle has no {role} model")
        if role not in self._models:
            self._models[role] = load_task_model(self.root / self.manifest["models"][role]["path"]).eval()
        return self._models[role]

    def load_all(self) -> "Bundle":
        for role in self.roles:
            self.model(role)
        return self

    def fingerprint(self) -> str:
        """Hash of the manifest and every model's weights (a resumed study must use the same)."""
        import hashlib

        digest = hashlib.blake2b(json.dumps(self.manifest, sort_keys=True).encode(), digest_size=16)
        for role in self.roles:
            digest.update((self.root / role / "model.safetensors").read_bytes())
        return digest.hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Read ``path/bundle.json``; models load on first use."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise EchoFMError(f"{path}: not a model bundle ({MANIFEST} is missing; make one with echofm bundle create)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise EchoFMError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise EchoFMError(f"{manifest_path}: format {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    for role, entry in manifest.get("models", {}).items():
        if role not in ROLES:
            raise EchoFMError(f"{manifest_path}: unknown role {role!r}")
        for fname in MODEL_FILES:
            if not (path / entry["path"] / fname).is_file():
                raise EchoFMError(f"{path / entry['path']}: {fname} is missing")
    return Bundle(root=path, manifest=manifest)


# --------------------------------------------------------------------------- phantom bundle


@dataclass
class PhantomBundleConfig:
    """How ``phantom_bundle`` trains: ``clips_per_view`` phantom clips of ``size`` px and
    ``frames`` frames at ``fps`` for each view; an encoder of ``encoder`` (a ModelConfig
    preset name or dict of fields; random init) or ``init`` (a saved encoder) adapted with
    linear probes (base LR ``blr``, applied as blr x batch / 256) for ``epochs`` epochs."""

    clips_per_view: int = 48
    size: int = 112
    frames: int = 48
    fps: float = 30.0
    encoder: dict = field(default_factory=lambda: dict(img_size=64, patch_size=8, num_frames=8, t_patch_size=2,
                                                       embed_dim=96, depth=3, num_heads=3, decoder_embed_dim=32,
                                                       decoder_depth=1, decoder_num_heads=2, pred_t_dim=4))
    init: Optional[str] = None
    frame_step: int = 2
    blr: Optional[float] = 0.4  # the earlier 0.1 under the batch / 64 rule: the same rate
    epochs: int = 12
    seg_epochs: int = 12
    batch_size: int = 8
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.clips_per_view < 4:
            raise ValueError(f"clips_per_view must be at least 4, got {self.clips_per_view}")
        if self.epochs < 1 or self.seg_epochs < 1:
            raise ValueError("epochs must be at least 1")


class _SectorFrames:
    """Picklable frames loader: phantom frames through the inference sector pipeline."""

    def __init__(self, frames: np.ndarray, fps: float, size: int):
        from echofm.io import Clip
        from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip

        clip = preprocess_clip(Clip(frames=frames, fps=fps), PreprocessConfig(size=size))
        self.frames, self.fps, self.box = clip.frames, fps, clip.sector_box

    def __call__(self):
        return self.frames, self.fps


class _SectorMasks:
    """Picklable masks loader: label maps moved by the same crop, square pad and resize."""

    def __init__(self, masks: dict[int, np.ndarray], box):
        self.masks, self.box = masks, box

    def __call__(self, height: int, width: int) -> dict[int, np.ndarray]:
        import cv2

        out = {}
        for frame, m in self.masks.items():
            if self.box is not None:
                y0, x0, y1, x1 = self.box
                m = m[y0:y1, x0:x1]
            side = max(m.shape)
            padded = np.zeros((side, side), np.uint8)
            top, left = (side - m.shape[0]) // 2, (side - m.shape[1]) // 2
            padded[top:top + m.shape[0], left:left + m.shape[1]] = m
            out[frame] = cv2.resize(padded, (width, height), interpolation=cv2.INTER_NEAREST)
        return out


def _as_inference_sees(data, size: int):
    """The phantom samples with frames and label maps as the study pipeline prepares a
    scanner's DICOM (sector mask, crop, square pad, resize), so training and use agree."""
    for sample in data.samples:
        frames, fps = sample.frames_loader()
        loader = _SectorFrames(frames, fps, size)
        sample.frames_loader = loader
        if sample.masks_loader is not None:
            sample.masks_loader = _SectorMasks(sample.masks_loader.masks, loader.box)
    return data


def phantom_bundle(out: str | Path, config: Optional[PhantomBundleConfig] = None) -> Path:
    """Train a complete bundle on phantoms (view on all four views; LV segmentation and EF
    on apical views; aortic-stenosis grade on parasternal views) and write it to ``out``,
    its card saying it is a phantom-trained demonstration."""
    from echofm.config import ModelConfig, preset
    from echofm.datasets import phantom_task_dataset
    from echofm.model.echofm import VideoEncoder
    from echofm.phantom import PhantomConfig
    from echofm.tasks.engine import FinetuneConfig
    from echofm.tasks.finetuning import finetune_and_evaluate

    config = config or PhantomBundleConfig()
    if config.init:
        encoder = config.init
    else:
        cfg = preset(config.encoder) if isinstance(config.encoder, str) else ModelConfig(**config.encoder)
        import torch

        torch.manual_seed(config.seed)
        encoder = VideoEncoder(cfg)
    side = encoder.cfg.img_size if isinstance(encoder, VideoEncoder) else None
    base = dict(size=config.size, num_frames=config.frames, fps=config.fps)
    n = config.clips_per_view
    splits = (0.7, 0.0, 0.3)
    common = dict(batch_size=config.batch_size, frame_step=config.frame_step, seed=config.seed, progress=config.progress,
                  validate=False)
    jobs = {
        "view": (PhantomConfig(views=VIEWS, **base), {},
                 FinetuneConfig(task="view", mode="linear", epochs=config.epochs, blr=config.blr, **common)),
        "segment": (PhantomConfig(views=("A4C", "A2C"), **base), dict(structures="lv"),
                    FinetuneConfig(task="segment", mode="linear", epochs=config.seg_epochs, **common)),
        "ef": (PhantomConfig(views=("A4C", "A2C"), **base), {},
               FinetuneConfig(task="ef", mode="linear", epochs=config.epochs, blr=config.blr, **common)),
        "disease": (PhantomConfig(views=("PLAX", "PSAX"), as_fraction=0.5, **base), {},
                    FinetuneConfig(task="disease", mode="linear", target="as_severity", labels="as4",
                                   epochs=config.epochs, blr=config.blr, **common)),
    }
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="echofm-bundle-") as tmp:
        runs = {}
        for k, (role, (phantom, options, ft)) in enumerate(jobs.items()):
            data = phantom_task_dataset(n * len(phantom.views), phantom, seed=config.seed * 10 + k, splits=splits,
                                        **options)
            if side is None:
                from echofm.model.weights import load_encoder

                encoder = load_encoder(config.init)
                side = encoder.cfg.img_size
            data = _as_inference_sees(data, side)
            finetune_and_evaluate(data, encoder, ft, Path(tmp) / role)
            runs[role] = Path(tmp) / role / "run"
        name = f"echofm phantom bundle (seed {config.seed})"
        create_bundle(out, runs, name=name, card=PHANTOM_CARD, phantom=True)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["phantom_training"] = dataclasses.asdict(config)
    write_json_atomic(out / MANIFEST, manifest)
    return out
