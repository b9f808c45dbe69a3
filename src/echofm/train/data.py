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
from torch.utils.data import ConcatDataset, Dataset

from echofm.config import ModelConfig
from echofm.errors import EchoFMError
from echofm.preprocess.transforms import resize_frames, sample_window, to_model_tensor

class DataSpecError(EchoFMError):
    """A ``--data`` spec that cannot be turned into a dataset (names the spec and why)."""


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings, identical in every process and run."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def frames_to_model_clip(frames: np.ndarray, cfg: ModelConfig, start: int = 0,
                         stride: int = 1) -> torch.Tensor:
    """uint8 ``[T, H, W]`` or ``[T, H, W, 3]`` -> float ``[3, F, S, S]`` in [0, 1] for ``cfg``.

    Takes ``cfg.num_frames`` frames from ``start`` every ``stride`` (a short clip loops, as a
    cine does) and resizes to ``cfg.img_size`` with the shared preprocessing functions.
    """
    arr = np.asarray(frames)
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W] or [T, H, W, 3] with T > 0, got {arr.shape}")
    idx = (start + stride * np.arange(cfg.num_frames)) % arr.shape[0]
    window = arr[idx]
    if window.shape[1:3] != (cfg.img_size, cfg.img_size):
        window = resize_frames(window, cfg.img_size)
    return to_model_tensor(window)


class PhantomClips(Dataset):
    """``synth:N``: N phantom clips, clip i generated from ``stable_seed(seed, "synth", i)``.

    Frames are generated at ``30 / stride`` fps, the rate a stride-``stride`` window of a
    30 fps recording has, so a window spans the same time as on real data.
    """

    def __init__(self, count: int, cfg: ModelConfig, seed: int, stride: int = 1):
        from echofm.phantom import PhantomConfig

        self.count, self.cfg, self.seed = count, cfg, seed
        self.phantom = PhantomConfig(size=cfg.img_size, num_frames=cfg.num_frames, fps=30.0 / stride)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        from echofm.phantom import generate_case

        case = generate_case(stable_seed(self.seed, "synth", index), self.phantom)
        return frames_to_model_clip(case.frames, self.cfg)


class VideoFolder(Dataset):
    """Every echo file under a folder, read and preprocessed on the fly (``load_study``).

    The start frame is drawn from (seed, epoch, index), so it changes per epoch yet
    resumes exactly. Slow (each item decodes and finds the sector): prepare a cache for
    real runs.
    """

    def __init__(self, root: Path, cfg: ModelConfig, seed: int, stride: int = 1):
        from echofm.batch import scan_sources

        self.root, self.cfg, self.seed, self.stride, self.epoch = root, cfg, seed, stride, 0
        self.files = [s.path for s in scan_sources([root])]
        if not self.files:
            raise DataSpecError(f"{root}: no echo files found and no manifest.csv")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from echofm.inference import load_study

        clip = load_study(self.files[index], self.cfg.img_size)
        rng = np.random.default_rng(stable_seed(self.seed, self.epoch, "video", index))
        start = sample_window(clip.num_frames, self.cfg.num_frames, self.stride, rng)[0]
        return frames_to_model_clip(clip.frames, self.cfg, int(start), self.stride)


def _cache_dataset(root: Path, cfg: ModelConfig, seed: int, stride: int, augment: bool) -> Dataset:
    from echofm.datasets.cache import CacheDataset

    return CacheDataset(root, num_frames=cfg.num_frames, stride=stride, size=cfg.img_size,
                        augment=augment, random_window=True, seed=seed)


def resolve_spec(spec: str, cfg: ModelConfig, seed: int, frame_stride: int = 1, augment: bool = False) -> Dataset:
    """One ``--data`` spec -> Dataset (see the module docstring for the forms)."""
    if spec.startswith("synth:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) <= 0:
            raise DataSpecError(f"{spec}: expected synth:N with N a positive integer")
        return PhantomClips(int(count), cfg, seed, frame_stride)
    root = Path(spec).expanduser()
    if not root.exists():
        raise DataSpecError(f"{spec}: no such directory (expected a prepared cache, a folder of "
                            f"echo files or synth:N)")
    if not root.is_dir():
        raise DataSpecError(f"{spec}: not a directory (expected a prepared cache, a folder of "
                            f"echo files or synth:N)")
    if (root / "manifest.csv").is_file():
        return _cache_dataset(root, cfg, seed, frame_stride, augment)
    return VideoFolder(root, cfg, seed, frame_stride)


def build_pretrain_dataset(specs: Sequence[str], model_cfg: ModelConfig, seed: int,
                           frame_stride: int = 1, augment: bool = False) -> Dataset:
    """All ``specs`` as one Dataset of float clips ``[3, F, H, W]`` (ConcatDataset if several)."""
    if not specs:
        raise DataSpecError("no data given: pass --data DIR, --data synth:N, or list them under "
                            "'data:' in the YAML config")
    sources = [resolve_spec(s, model_cfg, seed, frame_stride, augment) for s in specs]
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
