"""Folder(s) of echo sources -> a prepared cache: clean uint8 clips, manifest, failures.

Layout of the output directory (the batch-job layout of ``echofm.batch``)::

    clips/<id>.npy        uint8 [T, S, S] or [T, S, S, 3], memory-mappable; id = batch.input_id
    manifest.csv          one row per clip (technical columns only; see MANIFEST_COLUMNS)
    failures.csv          id, reason (+ source with keep_paths)
    prepare_config.json   the PreprocessConfig every clip here was made with
    .state/               settings and one record per input (the source of truth)

Safety: a clip is written to a temporary name and renamed into place; only then is its
input's record written. So Ctrl-C or a killed worker leaves at worst an orphan temporary
file (removed by the next run), never a clip or manifest row that a later run would
trust, and a re-run skips every input that has a record.
"""

from __future__ import annotations

import dataclasses
import hashlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from echofm.batch import STATE_DIR, BatchJob, BatchOptions, BatchSummary, Pending, Source, failure_record, scan_sources
from echofm.errors import EchoFMError
from echofm.files import save_npy_atomic, write_json_atomic
from echofm.io.registry import read_clip
from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip


MANIFEST_COLUMNS = (
    "id", "file", "frames", "fps", "height", "width", "spacing_row_mm", "spacing_col_mm",
    "sector_y0", "sector_x0", "sector_y1", "sector_x1", "color", "is_still", "source_kind",
    "manufacturer_model",
)
CLIPS_DIR = "clips"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def in_shard(source: Source, shard: tuple[int, int]) -> bool:
    """Deterministic split by a hash of the root-relative path: no overlap, no gaps."""
    index, count = shard
    digest = hashlib.sha1(source.relative.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count == index


def prepare(
    sources: Sequence[str | Path],
    out: str | Path,
    config: PreprocessConfig = PreprocessConfig(),
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    options: Optional[BatchOptions] = None,
) -> BatchSummary:
    """Prepare every source under `sources` (this shard's share) into `out`.

    Failures are recorded and skipped; the run always finishes, and the summary's
    ``exit_status`` says whether any input failed. A missing source raises before
    anything is created. With no `sources`, only the manifest and failures are rebuilt.
    """
    found = scan_sources(sources) if sources else []
    out = Path(out)
    if not sources and not (out / STATE_DIR).is_dir():
        raise EchoFMError(f"{out}: not a prepared folder, nothing to rebuild (give SRC to prepare inputs)")
    job = BatchJob("prepare", out, {"preprocess": dataclasses.asdict(config)}, options,
                   index_name="manifest.csv", index_columns=list(MANIFEST_COLUMNS), unit="file").open()
    (out / CLIPS_DIR).mkdir(exist_ok=True)
    write_json_atomic(out / "prepare_config.json", dataclasses.asdict(config))
    todo = job.pending(s for s in found if in_shard(s, shard))
    by_key = {item.key: item for item in todo}
    jobs = [(item, str(out), dataclasses.asdict(config), job.options.keep_paths) for item in todo]
    bar = job.progress_bar(len(jobs))
    try:
        for key, record in _run_jobs(jobs, workers):
            job.record(by_key[key], record)
            bar.update(1)
    finally:
        bar.close()
        job.finish()
    return job.summary


# ------------------------------------------------------------------ one input

def prepare_one(item: Pending, out: str, config: dict, keep_paths: bool) -> tuple[str, dict]:
    """Read, preprocess and store one input; returns (its key, its done/failed record).

    Runs in a worker process; every failure of the input itself becomes a record.
    """
    out_dir = Path(out)
    try:
        clip = preprocess_clip(read_clip(item.source.path), PreprocessConfig(**config))
        clip_id = item.id
        relative_file = f"{CLIPS_DIR}/{clip_id}.npy"
        target = out_dir / relative_file
        if not target.is_file():  # the same file seen before (a copy) is kept once
            save_npy_atomic(target, np.ascontiguousarray(clip.frames, dtype=np.uint8))
        spacing = clip.pixel_spacing or (None, None)
        box = clip.sector_box or (None, None, None, None)
        row = {
            "id": clip_id, "file": relative_file, "frames": clip.num_frames,
            "fps": "" if clip.fps is None else round(clip.fps, 3),
            "height": clip.frames.shape[1], "width": clip.frames.shape[2],
            "spacing_row_mm": _blank(spacing[0]), "spacing_col_mm": _blank(spacing[1]),
            "sector_y0": _blank(box[0]), "sector_x0": _blank(box[1]),
            "sector_y1": _blank(box[2]), "sector_x1": _blank(box[3]),
            "color": int(bool(clip.meta.get("color"))), "is_still": int(clip.is_still),
            "source_kind": clip.source_kind,
            "manufacturer_model": clip.meta.get("manufacturer_model", ""),
        }
        if keep_paths:
            row["source"] = item.source.relative
        record = {"status": "done", "id": clip_id, "row": row, "files": [relative_file]}
    except (EchoFMError, MemoryError, ValueError, OSError) as exc:
        record = failure_record(item, exc, keep_paths)
    return item.key, record


def _run_jobs(jobs: list[tuple], workers: int) -> Iterable[tuple[str, dict]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield prepare_one(*job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(prepare_one, *job) for job in jobs]
        try:
            for future in as_completed(futures):
                try:
                    yield future.result()
                except BrokenProcessPool as exc:
                    raise EchoFMError(
                        "a worker process died (killed or out of memory); finished clips are "
                        "kept, run the same command again to resume"
                    ) from exc
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _blank(value):
    return "" if value is None else (round(value, 6) if isinstance(value, float) else value)
