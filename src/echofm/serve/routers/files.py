"""A study's output files (study.json, report.html, cines, first frames, SEG, SR); nothing
else of the data folder: no upload, no job state, nothing outside the study."""

from __future__ import annotations

from pathlib import PurePosixPath

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from echofm.serve.deps import get_store
from echofm.serve.storage import Store

router = APIRouter()

MEDIA_TYPES = {".json": "application/json", ".html": "text/html; charset=utf-8", ".mp4": "video/mp4",
               ".png": "image/png", ".dcm": "application/dicom", ".csv": "text/csv"}


@router.get("/studies/{study}/files/{path:path}")
def study_file(study: str, path: str, store: Store = Depends(get_store)):
    row = store.get(study)
    name = PurePosixPath(path)
    if (row is None or row["status"] != "done" or name.is_absolute() or not name.parts
            or any(p.startswith(".") or p == ".." for p in name.parts) or name.suffix not in MEDIA_TYPES):
        raise HTTPException(404, "no such file")
    out = store.out(study).resolve()
    file = (out / name).resolve()
    if out not in file.parents or not file.is_file():
        raise HTTPException(404, "no such file")
    download = name.name if name.suffix in (".dcm", ".json", ".csv") else None
    return FileResponse(file, media_type=MEDIA_TYPES[name.suffix], filename=download,
                        content_disposition_type="attachment" if download else "inline")
