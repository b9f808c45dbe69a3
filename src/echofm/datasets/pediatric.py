"""EchoNet-Pediatric in its public layout: one EchoNet-style folder per view.

    A4C/FileList.csv        FileName,EF,Sex,Age,Weight,Height,Split   (Split: integer fold 0-9)
    A4C/VolumeTracings.csv  FileName,X,Y,Frame   (contours; X1,Y1,X2,Y2 chords also accepted)
    A4C/Videos/<FileName>
    PSAX/...                same layout

Folds become splits by ``test_folds`` / ``val_folds`` (defaults: fold 9 test, fold 8
validation, the rest train). Targets: ``ef`` and ``view`` (``A4C`` or ``PSAX``). ED/ES
of the traced frames are decided by traced area, as for EchoNet-Dynamic.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

from echofm.datasets.base import DatasetError, DatasetIndex, Sample, SkipLog, finish, parse_float, read_csv_rows
from echofm.datasets.echonet import ed_es_by_area, read_tracings, stem, traced_masks
from echofm.labels import PEDIATRIC_VIEWS


def fold_to_split(fold: int, val_folds: Sequence[int], test_folds: Sequence[int]) -> str:
    if fold in test_folds:
        return "test"
    if fold in val_folds:
        return "val"
    return "train"


def read_pediatric(root: str | Path, views: Sequence[str] = PEDIATRIC_VIEWS, val_folds: Sequence[int] = (8,),
                   test_folds: Sequence[int] = (9,), require_tracings: bool = False,
                   strict: bool = False) -> DatasetIndex:
    """Index EchoNet-Pediatric at ``root`` (folders ``A4C``/``PSAX``; missing view folders are an error)."""
    root = Path(root)
    skips = SkipLog("pediatric", strict)
    samples: list[Sample] = []
    for view in views:
        if view not in PEDIATRIC_VIEWS:
            raise DatasetError(f"{root}: unknown EchoNet-Pediatric view {view!r} (expected one of {', '.join(PEDIATRIC_VIEWS)})")
        folder = root / view
        filelist = folder / "FileList.csv"
        rows = read_csv_rows(filelist, ("FileName", "EF", "Split"))
        tracing_path = folder / "VolumeTracings.csv"
        tracings = read_tracings(tracing_path) if tracing_path.is_file() else {}
        for line, row in enumerate(rows, start=2):
            where = f"{filelist}:{line}"
            name = row["FileName"]
            if not name:
                skips.skip(where, "empty FileName")
                continue
            video = folder / "Videos" / (name if Path(name).suffix else f"{name}.avi")
            if not video.is_file():
                skips.skip(f"{view}/{name}", f"listed in {filelist} but {video} is missing")
                continue
            if not row["EF"]:
                skips.skip(f"{view}/{name}", f"empty EF in {where}")
                continue
            try:
                fold = int(float(row["Split"]))
            except ValueError:
                raise DatasetError(f"{where}: Split {row['Split']!r} is not an integer fold") from None
            sample = Sample(id=f"{view}/{stem(name)}", path=video, split=fold_to_split(fold, val_folds, test_folds),
                            targets={"ef": parse_float(row["EF"], f"{where} column EF"), "view": view},
                            meta={"fold": fold})
            traced = tracings.get(stem(name), {})
            if len(traced) >= 2:
                ed, es, _ = ed_es_by_area(traced)
                sample.meta.update(ed_frame=ed, es_frame=es)
                sample.masks_loader = functools.partial(traced_masks, traced)
            elif require_tracings:
                skips.skip(f"{view}/{name}", f"{len(traced)} traced frame(s) in {tracing_path} (ED and ES are needed)")
                continue
            samples.append(sample)
    return finish("pediatric", root, samples, skips)
