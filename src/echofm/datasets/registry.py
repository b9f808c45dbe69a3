"""One entry point over the dataset readers: ``read_dataset(format, root, task=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from echofm.choices import DATASET_FORMATS as FORMATS
from echofm.datasets.base import DatasetError, DatasetIndex

# Which label a task learns when --target is not given, where it differs from the task's own default.
_DEFAULT_TARGETS = {("disease", "tmed"): "diagnosis", ("view", "csv"): "label", ("ef", "csv"): "label"}


def default_target(task: str, fmt: str) -> Optional[str]:
    """The label a task reads from a format by default (None: the task's own default)."""
    return _DEFAULT_TARGETS.get((task, fmt))


def default_scheme(task: str, fmt: str) -> Optional[str]:
    """The disease label scheme a format implies when none is given: TMED-2's AS grades
    group as its 3 classes (``as3``); elsewhere None (the task's own default)."""
    return "as3" if task == "disease" and fmt == "tmed" else None


def read_dataset(fmt: str, root: str | Path, task: Optional[str] = None, target: Optional[str] = None,
                 strict: bool = False, preprocess: bool = True) -> DatasetIndex:
    """Index a dataset of format ``fmt`` for ``task`` (``ef``, ``view``, ``segment``, ``disease``).

    The task decides what an item needs: segmentation keeps only items with label maps;
    TMED-2 reads the view or the diagnosis split; the CSV manifest reads column ``target``.
    preprocess: the CSV manifest's raw files go through the sector pipeline (False: read as stored).
    """
    segment = task == "segment"
    if fmt == "echonet":
        from echofm.datasets.echonet import read_echonet

        return read_echonet(root, require_tracings=segment, strict=strict)
    if fmt == "camus":
        from echofm.datasets.camus import read_camus

        return read_camus(root, require_masks=segment, strict=strict)
    if fmt == "tmed":
        from echofm.datasets.tmed import read_tmed

        tmed_target = target or ("view" if task in (None, "view") else "diagnosis")
        return read_tmed(root, target=tmed_target, strict=strict)
    if fmt == "lvh":
        from echofm.datasets.lvh import read_lvh

        return read_lvh(root, strict=strict)
    if fmt == "pediatric":
        from echofm.datasets.pediatric import read_pediatric

        return read_pediatric(root, require_tracings=segment, strict=strict)
    if fmt in ("csv", "manifest"):
        from echofm.datasets.manifest import read_manifest

        return read_manifest(root, target=target or "label", strict=strict, preprocess=preprocess)
    raise DatasetError(f"unknown dataset format {fmt!r}; choose from {', '.join(FORMATS)}")
