"""The HTML pages: the list with the upload form, a job's progress, a study's results."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse

from echofm.serve import pages
from echofm.serve.config import ServeConfig
from echofm.serve.deps import get_config, get_store
from echofm.serve.storage import Store

router = APIRouter(default_response_class=HTMLResponse)


def _row(store: Store, study: str) -> dict:
    row = store.get(study)
    if row is None:
        raise HTTPException(404, "no such study")
    return row


@router.get("/")
def index(store: Store = Depends(get_store), config: ServeConfig = Depends(get_config)):
    return pages.index_page(store.list(), config.max_upload_mb, config.max_files)


@router.get("/jobs/{study}")
def job(study: str, store: Store = Depends(get_store)):
    return pages.job_page(_row(store, study))


@router.get("/studies/{study}")
def study_page(study: str, store: Store = Depends(get_store)):
    row = _row(store, study)
    if row["status"] != "done":
        return RedirectResponse(f"/jobs/{study}", status_code=303)
    summary = json.loads((store.out(study) / "study.json").read_text())
    return pages.study_page(row, summary)
