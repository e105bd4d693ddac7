"""Signing in with a project's API secret, switching between the projects signed in to, signing out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from profilestore import projects
from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import BadRequest
from profilestore.web.deps import CookiesDep, FormDep, WebDep
from profilestore.web.render import page
from profilestore.web.session import SIGNIN_COOKIE, SIGNIN_MAX_AGE, WebSession, fingerprint

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never `//host` or a full URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/users"


@router.get("/signin")
async def signin_form(
    request: Request, signer: CookiesDep, next: str | None = None, error: str | None = None
) -> Response:
    token, new_cookie = signer.signin_token(request)
    response = page(request, "signin.html", {"csrf": token, "next": safe_next(next), "error": error})
    if new_cookie is not None:
        response.set_cookie(
            SIGNIN_COOKIE,
            new_cookie,
            max_age=SIGNIN_MAX_AGE,
            path="/signin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@router.post("/signin")
async def signin(
    request: Request,
    signer: CookiesDep,
    pool: PoolDep,
    settings: SettingsDep,
    secret: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/users",
) -> Response:
    signer.check_signin(request, csrf)
    async with database(pool, settings) as conn:
        project_id = await projects.project_of_secret(conn, secret.strip()) if secret.strip() else None
        row = None
        if project_id is not None:
            cur = await conn.execute("SELECT api_secret_hash FROM projects WHERE id = %s", (project_id,))
            row = await cur.fetchone()
    if project_id is None or row is None:
        token, _ = signer.signin_token(request)
        context = {
            "csrf": token,
            "next": safe_next(next),
            "error": "That is not the API secret of any project.",
        }
        return page(request, "signin.html", context, status_code=401)
    session = signer.load(request) or WebSession()
    session.projects[project_id] = fingerprint(row["api_secret_hash"])
    session.current = project_id
    response = RedirectResponse(safe_next(next), status_code=303)
    signer.save(request, response, session)
    return response


@router.post("/signout")
async def signout(request: Request, web: WebDep, form: FormDep, signer: CookiesDep) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    signer.clear(response)
    return response


@router.post("/switch")
async def switch(request: Request, web: WebDep, form: FormDep, signer: CookiesDep) -> Response:
    try:
        target = int(str(form.get("project", "")))
    except ValueError:
        raise BadRequest("project: not a project id") from None
    if target not in {pid for pid, _ in web.projects}:
        raise BadRequest("project: sign in to that project first")
    web.session.current = target
    response = RedirectResponse(safe_next(str(form.get("next", "/users"))), status_code=303)
    signer.save(request, response, web.session)
    return response
