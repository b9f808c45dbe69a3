"""TMED-2 (Tufts Medical Echocardiogram Dataset) still images in their public layout.

    <root>/**/TMED2_fold*_labeledpart.csv (or any CSV with a ``query_key`` column):
        query_key,view_label,diagnosis_label,SourceFolder,diagnosis_classifier_split,view_classifier_split
    <root>/**/<SourceFolder>/<query_key>       (PNG stills)

One sample per image; ``group`` is the study, the part of ``query_key`` before its last
``_`` (``1234s1_7.png`` -> ``1234s1``), so that diagnosis predictions can be made per
study. Targets: ``view`` (``view_label``) and ``diagnosis`` (``diagnosis_label``, e.g.
``no_AS``, ``mild_AS``, ``mildtomod_AS``, ``moderate_AS``, ``severe_AS``); the task maps
them (``echofm.tasks.disease``). The split comes from ``<target>_classifier_split``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from echofm.datasets.base import DatasetError, DatasetIndex, Sample, SkipLog, finish, normalise_split, read_csv_rows

TARGET_COLUMNS = {"view": "view_label", "diagnosis": "diagnosis_label"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def study_of(query_key: str) -> str:
    """Study id of an image key: the text before the last underscore (``1234s1_7.png`` -> ``1234s1``)."""
    stem = Path(query_key).stem
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def find_label_csv(root: Path) -> Path:
    """The labelled-part CSV of TMED-2 under root (fold 0 by preference)."""
    candidates = sorted(p for p in root.rglob("*.csv") if p.is_file())
    with_key = []
    for p in candidates:
        with open(p, encoding="utf-8-sig") as f:
            if "query_key" in f.readline():
                with_key.append(p)
    if not with_key:
        raise DatasetError(f"{root}: no CSV with a query_key column found (TMED-2 layout)")
    preferred = [p for p in with_key if "fold0" in p.name and "labeled" in p.name]
    return (preferred or with_key)[0]


def _image_index(root: Path) -> dict[str, list[Path]]:
    """name -> paths of every image under root (one walk instead of one search per row)."""
    index: dict[str, list[Path]] = {}
    for p in root.rglob("*"):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            index.setdefault(p.name, []).append(p)
    return index


def read_tmed(root: str | Path, target: str = "view", csv_path: Optional[str | Path] = None,
              strict: bool = False) -> DatasetIndex:
    """Index TMED-2 images labelled for ``target`` (``view`` or ``diagnosis``)."""
    root = Path(root)
    if target not in TARGET_COLUMNS:
        raise DatasetError(f"TMED-2 target must be one of {', '.join(TARGET_COLUMNS)}, got {target!r}")
    csv_file = Path(csv_path) if csv_path else find_label_csv(root)
    label_col = TARGET_COLUMNS[target]
    rows = read_csv_rows(csv_file, ("query_key", label_col))
    split_col = f"{target}_classifier_split"
    if rows and split_col not in rows[0]:
        split_col = "split" if "split" in rows[0] else None
    images = _image_index(root)
    skips = SkipLog("tmed", strict)
    samples: list[Sample] = []
    for line, row in enumerate(rows, start=2):
        where = f"{csv_file}:{line}"
        key = row["query_key"]
        if not key:
            skips.skip(where, "empty query_key")
            continue
        if not row[label_col]:
            skips.skip(key, f"empty {label_col} in {where}")
            continue
        found = images.get(Path(key).name, [])
        folder = row.get("SourceFolder", "")
        if folder:
            found = [p for p in found if p.parent.name == folder] or found
        if not found:
            skips.skip(key, f"listed in {csv_file.name} but no image {key} under {root}")
            continue
        split_text = row.get(split_col, "") if split_col else ""
        if not split_text:
            skips.skip(key, f"empty {split_col or 'split'} in {where}")
            continue
        targets = {t: row[c] for t, c in TARGET_COLUMNS.items() if row.get(c)}
        samples.append(Sample(id=key, path=found[0], split=normalise_split(split_text, where), targets=targets,
                              group=study_of(key), meta={"still": True}))
    return finish("tmed", root, samples, skips)
