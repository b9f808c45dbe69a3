"""Folder(s) of echo sources -> a prepared cache: clean uint8 clips, manifest, failures.

Layout of the output directory::

    clips/<id>.npy        uint8 [T, S, S] or [T, S, S, 3], memory-mappable, id = content hash
    manifest.csv          one row per clip (technical columns only; see MANIFEST_COLUMNS)
    failures.csv          file, reason
    prepare_config.json   the PreprocessConfig every clip here was made with
    .state/<key>.json     one record per finished input (the source of truth)

Safety: a clip is written to a temporary name and renamed into place; only then is its
input's state record written (also temp + rename). The CSVs are rebuilt from the records,
atomically. So Ctrl-C or a killed worker leaves at worst an orphan temporary file (removed
by the next run), never a clip or manifest row that a later run would trust, and a re-run
skips every input that has a record.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from echofm.errors import ClipReadError, EchoFMError
from echofm.io.dicom import has_dicom_magic
from echofm.io.frames import IMAGE_SUFFIXES
from echofm.io.registry import READERS, read_clip, suffix_of
from echofm.preprocess.transforms import PreprocessConfig, preprocess_clip

MANIFEST_COLUMNS = (
    "id", "file", "frames", "fps", "height", "width", "spacing_row_mm", "spacing_col_mm",
    "sector_y0", "sector_x0", "sector_y1", "sector_x1", "color", "is_still", "source_kind",
    "manufacturer_model",
)
FAILURE_COLUMNS = ("file", "reason")
STATE_DIR = ".state"
CLIPS_DIR = "clips"
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Source:
    """One input: its path and the root it was found under (shard keys use the path
    relative to that root, so every machine of a SLURM array agrees on the split)."""

    path: Path
    root: Path

    @property
    def relative(self) -> str:
        rel = os.path.relpath(self.path, self.root)
        return self.path.name if rel == "." else rel


@dataclass
class PrepareResult:
    """What a run did: counts, and where the manifest and failures were written."""

    prepared: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: bool = False
    manifest: Optional[Path] = None
    failures: Optional[Path] = None
    failure_rows: list = field(default_factory=list)


def scan_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Every echo source under `paths`, recursively, in a stable order.

    Files of a known type count, and extension-less files with the DICOM marker. A
    folder holding image files is one frame-sequence source. Hidden names are skipped.
    """
    found: list[Source] = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise EchoFMError(f"{root}: no such file or folder")
        if root.is_file():
            found.append(Source(root, root.parent))
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            here = Path(folder)
            if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
                found.append(Source(here, root))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                file = here / name
                suffix = suffix_of(file)
                if suffix in IMAGE_SUFFIXES:
                    continue  # images in a folder are that folder's frames, found above
                if suffix in READERS or (suffix in ("", ".ima", ".dic") and has_dicom_magic(file)):
                    found.append(Source(file, root))
    unique = {s.path.resolve(): s for s in found}
    return sorted(unique.values(), key=lambda s: str(s.path))


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


