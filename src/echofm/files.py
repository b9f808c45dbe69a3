"""Writing files so that a crash never leaves half of one: temp file + rename."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data) -> None:
    write_text_atomic(path, json.dumps(data))


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    atomic_write(path, write)


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[dict], columns: Optional[Sequence[str]] = None) -> Path:
    """Write dict rows as CSV atomically. Columns default to every key seen, ``id`` first."""
    columns = list(columns or sorted({k for r in rows for k in r}, key=lambda k: (k != "id", k)) or ["id"])

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)
    return Path(path)
