"""The FastAPI application of `echofm serve` (``create_app``) and running it under
uvicorn (``serve``)."""

from __future__ import annotations

import logging
import warnings
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from echofm.errors import EchoFMError
from echofm.serve import pages
from echofm.serve.config import ServeConfig, ServeWarning
from echofm.serve.deps import require_token
from echofm.serve.jobs import JobQueue
from echofm.serve.routers import api, auth, files
from echofm.serve.routers import pages as page_routes
from echofm.serve.storage import Store

log = logging.getLogger("echofm.serve")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")


def create_app(config: ServeConfig) -> FastAPI:
    """The app over ``config.data``; its queue starts and stops with the app's lifespan."""
    store = Store(config.data)
    jobs = JobQueue(store, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for study, status in store.recover(config.resume_attempts):
            log.warning("echofm serve: study %s was interrupted by a server stop; now %s", study, status)
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()

    app = FastAPI(title="echofm serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config, app.state.store, app.state.jobs = config, store, jobs
    app.include_router(auth.router)
    for router in (page_routes.router, api.router, files.router):
        app.include_router(router, dependencies=[Depends(require_token)])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if _wants_html(request):
            text = pages.login_page() if exc.status_code == 401 else pages.message_page(
                f"{exc.status_code}", str(exc.detail))
            return HTMLResponse(text, status_code=exc.status_code, headers=exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


def check(config: ServeConfig) -> None:
    """Refuse to start without a bundle; warn (``ServeWarning``) when listening beyond
    this machine, and more loudly without a token."""
    from echofm.study.bundle import MANIFEST

    if not (config.bundle / MANIFEST).is_file():
        raise EchoFMError(f"{config.bundle}: not a model bundle ({MANIFEST} is missing; make one with "
                          "echofm bundle create or echofm bundle phantom)")
    if not config.local_only:
        warnings.warn(ServeWarning(
            f"echofm serve listens on {config.host}, beyond this machine: anyone who reaches port {config.port} "
            + ("and has the token " if config.token else "(no --token set!) ")
            + "can upload studies and read every result"), stacklevel=3)


def serve(config: ServeConfig) -> None:
    """Run the app under uvicorn until interrupted."""
    import uvicorn

    check(config)
    config.data.mkdir(parents=True, exist_ok=True)
    print(f"echofm serve: http://{config.host}:{config.port}/ (data in {config.data})", flush=True)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")
