"""The data folder of `echofm serve`: one folder per study and an SQLite index of them.

Layout::

    DATA/index.sqlite                 one row per study: status, progress, message, times
    DATA/studies/<id>/source/         the upload as the study pipeline reads it
    DATA/studies/<id>/out/            what ``echofm study`` wrote (study.json, clips/, dicom/)
    DATA/incoming/                    uploads still streaming in (moved or removed after)

Study IDs are random (``secrets``), never derived from the upload, so no patient
identifier reaches a URL, a log line or a page title; the uploaded file's name is not
kept. A row's ``status`` goes queued -> running -> done | failed. Every call opens its
own connection (WAL journal), so request threads and the queue's thread share it safely.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Optional

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")
STATUSES = ("queued", "running", "done", "failed")

_SCHEMA = """CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER,
    message TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    summary TEXT
)"""


def new_id() -> str:
    return secrets.token_hex(12)


def valid_id(study: str) -> bool:
    return bool(ID_PATTERN.match(study))


class Store:
    """The studies under ``data`` and their index (see the module docstring)."""

    def __init__(self, data: str | Path):
        self.data = Path(data)
        (self.data / "studies").mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(exist_ok=True)
        self.db = self.data / "index.sqlite"
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    @property
    def incoming(self) -> Path:
        return self.data / "incoming"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def _execute(self, sql: str, args=()) -> int:
        with closing(self._connect()) as db, db:
            return db.execute(sql, args).rowcount

    def folder(self, study: str) -> Path:
        if not valid_id(study):
            raise ValueError("not a study ID")
        return self.data / "studies" / study

    def source(self, study: str) -> Path:
        return self.folder(study) / "source"

    def out(self, study: str) -> Path:
        return self.folder(study) / "out"

    # -- rows

    def add(self, study: str, kind: str, size: int) -> None:
        """Index a study whose source folder is in place; it joins the queue."""
        self._execute("INSERT INTO studies (id, created, kind, bytes, status) VALUES (?, ?, ?, ?, 'queued')",
                      (study, time.time(), kind, size))

    def get(self, study: str) -> Optional[dict]:
        if not valid_id(study):
            return None
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM studies WHERE id = ?", (study,)).fetchone()
        return _row(row)

    def list(self) -> list[dict]:
        with closing(self._connect()) as db:
            return [_row(r) for r in db.execute("SELECT * FROM studies ORDER BY created DESC, id")]

    def claim_next(self) -> Optional[dict]:
        """The oldest queued study, now marked running (one attempt more), or None."""
        with closing(self._connect()) as db, db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT id FROM studies WHERE status = 'queued' ORDER BY created, id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE studies SET status = 'running', attempts = attempts + 1, started = ?, done = 0, "
                       "total = NULL WHERE id = ?", (time.time(), row["id"]))
        return self.get(row["id"])

    def progress(self, study: str, done: int, total: int, message: str = "") -> None:
        self._execute("UPDATE studies SET done = ?, total = ?, message = ? WHERE id = ? AND status = 'running'",
                      (done, total, message, study))

    def finish(self, study: str, status: str, message: str = "", summary: Optional[dict] = None) -> None:
        assert status in ("done", "failed")
        self._execute("UPDATE studies SET status = ?, message = ?, finished = ?, summary = ? WHERE id = ?",
                      (status, message, time.time(), json.dumps(summary) if summary is not None else None, study))

    def recover(self, attempts: int) -> list[tuple[str, str]]:
        """After a restart: each study left running is queued again to resume (the study
        pipeline skips the clips it finished) while it has had fewer than ``attempts``
        starts, else marked failed. Returns (id, new status)."""
        changed = []
        for row in [r for r in self.list() if r["status"] == "running"]:
            if row["attempts"] < attempts:
                self._execute("UPDATE studies SET status = 'queued', message = ? WHERE id = ?",
                              ("interrupted by a server stop; resumed", row["id"]))
                changed.append((row["id"], "queued"))
            else:
                self.finish(row["id"], "failed", f"interrupted by a server stop {row['attempts']} times; not resumed "
                                                 "again")
                changed.append((row["id"], "failed"))
        for stale in self.incoming.iterdir():  # uploads cut off by the stop: never indexed
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        return changed


def _row(row) -> Optional[dict]:
    if row is None:
        return None
    out = dict(row)
    out["summary"] = json.loads(out["summary"]) if out.get("summary") else None
    return out
