"""Pretraining data sources, named by spec strings and mixed into one Dataset.

Specs (``--data`` may be repeated; sources are concatenated):

* ``DIR`` with ``manifest.csv`` — a prepared cache (``echofm.datasets.cache``);
* ``DIR`` of echo files — read with ``echofm.read_clip`` on the fly (slow; prepare a cache
  for real runs);
* ``synth:N`` — N phantom clips generated on the fly by ``echofm.phantom``, clip i the
  same for a given (seed, i) in every run, process and worker; ``synth:N:P1+P2`` draws
  clip i from phantom preset ``P[i mod n]`` (``echofm.phantom.config.PRESETS``), so
  unlabelled data can vary more than a labelled set does.

Every source yields float clips ``[3, F, H, W]`` in [0, 1] at the model's size, its
windows made by ``echofm.windows`` (as every consumer makes them), and states ``fps``: the
frame rate of the frames inside its clips (None when unknown), which pretraining records
in the model's input contract (``clip_fps``). A source whose randomness should change per
epoch may define ``set_epoch(epoch)``; the trainer calls it, so sampling stays a function
of (seed, epoch, index) and resumes exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from echofm.config import ModelConfig
from echofm.errors import EchoFMError
from echofm.windows import WindowSpec, random_window, window_clip

class DataSpecError(EchoFMError):
    """A ``--data`` spec that cannot be turned into a dataset (names the spec and why)."""


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings, identical in every process and run."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class PhantomClips(Dataset):
    """``synth:N``: N phantom clips, clip i generated from ``stable_seed(seed, "synth", i)``
    with phantom preset ``presets[i % len(presets)]``.

    Frames are generated at ``30 / frame_step`` fps (``fps``), the rate a window of a 30 fps
    recording taken every ``frame_step`` frames has, so a window spans the same time as on
    real data; each clip is one window of every frame.

    A clip is generated once and kept (a copy is handed out) while all ``count`` clips fit in
    ``cache_bytes`` (default 2 GiB; 0: never keep): generating one costs about 30 ms, as much as
    a training step of a small model, and a clip depends only on (seed, index), so keeping it
    changes no number. Each DataLoader worker keeps its own.
    """

    def __init__(self, count: int, cfg: ModelConfig, seed: int, frame_step: int = 1,
                 presets: Sequence[str] = ("default",), cache_bytes: int = 2 << 30):
        from echofm.phantom.config import phantom_preset

        self.count, self.cfg, self.seed = count, cfg, seed
        clip_bytes = 4 * cfg.in_chans * cfg.num_frames * cfg.img_size ** 2
        self._kept: Optional[dict[int, torch.Tensor]] = {} if count * clip_bytes <= cache_bytes else None
        self.fps = 30.0 / frame_step
        if not presets:
            raise DataSpecError("synth: need at least one phantom preset")
        self.phantoms = [phantom_preset(name, size=cfg.img_size, num_frames=cfg.num_frames, fps=self.fps)
                         for name in presets]
        self.spec = WindowSpec(num_frames=cfg.num_frames)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._kept is not None and index in self._kept:
            return self._kept[index].clone()  # a copy: the trainer may change its batch in place
        clip = self._generate(index)
        if self._kept is not None:
            self._kept[index] = clip.clone()
        return clip

    def _generate(self, index: int) -> torch.Tensor:
        from echofm.phantom import generate_case

        case = generate_case(stable_seed(self.seed, "synth", index), self.phantoms[index % len(self.phantoms)])
        idx = random_window(len(case.frames), self.spec, np.random.default_rng(0))  # the one window: all frames
        return window_clip(case.frames, idx, self.cfg.img_size)


class VideoFolder(Dataset):
    """Every echo file under a folder, read and preprocessed on the fly (``load_study``).

    The start frame is drawn from (seed, epoch, index), so it changes per epoch yet
    resumes exactly. Slow (each item decodes and finds the sector): prepare a cache for
    real runs. The files' frame rates are not known before they are read: ``fps`` is None.
    """

    fps = None

    def __init__(self, root: Path, cfg: ModelConfig, seed: int, frame_step: int = 1):
        from echofm.batch import scan_sources

        self.root, self.cfg, self.seed, self.epoch = root, cfg, seed, 0
        self.spec = WindowSpec(num_frames=cfg.num_frames, frame_step=frame_step)
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
        return window_clip(clip.frames, random_window(clip.num_frames, self.spec, rng), self.cfg.img_size)


def _cache_dataset(root: Path, cfg: ModelConfig, seed: int, frame_step: int, augment: bool) -> Dataset:
    from echofm.datasets.cache import CacheDataset

    return CacheDataset(root, num_frames=cfg.num_frames, frame_step=frame_step, size=cfg.img_size,
                        augment=augment, random_window=True, seed=seed)


def resolve_spec(spec: str, cfg: ModelConfig, seed: int, frame_step: int = 1, augment: bool = False) -> Dataset:
    """One ``--data`` spec -> Dataset (see the module docstring for the forms)."""
    if spec.startswith("synth:"):
        from echofm.phantom.config import PRESETS

        parts = spec.split(":")
        count, presets = parts[1], ":".join(parts[2:])
        if not count.isdigit() or int(count) <= 0 or len(parts) > 3:
            raise DataSpecError(f"{spec}: expected synth:N with N a positive integer, or synth:N:PRESET[+PRESET...]")
        names = presets.split("+") if presets else ["default"]
        unknown = [n for n in names if n not in PRESETS]
        if unknown:
            raise DataSpecError(f"{spec}: unknown phantom preset {', '.join(unknown)} (choose from {', '.join(PRESETS)})")
        return PhantomClips(int(count), cfg, seed, frame_step, names)
    root = Path(spec).expanduser()
    if not root.exists():
        raise DataSpecError(f"{spec}: no such directory (expected a prepared cache, a folder of "
                            f"echo files or synth:N)")
    if not root.is_dir():
        raise DataSpecError(f"{spec}: not a directory (expected a prepared cache, a folder of "
                            f"echo files or synth:N)")
    if (root / "manifest.csv").is_file():
        return _cache_dataset(root, cfg, seed, frame_step, augment)
    return VideoFolder(root, cfg, seed, frame_step)


def build_pretrain_dataset(specs: Sequence[str], model_cfg: ModelConfig, seed: int,
                           frame_step: int = 1, augment: bool = False) -> Dataset:
    """All ``specs`` as one Dataset of float clips ``[3, F, H, W]`` (ConcatDataset if several)."""
    if not specs:
        raise DataSpecError("no data given: pass --data DIR, --data synth:N, or list them under "
                            "'data:' in the YAML config")
    sources = [resolve_spec(s, model_cfg, seed, frame_step, augment) for s in specs]
    for spec, source in zip(specs, sources):
        if len(source) == 0:
            raise DataSpecError(f"{spec}: the source holds no clips")
    return sources[0] if len(sources) == 1 else EpochConcat(sources)


def clip_fps(dataset) -> Optional[float]:
    """The frame rate of the frames inside a pretraining source's clips (its ``fps``); for
    several sources their common rate. None when any source's rate is unknown, or when the
    sources disagree by more than 5% (then no single rate describes what the model saw)."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    rates = [getattr(d.dataset if isinstance(d, IndexedClips) else d, "fps", None) for d in parts]
    if not rates or any(r is None for r in rates):
        return None
    lo, hi = min(rates), max(rates)
    return float(np.median(rates)) if hi <= 1.05 * lo else None


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
