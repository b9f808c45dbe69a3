"""The login form: a browser sends the token once and gets it back as an HttpOnly cookie
(API clients send ``Authorization: Bearer TOKEN`` on every request instead)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from echofm.serve import pages
from echofm.serve.config import ServeConfig
from echofm.serve.deps import TOKEN_COOKIE, get_config, token_matches

router = APIRouter(default_response_class=HTMLResponse)


@router.get("/login")
def login_form():
    return pages.login_page()


@router.post("/login")
async def login(request: Request, config: ServeConfig = Depends(get_config)):
    if int(request.headers.get("content-length") or 0) > 4096:
        return HTMLResponse(pages.login_page("that is not a token"), status_code=413)
    body = await request.body()
    token = (parse_qs(body[:4096].decode("utf-8", "replace")).get("token") or [""])[0]
    if not config.token or not token_matches(config, token):
        return HTMLResponse(pages.login_page("that token is not the server's"), status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response
