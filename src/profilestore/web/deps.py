"""The signed-in project of a page request (WebDep), and the CSRF check of a form (checked_form).

A page without a valid session raises SignInRequired, which answers with a redirect to /signin (routes.py).
The session's projects are checked against their stored secrets on every request (one indexed query), so a
rotated secret ends the browser's access to that project at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import BadRequest, Forbidden
from profilestore.web.session import Cookies, SignInRequired, WebSession, check_csrf, fingerprint, signing_key


@dataclass
class Web:
    """What every page knows: the session, its current project and the others it may switch to."""

    session: WebSession
    project_id: int
    project_name: str
    projects: list[tuple[int, str]]

    @property
    def csrf(self) -> str:
        return self.session.csrf


async def cookies(request: Request, pool: PoolDep, settings: SettingsDep) -> Cookies:
    """The app's cookie signer, made at the first page request (its key lives in the database)."""
    found: Cookies | None = getattr(request.app.state, "web_cookies", None)
    if found is None:
        async with database(pool, settings) as conn:
            key = await signing_key(conn)
        found = request.app.state.web_cookies = Cookies(key, settings.session_max_age_seconds)
    return found


CookiesDep = Annotated[Cookies, Depends(cookies)]


async def _web(request: Request, signer: CookiesDep, pool: PoolDep, settings: SettingsDep) -> Web:
    session = signer.load(request)
    if session is None or session.current is None:
        raise SignInRequired()
    async with database(pool, settings) as conn:
        cur = await conn.execute(
            "SELECT id, name, api_secret_hash FROM projects WHERE id = ANY(%s) ORDER BY name",
            (list(session.projects),),
        )
        rows = await cur.fetchall()
    valid = [r for r in rows if fingerprint(r["api_secret_hash"]) == session.projects.get(r["id"])]
    current = next((r for r in valid if r["id"] == session.current), None)
    if current is None:
        raise SignInRequired()
    return Web(session, current["id"], current["name"], [(r["id"], r["name"]) for r in valid])


WebDep = Annotated[Web, Depends(_web)]


async def checked_form(request: Request, web: WebDep) -> FormData:
    """The request's form, after its CSRF token (field `csrf` or header X-CSRF-Token) was checked."""
    try:
        form = await request.form()
    except HTTPException as exc:  # the form parser's own limits (a field over 1 MB, too many fields)
        raise BadRequest(f"the form was refused: {exc.detail}") from None
    sent = form.get("csrf")
    try:
        check_csrf(web.session, sent if isinstance(sent, str) else request.headers.get("x-csrf-token"))
    except Forbidden:
        await form.close()  # an uploaded file's temporary copy goes at once
        raise
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def context(web: Web, **values: Any) -> dict[str, Any]:
    return {"web": web, **values}
