"""Pretraining data sources, named by spec strings and mixed into one Dataset.

Specs (``--data`` may be repeated; sources are concatenated):

* ``DIR`` with ``manifest.csv`` — a prepared cache (``echofm.datasets.cache``);
* ``DIR`` of echo files — read with ``echofm.read_clip`` on the fly (slow; prepare a cache
  for real runs);
* ``synth:N`` — N phantom clips generated on the fly by ``echofm.phantom``, clip i the
  same for a given (seed, i) in every run, process and worker.

Every source yields float clips ``[3, F, H, W]`` in [0, 1] at the model's size. A source
whose randomness should change per epoch may define ``set_epoch(epoch)``; the trainer
calls it, so sampling stays a function of (seed, epoch, index) and resumes exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset

from echofm.config import ModelConfig
from echofm.errors import EchoFMError

VIDEO_SUFFIXES = (".dcm", ".dicom", ".avi", ".mp4", ".mov", ".mkv", ".nii", ".nii.gz", ".mhd",
                  ".npy")


class DataSpecError(EchoFMError):
    """A ``--data`` spec that cannot be turned into a dataset (names the spec and why)."""


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings, identical in every process and run."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def frames_to_model_clip(frames: np.ndarray, cfg: ModelConfig, start: int = 0,
                         stride: int = 1) -> torch.Tensor:
    """uint8 ``[T, H, W]`` or ``[T, H, W, 3]`` -> float ``[3, F, S, S]`` in [0, 1] for ``cfg``.

    Takes ``cfg.num_frames`` frames from ``start`` every ``stride`` (looping a short clip)
    and resizes to ``cfg.img_size`` square. Interim glue: after merge this should defer
    to the shared preprocessing steps so training and inference cannot drift apart.
    """
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W] or [T, H, W, C] with T > 0, got {arr.shape}")
    idx = (start + stride * np.arange(cfg.num_frames)) % arr.shape[0]
    x = torch.from_numpy(np.ascontiguousarray(arr[idx])).float().div_(255.0)  # [F, H, W, C]
    x = x.permute(3, 0, 1, 2)  # [C, F, H, W]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1, -1)
    if x.shape[-2:] != (cfg.img_size, cfg.img_size):
        x = F.interpolate(x, size=(cfg.img_size, cfg.img_size), mode="bilinear", align_corners=False,
                          antialias=True)
    return x[:3].clamp_(0.0, 1.0).contiguous()


class PhantomClips(Dataset):
    """``synth:N``: N phantom clips, clip i generated from ``stable_seed(seed, "synth", i)``."""

    def __init__(self, count: int, cfg: ModelConfig, seed: int):
        self.count, self.cfg, self.seed = count, cfg, seed
        try:
            from echofm import phantom  # lazy: optional sibling package
        except ImportError as exc:
            raise DataSpecError(f"synth:{count}: the phantom generator (echofm.phantom) is not "
                                f"available ({exc})") from exc
        # Expected after merge: generate(seed, num_frames, size) -> object with uint8 .frames
        # [T, H, W] (plus ground truth). Resolved here once so a wrong API fails at startup.
        self._generate: Callable = getattr(phantom, "generate", None)
        if self._generate is None:
            raise DataSpecError(f"synth:{count}: echofm.phantom has no generate(seed, num_frames, "
                                f"size) function")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        sample = self._generate(seed=stable_seed(self.seed, "synth", index),
                                num_frames=self.cfg.num_frames, size=self.cfg.img_size)
        frames = getattr(sample, "frames", sample)
        return frames_to_model_clip(frames, self.cfg)


class VideoFolder(Dataset):
    """Every echo file under a folder, read on the fly with ``echofm.read_clip``.

    The start frame is drawn from (seed, epoch, index), so it changes per epoch yet
    resumes exactly.
    """

    def __init__(self, root: Path, cfg: ModelConfig, seed: int, stride: int = 1):
        self.root, self.cfg, self.seed, self.stride, self.epoch = root, cfg, seed, stride, 0
        self.files = sorted(p for p in root.rglob("*")
                            if p.is_file() and p.name.lower().endswith(VIDEO_SUFFIXES))
        if not self.files:
            raise DataSpecError(f"{root}: no echo files found (looked for "
                                f"{', '.join(VIDEO_SUFFIXES)}) and no manifest.csv")
        try:
            from echofm import read_clip  # lazy: the io registry lands with the ingest work
        except ImportError as exc:
            raise DataSpecError(f"{root}: reading videos needs echofm.read_clip ({exc})") from exc
        self._read = read_clip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        clip = self._read(self.files[index])
        span = self.cfg.num_frames * self.stride
        room = max(clip.num_frames - span, 0)
        rng = np.random.default_rng(stable_seed(self.seed, self.epoch, "video", index))
        return frames_to_model_clip(clip.frames, self.cfg, int(rng.integers(0, room + 1)), self.stride)


def _cache_dataset(root: Path, cfg: ModelConfig, seed: int) -> Dataset:
    try:
        from echofm.datasets.cache import CacheDataset  # lazy: lands with the ingest work
    except ImportError as exc:
        raise DataSpecError(f"{root}: reading a prepared cache needs echofm.datasets.cache "
                            f"({exc})") from exc
    # Expected after merge: CacheDataset(root, num_frames=, image_size=, seed=) -> [3, T, H, W].
    return CacheDataset(root, num_frames=cfg.num_frames, image_size=cfg.img_size, seed=seed)


def resolve_spec(spec: str, cfg: ModelConfig, seed: int, frame_stride: int = 1) -> Dataset:
    """One ``--data`` spec -> Dataset (see the module docstring for the forms)."""
    if spec.startswith("synth:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) <= 0:
            raise DataSpecError(f"{spec}: expected synth:N with N a positive integer")
        return PhantomClips(int(count), cfg, seed)
    root = Path(spec).expanduser()
    if not root.exists():
        raise DataSpecError(f"{spec}: no such directory (expected a prepared cache, a folder of "
                            f"echo files or synth:N)")
    if not root.is_dir():
        raise DataSpecError(f"{spec}: not a directory (expected a prepared cache, a folder of "
                            f"echo files or synth:N)")
    if (root / "manifest.csv").is_file():
        return _cache_dataset(root, cfg, seed)
    return VideoFolder(root, cfg, seed, frame_stride)


def build_pretrain_dataset(specs: Sequence[str], model_cfg: ModelConfig, seed: int,
                           frame_stride: int = 1) -> Dataset:
    """All ``specs`` as one Dataset of float clips ``[3, F, H, W]`` (ConcatDataset if several)."""
    if not specs:
        raise DataSpecError("no data given: pass --data DIR, --data synth:N, or list them under "
                            "'data:' in the YAML config")
    sources = [resolve_spec(s, model_cfg, seed, frame_stride) for s in specs]
    for spec, source in zip(specs, sources):
        if len(source) == 0:
            raise DataSpecError(f"{spec}: the source holds no clips")
    return sources[0] if len(sources) == 1 else EpochConcat(sources)


class EpochConcat(ConcatDataset):
    """ConcatDataset that forwards ``set_epoch`` to the sources that have it."""

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)


class IndexedClips(Dataset):
    """Yields ``(index, clip)`` so the trainer can draw each clip's mask from its index."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]


def check_clip(clip, cfg: ModelConfig, where: str) -> None:
    """Raise DataSpecError unless ``clip`` is a float tensor [3, F, S, S] matching ``cfg``."""
    want = (cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size)
    if not isinstance(clip, torch.Tensor) or not clip.is_floating_point():
        raise DataSpecError(f"{where}: items must be float tensors [C, F, H, W], got "
                            f"{type(clip).__name__}{'' if not isinstance(clip, torch.Tensor) else ' ' + str(clip.dtype)}")
    if tuple(clip.shape) != want:
        raise DataSpecError(f"{where}: clips are {list(clip.shape)} but the model needs {list(want)} "
                            f"(num_frames/img_size in the config)")
