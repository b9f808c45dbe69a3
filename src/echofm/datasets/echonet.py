"""EchoNet-Dynamic in its public layout.

    FileList.csv        FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
    VolumeTracings.csv  FileName,X1,Y1,X2,Y2,Frame   (FileName with ``.avi``)
    Videos/<FileName>.avi

Each traced frame has several rows: the first is the long axis of the LV, the following
ones are the chords of the method of discs. As in EchoNet-Dynamic's public code, the LV
mask is the polygon through the chords' first end points (in order) and then their
second end points (in reverse order), vertices rounded to whole pixels; the long-axis
row is not a vertex. Of the two traced frames the one with the larger traced area is
end-diastole (ED) and the smaller end-systole (ES); the row order is not trusted.

EchoNet-Pediatric (``pediatric.py``) shares this module's tracing code; its tracings may
also be plain contours (``X,Y`` columns), filled as they are.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path
import numpy as np
from matplotlib.path import Path as PolygonPath

from echofm.datasets.base import (DatasetError, DatasetIndex, Sample, SkipLog, finish, normalise_split,
                                  parse_float, read_csv_rows)
from echofm.labels import LV_CAVITY

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames",
                    "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


def stem(name: str) -> str:
    """FileName with or without ``.avi`` -> the bare name (FileList omits it, tracings keep it)."""
    return name[:-4] if name.lower().endswith(".avi") else name


def fill_polygon(xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [H, W]: pixels whose centres (integer coordinates) lie inside the polygon (x, y)."""
    if len(xs) < 3:
        return np.zeros((height, width), dtype=bool)
    polygon = PolygonPath(np.stack([xs, ys], axis=1))
    yy, xx = np.mgrid[0:height, 0:width]
    inside = polygon.contains_points(np.stack([xx.ravel(), yy.ravel()], axis=1))
    return inside.reshape(height, width)


