"""The studies as JSON: upload one (POST /api/studies), list them, one's status and progress."""

from __future__ import annotations

import logging
import shutil

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from echofm.serve.config import ServeConfig
from echofm.serve.deps import get_config, get_jobs, get_store
from echofm.serve.jobs import JobQueue
from echofm.serve.pages import public
from echofm.serve.storage import Store, new_id
from echofm.serve.uploads import UploadError, prepare_source, receive, sniff

log = logging.getLogger("echofm.serve")
router = APIRouter(prefix="/api")


@router.post("/studies", status_code=202)
async def upload(request: Request, store: Store = Depends(get_store), config: ServeConfig = Depends(get_config),
                 jobs: JobQueue = Depends(get_jobs)):
    """One file (raw body or the one file of a multipart form): checked, stored, queued."""
    study = new_id()
    incoming = store.incoming / study
    try:
        size = await receive(request, incoming / "upload", config.max_upload_bytes)
        if size == 0:
            raise UploadError(400, "the upload is empty")
        kind = sniff(incoming / "upload")
        if kind is None:
            raise UploadError(415, "not a DICOM file, an MP4 or AVI video, or a ZIP (judged by the content, "
                                   "not the name)")
        await run_in_threadpool(prepare_source, incoming / "upload", kind, incoming / "source", config.max_files,
                                config.max_unpacked_bytes)
        folder = store.folder(study)
        folder.mkdir(parents=True)
        (incoming / "source").rename(folder / "source")
        store.add(study, kind, size)
    except UploadError as exc:
        log.info("echofm serve: upload refused (%d): %s", exc.status, exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    jobs.wake()
    log.info("echofm serve: study %s queued (%s, %d bytes)", study, kind, size)
    return public(store.get(study))


@router.get("/studies")
def list_studies(store: Store = Depends(get_store)):
    return [public(r) for r in store.list()]


@router.get("/studies/{study}")
def study_status(study: str, store: Store = Depends(get_store)):
    row = store.get(study)
    if row is None:
        raise HTTPException(404, "no such study")
    return public(row)
