"""FastAPI dependencies shared by the routers: the settings, the store, the queue, and
the bearer-token check every route but the login form goes through."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

from echofm.serve.config import ServeConfig
from echofm.serve.jobs import JobQueue
from echofm.serve.storage import Store

TOKEN_COOKIE = "echofm_token"


def get_config(request: Request) -> ServeConfig:
    return request.app.state.config


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


def given_token(request: Request) -> str:
    """The token the client sent: ``Authorization: Bearer T``, or the login cookie (a
    browser cannot add a header to a page it navigates to)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE, "")


def token_matches(config: ServeConfig, given: str) -> bool:
    return secrets.compare_digest(given.encode(), (config.token or "").encode())


def require_token(request: Request) -> None:
    config = get_config(request)
    if config.token and not token_matches(config, given_token(request)):
        raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