def input_key(source: Source) -> str:
    """Identity of one input for resuming: resolved path, size and modification time
    (a changed file is prepared again). Hashed, so no path appears in file names."""
    path = source.path.resolve()
    if path.is_dir():
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file()]
    else:
        st = path.stat()
        stats = [(st.st_size, st.st_mtime_ns)]
    return hashlib.sha256(repr((str(path), stats)).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def prepare(
    sources: Sequence[str | Path],
    out: str | Path,
    config: PreprocessConfig = PreprocessConfig(),
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    keep_paths: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Prepare every source under `sources` (this shard's share) into `out`.

    Failures are recorded and skipped; the run always finishes (the caller decides what
    a failure means). With no `sources`, only the manifest and failures are rebuilt.
    """
    out = Path(out)
    (out / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    (out / STATE_DIR).mkdir(exist_ok=True)
    _check_config(out, config)
    _remove_temporaries(out)

    result = PrepareResult()
    todo: list[tuple[Source, str]] = []
    for source in scan_sources(sources) if sources else []:
        if not in_shard(source, shard):
            continue
        key = input_key(source)
        if _finished(out, key, retry_failed):
            result.skipped += 1
        else:
            todo.append((source, key))

    jobs = [(str(s.path), s.relative, key, str(out), dataclasses.asdict(config), keep_paths) for s, key in todo]
    bar = _progress_bar(len(jobs), progress)
    try:
        for status in _run_jobs(jobs, workers):
            if status == "ok":
                result.prepared += 1
            else:
                result.failed += 1
            bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
        raise
    finally:
        bar.close()
        result.manifest, result.failures, result.failure_rows = rebuild_tables(out)
    return result


def rebuild_tables(out: str | Path) -> tuple[Path, Path, list[dict]]:
    """Write manifest.csv and failures.csv afresh from the state records (atomically).

    Rows of clips whose .npy is missing are left out (that input will be redone).
    """
    out = Path(out)
    rows: dict[str, dict] = {}
    failures: list[dict] = []
    for record_path in sorted((out / STATE_DIR).glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue  # unreadable record: that input simply counts as not done
        if record.get("status") == "ok":
            row = record["row"]
            if (out / row["file"]).is_file():
                rows.setdefault(row["id"], row)
        elif record.get("status") == "failed":
            failures.append({"file": record["file"], "reason": record["reason"]})
    columns = list(MANIFEST_COLUMNS) + (["source"] if any("source" in r for r in rows.values()) else [])
    manifest = _write_csv_atomic(out / "manifest.csv", columns, sorted(rows.values(), key=lambda r: r["id"]))
    failures.sort(key=lambda r: r["file"])
    failed = _write_csv_atomic(out / "failures.csv", list(FAILURE_COLUMNS), failures)
    return manifest, failed, failures


# ------------------------------------------------------------------ one input

def prepare_one(path: str, relative: str, key: str, out: str, config: dict, keep_paths: bool) -> str:
    """Read, preprocess and store one input; record the outcome. Returns "ok"/"failed".

    Runs in a worker process; every failure of the input itself becomes a record.
    """
    out_dir = Path(out)
    try:
        clip = preprocess_clip(read_clip(path), PreprocessConfig(**config))
        clip_id = clip.content_hash
        relative_file = f"{CLIPS_DIR}/{clip_id}.npy"
        target = out_dir / relative_file
        if not target.is_file():  # the same pixels seen before (a duplicate) are kept once
            _save_npy_atomic(target, clip.frames)
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
            row["source"] = relative
        record = {"status": "ok", "row": row}
    except ClipReadError as exc:
        record = {"status": "failed", "file": relative, "reason": exc.reason}
    except (MemoryError, ValueError, OSError) as exc:
        record = {"status": "failed", "file": relative, "reason": f"{type(exc).__name__}: {str(exc)[:160]}"}
    _write_text_atomic(out_dir / STATE_DIR / f"{key}.json", json.dumps(record))
    return record["status"]


def _run_jobs(jobs: list[tuple], workers: int) -> Iterable[str]:
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


# ------------------------------------------------------------------ helpers

def _check_config(out: Path, config: PreprocessConfig) -> None:
    """One output folder holds clips of one configuration only."""
    path = out / "prepare_config.json"
    wanted = dataclasses.asdict(config)
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != wanted:
            raise EchoFMError(f"{out}: prepared with a different configuration {stored}; use another --out")
    else:
        _write_text_atomic(path, json.dumps(wanted, indent=2))


def _finished(out: Path, key: str, retry_failed: bool) -> bool:
    record_path = out / STATE_DIR / f"{key}.json"
    if not record_path.is_file():
        return False
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("status") == "ok":
        return (out / record["row"]["file"]).is_file()
    return record.get("status") == "failed" and not retry_failed


def _remove_temporaries(out: Path) -> None:
    for folder in (out, out / CLIPS_DIR, out / STATE_DIR):
        for leftover in folder.glob(f"{TEMP_PREFIX}*"):
            try:
                leftover.unlink()
            except OSError:
                pass


def _temp_name(target: Path) -> Path:
    return target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")


def _save_npy_atomic(target: Path, array: np.ndarray) -> None:
    temp = _temp_name(target)
    with open(temp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array, dtype=np.uint8))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, target)


def _write_text_atomic(target: Path, text: str) -> None:
    temp = _temp_name(target)
    with open(temp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, target)


def _write_csv_atomic(target: Path, columns: list[str], rows: list[dict]) -> Path:
    temp = _temp_name(target)
    with open(temp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temp, target)
    return target


def _blank(value):
    return "" if value is None else (round(value, 6) if isinstance(value, float) else value)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="prepare", disable=not enabled or total == 0,
                file=sys.stderr, smoothing=0.1, dynamic_ncols=True)
