"""Resumable batch jobs: many echo inputs -> one output folder, with a report that tells the truth.

One helper serves every job that walks a list of inputs (``prepare``, ``embed``,
``predict``, ``diagnose``, and the study pipeline): the job computes one input at a time;
this module does the rest. Layout of an output folder::

    <index>.csv          one row per finished input (index.csv, or manifest.csv for prepare)
    failures.csv         id, reason (+ source with keep_paths) of every input that failed
    .state/settings.json the job, ID scheme and settings (model fingerprint ...) the folder holds
    .state/<key>.json    one record per input: done (its row and files) or failed (its reason)

**One ID per input file.** ``input_id`` is the BLAKE2b-128 digest (32 hex digits) of the
file's bytes: the same number ``b2sum -l 128 FILE`` prints, so a user can find which file
an ID names without any path ever being written. It was chosen over the hash of decoded
pixels because it exists for inputs that cannot be decoded (so failures.csv names a
failed file by the same ID the manifest would have), it does not depend on a job's
preprocessing (so prepare, embed, predict and diagnose agree for the same file), and it
carries nothing about the patient. Identical copies of a file share one ID (and one set
of outputs). A folder of frames hashes its image files' names and bytes; a clip of a
prepared cache (``clips/<id>.npy`` beside ``manifest.csv``) keeps its cache ID, so
embedding a prepared cache gives the IDs of the original files.

**Resume.** Records are keyed by a hash of the resolved path, size and modification time
(``state_key``: no path in any file name, and no re-hashing of an archive on a re-run). A
re-run skips inputs with a record, redoes done inputs whose output files are gone, and
redoes failed ones with ``retry_failed``. A folder written with another model or other
settings is refused rather than mixed (``BatchJob.open``). Records, tables and outputs
are written to a temporary name and renamed into place, so a killed job leaves nothing a
later run would trust.

**Truth.** Failures never stop the job; they are logged as they happen, listed in
failures.csv, and make the exit status ``EXIT_FAILED`` unless failures are allowed.
Reasons never carry an absolute path (archive paths hold patient names and dates):
``failure_reason`` strips them, and the input's path relative to its SRC appears only
with ``keep_paths``. Inputs are validated (``scan_sources``) before anything is created.

The module is longer than most (about 500 lines) because these pieces are one contract
that every job shares: splitting inputs, IDs, records and tables apart would let them
drift again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

from echofm.errors import ClipReadError, EchoFMError
from echofm.files import write_csv_atomic, write_json_atomic

log = logging.getLogger("echofm.batch")

STATE_DIR = ".state"
SETTINGS_FILE = "settings.json"
ID_SCHEME = "blake2b-128 of the file bytes"
ID_HEX = 32
FAILURE_COLUMNS = ("id", "reason")
EXIT_FAILED = 1  # some inputs failed (2 stays the CLI's "the command itself failed")
_HASH_CHUNK = 1 << 20


# --- inputs --------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One input: its path and the root it was found under (the path relative to that
    root is what ``keep_paths`` writes and what shard keys use, so every machine agrees)."""

    path: Path
    root: Path

    @property
    def relative(self) -> str:
        rel = os.path.relpath(self.path, self.root)
        return self.path.name if rel == "." else rel