def trace_polygon(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygon (xs, ys) of one frame's tracing rows, vertices rounded to whole pixels.

    rows [K, 4] (X1, Y1, X2, Y2; row 0 = long axis): first ends of the chords in order, then
    second ends in reverse order. rows [K, 2] (X, Y): the contour itself.
    """
    if rows.shape[1] == 4:
        xs = np.concatenate([rows[1:, 0], rows[1:, 2][::-1]])
        ys = np.concatenate([rows[1:, 1], rows[1:, 3][::-1]])
    else:
        xs, ys = rows[:, 0], rows[:, 1]
    return np.rint(xs), np.rint(ys)


def trace_mask(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """LV mask bool [H, W] from one frame's tracing rows ([K, 4] disc chords or [K, 2] contour)."""
    return fill_polygon(*trace_polygon(rows), height, width)


def trace_area(rows: np.ndarray) -> float:
    """Area in pixels enclosed by a frame's tracing (shoelace formula on its polygon)."""
    xs, ys = trace_polygon(rows)
    if len(xs) < 3:
        return 0.0
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def read_tracings(path: Path) -> dict[str, dict[int, np.ndarray]]:
    """VolumeTracings.csv -> {video stem: {frame: rows [K, 4] or [K, 2]}} in file order."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in f.readline().strip().split(",")]
    if all(c in header for c in TRACING_COLUMNS):
        coords = ("X1", "Y1", "X2", "Y2")
    elif all(c in header for c in ("FileName", "X", "Y", "Frame")):
        coords = ("X", "Y")
    else:
        raise DatasetError(f"{path}: expected columns {','.join(TRACING_COLUMNS)} (or FileName,X,Y,Frame), "
                           f"found {','.join(header)}")
    rows = read_csv_rows(path, ("FileName", "Frame") + coords)
    traces: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        frame_text = row["Frame"]
        try:
            frame = int(float(frame_text))
        except ValueError:
            raise DatasetError(f"{where}: frame {frame_text!r} is not an integer") from None
        traces[stem(row["FileName"])][frame].append([parse_float(row[c], where) for c in coords])
    return {name: {fr: np.asarray(v, dtype=np.float64) for fr, v in frames.items()} for name, frames in traces.items()}


def traced_masks(tracings: dict[int, np.ndarray], height: int, width: int) -> dict[int, np.ndarray]:
    """{frame: uint8 [H, W]} LV-cavity label maps (value 1) of every traced frame."""
    return {fr: trace_mask(rows, height, width).astype(np.uint8) * LV_CAVITY for fr, rows in tracings.items()}


def ed_es_by_area(tracings: dict[int, np.ndarray]) -> tuple[int, int, dict[int, float]]:
    """(ED frame, ES frame, {frame: traced area in pixels}): ED is the larger traced area."""
    areas = {fr: trace_area(rows) for fr, rows in tracings.items()}
    ordered = sorted(areas, key=lambda fr: (areas[fr], fr))
    return ordered[-1], ordered[0], areas


def read_echonet(root: str | Path, require_tracings: bool = False, strict: bool = False,
                 videos_dir: str = "Videos") -> DatasetIndex:
    """Index EchoNet-Dynamic at ``root``.

    Targets: ``ef``, ``esv``, ``edv`` (floats). With tracings present, samples carry LV
    masks (``masks_loader``) and ``meta['ed_frame']``/``meta['es_frame']`` chosen by
    traced area. require_tracings: skip videos with fewer than two traced frames (the
    segmentation task needs both ED and ES); otherwise they are kept without ED/ES.
    """
    root = Path(root)
    filelist = root / "FileList.csv"
    rows = read_csv_rows(filelist, ("FileName", "Split"))
    tracing_path = root / "VolumeTracings.csv"
    tracings = read_tracings(tracing_path) if tracing_path.is_file() else {}
    if require_tracings and not tracings:
        raise DatasetError(f"{tracing_path}: file not found (needed for segmentation labels)")
    skips = SkipLog("echonet", strict)
    samples: list[Sample] = []
    for line, row in enumerate(rows, start=2):
        where = f"{filelist}:{line}"
        name = stem(row["FileName"])
        if not name:
            skips.skip(where, "empty FileName")
            continue
        video = root / videos_dir / f"{name}.avi"
        if not video.is_file():
            skips.skip(name, f"listed in {filelist.name} but {video} is missing")
            continue
        targets = {}
        for col in ("EF", "ESV", "EDV"):
            if row.get(col):
                targets[col.lower()] = parse_float(row[col], f"{where} column {col}")
        meta: dict = {}
        for col in ("FPS", "NumberOfFrames", "FrameHeight", "FrameWidth"):
            if row.get(col):
                meta[col.lower()] = parse_float(row[col], f"{where} column {col}")
        sample = Sample(id=name, path=video, split=normalise_split(row["Split"], where), targets=targets, meta=meta)
        traced = tracings.get(name, {})
        if len(traced) >= 2:
            n_frames = int(meta.get("numberofframes", 0))
            beyond = [fr for fr in traced if fr < 0 or (n_frames and fr >= n_frames)]
            if beyond:
                skips.skip(name, f"traced frame(s) {beyond} outside the video's {n_frames} frames")
                continue
            ed, es, areas = ed_es_by_area(traced)
            if ed == es or areas[ed] == areas[es]:
                skips.skip(name, f"the two traced frames have the same area ({areas[ed]} px): ED/ES undecidable")
                continue
            meta.update(ed_frame=ed, es_frame=es, traced_area={str(k): round(v, 1) for k, v in areas.items()})
            sample.masks_loader = functools.partial(traced_masks, traced)
        elif require_tracings:
            skips.skip(name, f"{len(traced)} traced frame(s) in {tracing_path.name} (ED and ES are needed)")
            continue
        samples.append(sample)
    return finish("echonet", root, samples, skips)
