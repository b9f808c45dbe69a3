"""EchoNet-LVH (parasternal long-axis videos with wall and cavity measurements).

    MeasurementsList.csv   [index,]HashedFileName,Calc,CalcValue,Frame,X1,X2,Y1,Y2,split
    Batch1/ .. Batch4/     <HashedFileName>.avi

Each row is one caliper measurement (``Calc``: IVSd, LVIDd, LVPWd, LVIDs, ...) of one
video; the rows of a video are gathered into one sample whose targets are the
measurements by name (``{"IVSd": 1.1, "LVPWd": 0.9, ...}``, in the file's units), for
regression of any one of them. The caliper frames are kept in ``meta['frames']``.
"""

from __future__ import annotations

from pathlib import Path

from echofm.datasets.base import DatasetError, DatasetIndex, Sample, SkipLog, finish, normalise_split, parse_float, read_csv_rows

BATCHES = ("Batch1", "Batch2", "Batch3", "Batch4")


def read_lvh(root: str | Path, strict: bool = False) -> DatasetIndex:
    """Index EchoNet-LVH at ``root``: one sample per video with its measurements as targets."""
    root = Path(root)
    csv_file = root / "MeasurementsList.csv"
    rows = read_csv_rows(csv_file, ("HashedFileName", "Calc", "CalcValue", "split"))
    videos: dict[str, Path] = {}
    for batch in BATCHES:
        folder = root / batch
        if folder.is_dir():
            videos.update({p.stem: p for p in folder.glob("*.avi")})
    if not any((root / b).is_dir() for b in BATCHES):
        raise DatasetError(f"{root}: none of the folders {', '.join(BATCHES)} exists (EchoNet-LVH layout)")
    skips = SkipLog("lvh", strict)
    by_video: dict[str, Sample] = {}
    missing: set[str] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{csv_file}:{line}"
        name = Path(row["HashedFileName"]).stem
        if not name:
            skips.skip(where, "empty HashedFileName")
            continue
        if not row["Calc"] or not row["CalcValue"]:
            skips.skip(f"{name} ({where})", "empty Calc or CalcValue")
            continue
        if name not in videos:
            if name not in missing:
                missing.add(name)
                skips.skip(name, f"listed in {csv_file.name} but not found in {', '.join(BATCHES)}")
            continue
        split = normalise_split(row["split"], where)
        sample = by_video.get(name)
        if sample is None:
            sample = by_video[name] = Sample(id=name, path=videos[name], split=split, meta={"frames": {}})
        elif sample.split != split:
            raise DatasetError(f"{where}: video {name} is in split {sample.split} and {split}")
        sample.targets[row["Calc"]] = parse_float(row["CalcValue"], f"{where} column CalcValue")
        if row.get("Frame"):
            sample.meta["frames"][row["Calc"]] = int(parse_float(row["Frame"], f"{where} column Frame"))
    return finish("lvh", root, list(by_video.values()), skips)