def scan_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Every echo source under ``paths``, recursively, in a stable order.

    Every path is checked before any is walked, so a job given a missing path fails
    before it creates anything. Files of a known type count, and extension-less files
    with the DICOM marker; a folder holding image files is one frame-sequence source.
    Hidden names (``.state``, temporaries) are skipped.
    """
    from echofm.io.dicom import has_dicom_magic
    from echofm.io.frames import IMAGE_SUFFIXES
    from echofm.io.registry import READERS, suffix_of

    roots = [Path(p) for p in paths]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise EchoFMError(f"{missing[0]}: no such file or folder"
                          + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    found: list[Source] = []
    for root in roots:
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


def input_id(path: str | Path) -> str:
    """The ID of one input (see the module docstring): 32 hex digits of BLAKE2b-128 over
    the file's bytes (``b2sum -l 128``), over the names and bytes of the image files of a
    frame folder, or the cache ID of a prepared clip. Raises OSError when unreadable."""
    path = Path(path)
    if _is_prepared_clip(path):
        return path.stem
    digest = hashlib.blake2b(digest_size=ID_HEX // 2)
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            digest.update(file.name.encode("utf-8", "surrogateescape") + b"\0")
            _hash_file(digest, file)
    else:
        _hash_file(digest, path)
    return digest.hexdigest()


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)


def _is_prepared_clip(path: Path) -> bool:
    return (path.suffix == ".npy" and path.parent.name == "clips" and len(path.stem) == ID_HEX
            and all(c in "0123456789abcdef" for c in path.stem)
            and (path.parent.parent / "manifest.csv").is_file())


def state_key(source: Source | str | Path) -> str:
    """Resume key of one input: a hash of its resolved path, size and modification time
    (a changed file is done again; hashed, so no path appears in any file name)."""
    path = Path(source.path if isinstance(source, Source) else source).resolve()
    if path.is_dir():
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file()]
    else:
        st = path.stat()
        stats = [(st.st_size, st.st_mtime_ns)]
    return hashlib.sha256(repr((str(path), stats)).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _path_key(path: Path) -> str:
    """Hash of the resolved path alone: the newest record of one path wins in the tables."""
    return hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]


# --- failure reasons without paths ---------------------------------------------------------

# An absolute POSIX path: a slash not preceded by a word character (or a placeholder's ">"),
# folders that may hold spaces (archive folders are often "NAME^FIRST 19610412") as long
# as another slash follows, and a last part without spaces; or a Windows drive path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~>-])(?:/[^/\n:'\"()\[\]{},;<>]+(?=/))*/[^\s/:'\"()\[\]{},;<>]+/?"
                            r"|\b[A-Za-z]:\\[^\s:'\"]*")


def scrub_paths(text: str, source: Optional[Source] = None, keep_paths: bool = False) -> str:
    """``text`` with every absolute path removed: the input's own path (as given or
    resolved) becomes its path relative to SRC with ``keep_paths``, else ``<input>``;
    any other absolute path becomes ``<path>``."""
    if source is not None:
        own = source.relative if keep_paths else "<input>"
        given = {str(source.path), str(source.path.resolve()), str(source.path.absolute())}
        for path in sorted(given, key=len, reverse=True):
            text = text.replace(path, own)
        for root in {str(source.root.resolve()), str(source.root.absolute())}:
            if len(root) > 1:
                text = text.replace(root, "<src>")
    return _ABSOLUTE_PATH.sub("<path>", text)


def failure_reason(exc: BaseException, source: Optional[Source] = None, keep_paths: bool = False,
                   limit: int = 300) -> str:
    """One line saying why an input failed, with no absolute path in it. A ClipReadError
    gives its reason (the reader names the problem; the path is the record's business)."""
    if isinstance(exc, ClipReadError):
        text = exc.reason
    else:
        text = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, EchoFMError):
            text = f"{type(exc).__name__}: {text}"
    text = " ".join(scrub_paths(text, source, keep_paths).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- settings ------------------------------------------------------------------------------

def model_fingerprint(model) -> str:
    """Hash of a model's weights (and task spec, for a task model): a resumed job must
    use the same model, or its outputs would not be comparable. A model that knows its
    own (an ONNX Runtime model: the hash of its file) gives that."""
    if callable(getattr(model, "fingerprint", None)):
        return model.fingerprint()
    digest = hashlib.blake2b(digest_size=16)
    spec = getattr(model, "spec", None)
    if spec is not None and dataclasses.is_dataclass(spec):
        digest.update(json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --- the job -------------------------------------------------------------------------------

@dataclass
class BatchOptions:
    """How a batch job runs (not what it computes, so not part of its settings).

    allow_failures: exit status 0 even when inputs failed (they are still listed).
    keep_paths: write each input's path relative to its SRC (``source`` column); off by
        default because archive paths often carry patient names and dates.
    retry_failed: try inputs that failed in an earlier run again.
    progress: show a progress bar (percent, rate, ETA) on stderr.
    on_progress: called as ``on_progress(finished, total)`` before the first input and
        after each one (a caller that shows progress elsewhere, e.g. ``echofm serve``'s
        job page); ``total`` counts the inputs this run does, not those skipped.
    """

    allow_failures: bool = False
    keep_paths: bool = False
    retry_failed: bool = False
    progress: bool = True
    on_progress: Optional[Callable[[int, int], None]] = None


@dataclass
class BatchSummary:
    """What a job did this run, where its tables are, and the exit status that says so.

    failed: inputs that failed in this run; failed_before: inputs of this run skipped
    because an earlier run recorded them as failed (both count as failed).
    """

    job: str
    out: Path
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_before: int = 0
    allow_failures: bool = False
    index: Optional[Path] = None
    failures: Optional[Path] = None
    rows: list[dict] = field(default_factory=list)
    failure_rows: list[dict] = field(default_factory=list)

    @property
    def failed_total(self) -> int:
        return self.failed + self.failed_before

    @property
    def exit_status(self) -> int:
        """0 when every input is done (or failures are allowed), else ``EXIT_FAILED``."""
        return EXIT_FAILED if self.failed_total and not self.allow_failures else 0

    def to_dict(self) -> dict:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed_total,
                "index": str(self.index), "failures": str(self.failures)}

    def line(self) -> str:
        """The last line a command prints: counts, and where the reasons are."""
        head = f"echofm {self.job}: {self.done} done, {self.skipped} skipped (finished before)"
        if not self.failed_total:
            return f"{head}, 0 failed; index: {self.index}"
        earlier = (f" ({self.failed_before} in an earlier run; --retry-failed tries again)"
                   if self.failed_before else "")
        allowed = " (allowed by --allow-failures)" if self.allow_failures else ""
        return f"{head}, {self.failed_total} failed{earlier}{allowed}; reasons in {self.failures}"


@dataclass
class Pending:
    """An input still to do: its source and resume key. ``id`` is hashed on first use (so
    a worker process can compute it) unless ``known_id`` gives it (e.g. a study job that
    names a DICOM instance by its own rule)."""

    source: Source
    key: str
    known_id: Optional[str] = field(default=None, repr=False)

    @property
    def id(self) -> str:
        if self.known_id is None:
            try:
                self.known_id = input_id(self.source.path)
            except OSError:
                self.known_id = self.key  # unreadable bytes: the resume key names it instead
        return self.known_id


def failure_record(item: Pending, exc: BaseException, keep_paths: bool = False) -> dict:
    """The record of a failed input (a worker process builds it and returns it to the job)."""
    record = {"status": "failed", "id": item.id, "reason": failure_reason(exc, item.source, keep_paths)}
    if keep_paths:
        record["source"] = item.source.relative
    return record


ExpectedFiles = Callable[[dict], Optional[list[str]]]


def _listed_files(record: dict) -> Optional[list[str]]:
    return record.get("files", [])


class BatchJob:
    """The skeleton of one batch job over one output folder.

    ``job.open()``; ``for item in job.run(job.pending(sources)): ...`` with
    ``job.done(item, row, files)`` or ``job.failed(item, exc)`` per input;
    ``summary = job.finish()``. ``settings`` is what makes outputs comparable (model
    fingerprint, sampling, precision ...): a folder written with other settings is
    refused. ``expected_files(record)`` names the files a done record must still have
    (None: the record no longer satisfies this run).
    """

    def __init__(self, name: str, out: str | Path, settings: dict, options: Optional[BatchOptions] = None, *,
                 index_name: str = "index.csv", index_columns: Optional[Sequence[str]] = None,
                 unit: str = "study", expected_files: ExpectedFiles = _listed_files):
        self.name = name
        self.out = Path(out)
        self.state = self.out / STATE_DIR
        # As JSON gives it back (tuples become lists), so a re-run compares like with like.
        self.settings = json.loads(json.dumps({"job": name, "ids": ID_SCHEME, **settings}, default=str))
        self.options = options or BatchOptions()
        self.index_name = index_name
        self.index_columns = list(index_columns) if index_columns else None
        self.unit = unit
        self.expected_files = expected_files
        self.summary = BatchSummary(job=name, out=self.out, allow_failures=self.options.allow_failures)
        self._bar = None

    # -- before the loop

    def open(self) -> "BatchJob":
        """Create the folder (validate inputs before), check the settings, drop temporaries."""
        path = self.state / SETTINGS_FILE
        if path.is_file():
            try:
                before = json.loads(path.read_text())
            except ValueError:
                before = {}
            if before != self.settings:
                changed = sorted(k for k in set(before) | set(self.settings) if before.get(k) != self.settings.get(k))
                raise EchoFMError(f"{self.out}: holds outputs of a different model or settings "
                                  f"({', '.join(changed)} changed); choose another --out")
        else:
            self.state.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, self.settings)
        _remove_temporaries(self.out)
        return self

    def pending(self, sources: Iterable[Source], key_of: Callable[[Source], str] = state_key) -> list[Pending]:
        """The inputs this run must do; counts the others as skipped (and failed before).
        ``key_of`` names an input's record (default: its path, size and modification time;
        a job whose inputs are extracted afresh each run passes a key of its own)."""
        todo = []
        for source in sources:
            key = key_of(source)
            record = self._read(self.state / f"{key}.json")
            if record is not None and record.get("status") == "failed" and not self.options.retry_failed:
                self.summary.skipped += 1
                self.summary.failed_before += 1
            elif record is not None and record.get("status") == "done" and self._complete(record):
                self.summary.skipped += 1
            else:
                todo.append(Pending(source, key))
        return todo

    def run(self, items: Sequence[Pending]) -> Iterator[Pending]:
        """``items`` under a progress bar (percent, rate, ETA; none when not ``progress``)."""
        bar = self.progress_bar(len(items))
        report = self.options.on_progress or (lambda finished, total: None)
        report(0, len(items))
        try:
            for finished, item in enumerate(items, 1):
                yield item
                bar.update(1)
                report(finished, len(items))
        finally:
            bar.close()

    def progress_bar(self, total: int):
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit=self.unit, desc=self.name, file=sys.stderr, dynamic_ncols=True,
                         smoothing=0.1, disable=not self.options.progress or total == 0)
        return self._bar

    # -- one input

    def done(self, item: Pending, row: dict, files: Sequence[str] = ()) -> dict:
        """Record a finished input: its index ``row`` (``id`` first; ``source`` with
        keep_paths) and the ``files`` (relative to the folder) it wrote. Write the
        outputs before: the record is what a later run trusts."""
        row = {"id": item.id, **{k: v for k, v in row.items() if k != "id"}}
        if self.options.keep_paths:
            row["source"] = item.source.relative
        self.record(item, {"status": "done", "id": item.id, "row": row, "files": list(files)})
        return row

    def failed(self, item: Pending, exc: BaseException) -> str:
        """Record (and log) a failed input; returns the path-free reason."""
        return self.record(item, failure_record(item, exc, self.options.keep_paths))["reason"]

    def record(self, item: Pending, record: dict) -> dict:
        """Store a done or failed ``record`` for ``item`` (atomically) and count it."""
        record = {**record, "input": _path_key(item.source.path), "time": time.time()}
        write_json_atomic(self.state / f"{item.key}.json", record)
        if record["status"] == "done":
            self.summary.done += 1
        else:
            self.summary.failed += 1
            name = f" ({record['source']})" if record.get("source") else ""
            with self._above_the_bar():
                log.warning("echofm %s: %s%s failed: %s", self.name, record["id"], name, record["reason"])
        return record

    # -- after the loop

    def finish(self) -> BatchSummary:
        """Write the index and failures.csv afresh from every record (atomically) and
        return the summary. Done rows whose files are gone are left out (redone next run)."""
        newest: dict[str, dict] = {}
        for path in sorted(self.state.glob("*.json")):
            if path.name == SETTINGS_FILE:
                continue
            record = self._read(path)
            if record is None or record.get("status") not in ("done", "failed"):
                continue  # unreadable record: that input simply counts as not done
            who = record.get("input", path.stem)
            if who not in newest or record.get("time", 0) >= newest[who].get("time", 0):
                newest[who] = record
        rows: dict[str, dict] = {}
        failures = []
        for record in newest.values():
            if record["status"] == "done":
                if self._complete(record):
                    rows.setdefault(record["row"]["id"], record["row"])
            else:
                failures.append({"id": record["id"], "reason": record["reason"],
                                 **({"source": record["source"]} if record.get("source") else {})})
        ordered = sorted(rows.values(), key=lambda r: str(r["id"]))
        columns = self.index_columns
        if columns is not None and any("source" in r for r in ordered) and "source" not in columns:
            columns = columns + ["source"]
        s = self.summary
        s.rows = ordered
        s.index = _write_table(self.out / self.index_name, ordered, columns)
        s.failure_rows = sorted(failures, key=lambda r: (r.get("source", ""), r["id"]))
        failure_columns = list(FAILURE_COLUMNS) + (["source"] if any("source" in r for r in failures) else [])
        s.failures = _write_table(self.out / "failures.csv", s.failure_rows, failure_columns)
        return s

    # -- helpers

    def _above_the_bar(self):
        """Log lines printed above a running progress bar instead of through it."""
        if self._bar is None or self._bar.disable:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm(loggers=[log])

    def _complete(self, record: dict) -> bool:
        files = self.expected_files(record)
        return files is not None and all((self.out / name).is_file() for name in files)

    @staticmethod
    def _read(path: Path) -> Optional[dict]:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None


def _write_table(path: Path, rows: list[dict], columns: Optional[list[str]]) -> Path:
    """CSV of ``rows``; with ``columns`` given, keys outside them are dropped."""
    if columns is not None:
        rows = [{k: r.get(k, "") for k in columns} for r in rows]
    return write_csv_atomic(path, rows, columns)


def _remove_temporaries(out: Path) -> None:
    """Temporary files a killed run left (``files.atomic_write`` names them ``.<name>.*.tmp``)."""
    for folder in (out, out / STATE_DIR, *(p for p in out.iterdir() if p.is_dir() and p.name != STATE_DIR)):
        for leftover in folder.glob(".*"):
            if leftover.is_file() and (leftover.name.endswith(".tmp") or leftover.name.startswith(".tmp-")):
                try:
                    leftover.unlink()
                except OSError:
                    pass
