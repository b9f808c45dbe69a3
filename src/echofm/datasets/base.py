"""What every task-dataset reader returns: a list of labelled ``Sample``s plus what it skipped.

A reader (``echonet``, ``camus``, ``tmed``, ``lvh``, ``pediatric``, ``manifest``) walks a
public dataset in its own layout and yields ``Sample``s: one recording each, with its
split, its raw labels (``targets``, by name: ``{"ef": 61.3, "view": "A4C"}``), an
optional group (study or patient, for study-level aggregation) and, for segmentation,
a picklable callable returning its label maps.

Skip policy, the same in every reader: an item the dataset lists but that cannot be used
(its file is missing, its label is empty, it has fewer tracings than the task needs) is
skipped with one logged warning and recorded in ``DatasetIndex.skipped`` as
``(item, reason)``; with ``strict=True`` the first such item raises ``DatasetError``
instead. A layout that is wrong as a whole (no CSV, a missing column, a value that does
not parse, nothing usable left) always raises ``DatasetError`` naming the file.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from echofm.errors import EchoFMError

log = logging.getLogger("echofm.datasets")

SPLITS = ("train", "val", "test")
# Frames as stored: uint8 [T, H, W] (grey) or [T, H, W, 3] (RGB), and the frame rate if known.
Frames = tuple[np.ndarray, Optional[float]]


class DatasetError(EchoFMError):
    """A dataset layout or item that cannot be read; the message names the file and the reason."""


@dataclass
class Sample:
    """One recording of a task dataset.

    id: unique name within the dataset (e.g. the EchoNet FileName without ``.avi``).
    path: the file holding the frames (video, DICOM, image, NIfTI ...).
    split: ``train``, ``val`` or ``test``.
    targets: raw labels by name (floats, strings, or lists of strings for multi-label).
    group: study or patient id; predictions of one group can be averaged (TMED studies).
    frames_loader: picklable callable -> ``Frames``; None reads ``path`` with ``load_video``.
    masks_loader: picklable callable ``(height, width)`` of the loaded frames ->
        ``{frame_index: uint8 [H, W] label map}`` with 0 background, 1 LV cavity, 2 LV myocardium, 3 LA (frame indices of the loaded frames).
    meta: technical facts (fps, ED/ES frame indices, pixel spacing ...).
    preprocess: ``path`` is a raw echo recording (a scanner DICOM or video): loading runs it
        through the shared sector pipeline (``preprocess_clip``: sector mask, crop, square
        pad, resize), as ``echofm prepare`` and inference do. Only for samples without
        label maps, whose pixel coordinates the crop would move.
    """

    id: str
    path: Path
    split: str
    targets: dict[str, Any] = field(default_factory=dict)
    group: Optional[str] = None
    frames_loader: Optional[Callable[[], Frames]] = None
    masks_loader: Optional[Callable[[int, int], dict[int, np.ndarray]]] = None
    meta: dict[str, Any] = field(default_factory=dict)
    preprocess: bool = False

    def load_frames(self, size: Optional[int] = None) -> Frames:
        """The recording's frames; ``size`` is the side the model will resize them to, which
        the sector pipeline of a ``preprocess`` sample resizes to directly (None: the
        cropped sector keeps its own resolution). Other samples ignore ``size``."""
        if self.frames_loader is not None:
            return self.frames_loader()
        return load_video(self.path, preprocess=self.preprocess, size=size)

    def load_masks(self, height: int, width: int) -> dict[int, np.ndarray]:
        """Label maps of the labelled frames, for frames of size height x width."""
        if self.masks_loader is None:
            raise DatasetError(f"{self.path}: no segmentation labels for this item")
        masks = self.masks_loader(height, width)
        for frame, m in masks.items():
            if m.shape != (height, width):
                raise DatasetError(f"{self.path}: label map of frame {frame} is {m.shape[0]}x{m.shape[1]}, "
                                   f"frames are {height}x{width}")
        return masks


@dataclass
class DatasetIndex:
    """Samples of one dataset, with what was skipped and why."""

    name: str
    root: Path
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        """Samples of one split (``all`` for every sample)."""
        if name == "all":
            return list(self.samples)
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for x in self.samples if x.split == s) for s in SPLITS}


class SkipLog:
    """Collects skipped items under the common policy (log and record, or raise if strict)."""

    def __init__(self, dataset: str, strict: bool):
        self.dataset, self.strict = dataset, strict
        self.items: list[tuple[str, str]] = []

    def skip(self, item: str, reason: str) -> None:
        if self.strict:
            raise DatasetError(f"{item}: {reason}")
        log.warning("%s: skipping %s: %s", self.dataset, item, reason)
        self.items.append((item, reason))


def finish(name: str, root: Path, samples: list[Sample], skips: SkipLog) -> DatasetIndex:
    """Wrap up a reader: nothing usable left is an error, not an empty dataset."""
    if not samples:
        detail = f" ({len(skips.items)} skipped, first: {skips.items[0][0]}: {skips.items[0][1]})" if skips.items else ""
        raise DatasetError(f"{root}: no usable {name} items found{detail}")
    if skips.items:
        log.warning("%s: %d item(s) skipped, %d kept", name, len(skips.items), len(samples))
    return DatasetIndex(name=name, root=root, samples=samples, skipped=skips.items)


# --- reading helpers shared by the readers -------------------------------------------------

def read_csv_rows(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts (whitespace stripped); raise if the file or a column is missing."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(header) or 'none'})")
        rows = []
        for row in reader:
            rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None})
    return rows


def parse_float(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DatasetError(f"{where}: {value!r} is not a number") from None


def normalise_split(value: str, where: str) -> str:
    """TRAIN/Train/training -> train, VAL/validation -> val, TEST/testing -> test."""
    v = value.strip().lower()
    table = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
             "test": "test", "testing": "test"}
    if v not in table:
        raise DatasetError(f"{where}: unknown split {value!r} (expected train/val/test)")
    return table[v]


def load_video(path: Path, preprocess: bool = False, size: Optional[int] = None) -> Frames:
    """Decode one recording to uint8 frames ``[T, H, W]`` / ``[T, H, W, 3]`` and its fps.

    The single place where task datasets decode files, with the shared readers
    (``echofm.io.read_clip``). With ``preprocess`` a raw source goes through the same
    ``preprocess_clip`` pipeline as ``echofm prepare`` and inference (``load_study``):
    sector masked, cropped, padded square, grey, resized to ``size`` (None: not resized),
    so training and inference see the same pixels. A prepared cache clip (``.npy``) is
    preprocessed already and is only resized.
    """
    from echofm.io import read_clip

    clip = read_clip(path)  # ClipReadError names the file and the reason
    if not preprocess:
        return clip.frames, clip.fps
    from echofm.preprocess.transforms import PreprocessConfig, Resize, build_steps, resize_frames

    if clip.source_kind == "npy":
        frames = clip.frames if size is None or clip.frames.shape[1:3] == (size, size) else resize_frames(clip.frames, size)
        return frames, clip.fps
    for step in build_steps(PreprocessConfig(size=size or PreprocessConfig().size)):
        if size is None and isinstance(step, Resize):
            continue
        clip = step(clip)
    return clip.frames, clip.fps
