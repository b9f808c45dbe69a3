"""A generic CSV manifest for any collection of videos, DICOMs or images.

    path,label[,split][,more columns...]

``path`` (or ``filename`` / ``file``) is relative to the CSV's folder (or absolute). ``label`` is a class name, a
number (regression) or several class names separated by ``;`` or ``|`` (multi-label).
``split`` is train/val/test; without the column every row is ``train``. Extra columns
become further targets (``--target`` picks one), and a ``group`` column groups rows
(e.g. a study) for aggregated predictions.

The files are raw recordings (scanner DICOMs, videos, images): loading runs them through
the shared sector pipeline (``preprocess_clip``: sector mask, crop, square pad, resize to
the model's input), the one ``echofm prepare`` and inference use, so a model never sees
other pixels in training than at inference. Prepared cache clips (``.npy`` from
``echofm prepare``) are already preprocessed and are only resized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from echofm.datasets.base import DatasetError, DatasetIndex, Sample, SkipLog, finish, normalise_split, read_csv_rows

MANIFEST_NAMES = ("manifest.csv", "labels.csv")
PATH_COLUMNS = ("path", "filename", "file")


def find_manifest(data: Path) -> Path:
    """The CSV itself, or ``manifest.csv`` / ``labels.csv`` inside a folder."""
    if data.is_file():
        return data
    for name in MANIFEST_NAMES:
        if (data / name).is_file():
            return data / name
    raise DatasetError(f"{data}: no manifest CSV (give the file, or put {' or '.join(MANIFEST_NAMES)} there)")


def read_manifest(data: str | Path, target: str = "label", path_column: Optional[str] = None,
                  strict: bool = False, preprocess: bool = True) -> DatasetIndex:
    """Index a manifest CSV; rows whose ``target`` is empty or whose file is missing are skipped.

    path_column: the column naming the files (default: the first of path, filename, file present).
    preprocess: run raw files through the sector pipeline when loaded (see the module docstring);
    False reads the frames as stored (files that are already clean, square crops).
    """
    csv_file = find_manifest(Path(data))
    if path_column is None:
        with open(csv_file, encoding="utf-8-sig") as f:
            header = [h.strip() for h in f.readline().split(",")]
        path_column = next((c for c in PATH_COLUMNS if c in header), "path")
    rows = read_csv_rows(csv_file, (path_column, target))
    skips = SkipLog("manifest", strict)
    samples: list[Sample] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{csv_file}:{line}"
        rel = row[path_column]
        if not rel:
            skips.skip(where, f"empty {path_column}")
            continue
        path = Path(rel) if Path(rel).is_absolute() else csv_file.parent / rel
        if not row[target]:
            skips.skip(rel, f"empty {target} in {where}")
            continue
        if not path.exists():
            skips.skip(rel, f"listed in {csv_file.name} but {path} is missing")
            continue
        if rel in seen:
            raise DatasetError(f"{where}: {rel} is listed twice")
        seen.add(rel)
        split = normalise_split(row["split"], where) if row.get("split") else "train"
        targets = {k: v for k, v in row.items() if k not in (path_column, "split", "group") and v != ""}
        samples.append(Sample(id=rel, path=path, split=split, targets=targets, group=row.get("group") or None,
                              preprocess=preprocess))
    return finish("manifest", csv_file.parent, samples, skips)
