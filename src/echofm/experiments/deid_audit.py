"""De-identification audit: search every text file a prepared cache holds for every
identifier its source files carried (the invented names and IDs of phantom DICOMs)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# Files a cache writes that a person or a later tool reads as text (clips are arrays).
TEXT_SUFFIXES = (".csv", ".json", ".jsonl", ".txt", ".yaml")


def identifier_strings(truth: dict[str, dict], min_part: int = 4) -> set[str]:
    """Every identifier of a phantom set's truth records, whole and (for names such as
    ``DOE^JANE``) each part of at least ``min_part`` characters, as written in DICOM."""
    found: set[str] = set()
    for rec in truth.values():
        for value in rec.get("identifiers", {}).values():
            found.add(value)
            found.update(p for p in value.replace("^", " ").split() if len(p) >= min_part)
    return found


def count_identifiers(folder: str | Path, identifiers: Iterable[str]) -> int:
    """How many times any of ``identifiers`` occurs in the text files under ``folder`` (0: clean)."""
    identifiers = [s for s in identifiers if s]
    hits = 0
    for path in Path(folder).rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(errors="replace")
            hits += sum(text.count(s) for s in identifiers)
    return hits
