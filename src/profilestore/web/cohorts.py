"""Cohorts in the browser: the list with counts (open, rename, duplicate, delete), "Save as cohort" from the
Users page, and the filter builder's live preview (cohort_filter.py; the builder itself is part of users.py's
View).  Every change is a POST with the CSRF token that calls cohorts.service and then redirects (303) to the
list with a note of what was done; what the service refuses (a name it cannot store, deleting a cohort that
another one uses: 409) is shown on the page, with the user's input kept.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from psycopg import AsyncConnection
from pydantic import ValidationError

from profilestore.cohorts import service
from profilestore.cohorts.schemas import CohortCreate, CohortOut, CohortUpdate, parse_definition, references
from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import BadRequest, Conflict, NotFound, ProfilestoreError
from profilestore.web.cohort_filter import Builder, describe
from profilestore.web.deps import FormDep, Web, WebDep, context
from profilestore.web.render import page

router = APIRouter(include_in_schema=False)

MAX_NAME = 255
COPY = " (copy)"
DONE = {"renamed": "Renamed to “{}”.", "duplicated": "Duplicated as “{}”.", "deleted": "Deleted “{}”."}


@router.get("/users/filter.json")
async def filter_preview(request: Request, web: WebDep) -> Response:
    """What the builder's rows (the form's fields, as a query string) filter by, for filter.js."""
    builder, _ = Builder.of(request.query_params)
    return JSONResponse(builder.compile().as_json(), headers={"Cache-Control": "no-store"})


async def _listed(conn: AsyncConnection[Any], project_id: int) -> list[dict[str, Any]]:
    """Each cohort with its counts (profiles; all users), computed one cohort at a time."""
    now = time.time()
    out = []
    for cohort in await service.list_cohorts(conn, project_id):
        counts: list[int | None] = []
        error = None
        for all_users in (False, True):
            try:
                found = await service.count_members(conn, project_id, cohort.id, all_users=all_users, now=now)
                counts.append(found.count)
            except ProfilestoreError as exc:
                counts.append(None)
                error = exc.message
        out.append(
            {
                "c": cohort,
                "profiles": counts[0],
                "all": counts[1],
                "error": error,
                "summary": describe(cohort.definition) if cohort.definition else "",
            }
        )
    return out


async def _list_page(
    request: Request,
    web: Web,
    conn: AsyncConnection[Any],
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    editing: tuple[int, str] | None = None,
) -> Response:
    cohorts = await _listed(conn, web.project_id)
    return page(
        request,
        "cohorts.html",
        context(web, cohorts=cohorts, notice=notice, error=error, editing=editing),
        status_code=status,
    )


@router.get("/cohorts")
async def cohorts(request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep) -> Response:
    q = request.query_params
    done = DONE.get(q.get("done", ""))
    notice = done.format(q.get("name", "")) if done else None
    async with database(pool, settings) as conn:
        return await _list_page(request, web, conn, notice=notice)


def _done(what: str, name: str, cohort_id: int | None = None) -> RedirectResponse:
    query = urlencode({"done": what, "name": name})
    anchor = f"#cohort-{cohort_id}" if cohort_id else ""
    return RedirectResponse(f"/cohorts?{query}{anchor}", status_code=303)


def _id(text: str) -> int:
    if not (text.isdigit() and len(text) < 19):
        raise NotFound(f"no cohort {text[:40]} in this project")
    return int(text)


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _invalid(exc: ValidationError) -> str:
    """A pydantic error of a cohort's body, as a sentence."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "cohort"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


@router.get("/cohorts/new")
async def new_cohort_form() -> Response:
    """Saving starts on the Users page, from its filter."""
    return RedirectResponse("/users", status_code=303)


@router.post("/cohorts/new")
async def save_cohort(
    request: Request, web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep
) -> Response:
    """Save as cohort: the Users page's filter (a definition) under a name; then the table of its members."""
    name, text, back = _field(form, "name"), _field(form, "definition"), _field(form, "back")
    if not back.startswith("/users") or back.startswith("//"):
        back = "/users"
    values = {"name": name, "definition": text, "back": back, "summary": ""}
    try:
        try:
            definition = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadRequest("the filter to save is missing; go back to the Users page") from None
        parsed = parse_definition(definition, path="definition")
        values["summary"] = describe(parsed.model_dump(mode="json", by_alias=True, exclude_none=True))
        if not name:
            raise BadRequest("a cohort needs a name")
        try:
            body = CohortCreate(name=name, definition=definition)
        except ValidationError as exc:
            raise BadRequest(_invalid(exc)) from None
        async with database(pool, settings) as conn:
            created = await service.create_cohort(conn, web.project_id, body)
    except ProfilestoreError as exc:
        return page(
            request,
            "cohort_edit.html",
            context(web, error=exc.message, **values),
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/users?cohort={created.id}&saved=1", status_code=303)


@router.post("/cohorts/{cohort}/rename")
async def rename(
    request: Request, cohort: str, web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep
) -> Response:
    cohort_id = _id(cohort)
    name = _field(form, "name")
    async with database(pool, settings) as conn:
        try:
            if not name:
                raise BadRequest("a cohort needs a name")
            try:
                body = CohortUpdate(name=name)
            except ValidationError as exc:
                raise BadRequest(_invalid(exc)) from None
            renamed = await service.update_cohort(conn, web.project_id, cohort_id, body)
        except ProfilestoreError as exc:
            message = f"Could not rename cohort {cohort_id}: {exc.message}"
            return await _list_page(
                request, web, conn, error=message, status=exc.status_code, editing=(cohort_id, name)
            )
    return _done("renamed", renamed.name, renamed.id)


async def _members(conn: AsyncConnection[Any], project_id: int, cohort_id: int) -> list[str]:
    """A static cohort's members (those who are users of the project), a page at a time."""
    out: list[str] = []
    after = None
    while True:
        found = await service.members_page(
            conn, project_id, cohort_id, after=after, limit=service.MAX_PAGE, all_users=True, now=time.time()
        )
        out.extend(m.distinct_id for m in found.members)
        if found.next_after is None:
            return out
        after = found.next_after


@router.post("/cohorts/{cohort}/duplicate")
async def duplicate(
    request: Request, cohort: str, web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep
) -> Response:
    cohort_id = _id(cohort)
    async with database(pool, settings) as conn:
        try:
            source = await service.get_cohort(conn, web.project_id, cohort_id)
            name = source.name[: MAX_NAME - len(COPY)] + COPY
            if source.is_static:
                members = await _members(conn, web.project_id, cohort_id)
                body = CohortCreate(name=name, description=source.description, distinct_ids=members)
            else:
                body = CohortCreate(name=name, description=source.description, definition=source.definition)
            created = await service.create_cohort(conn, web.project_id, body)
        except ProfilestoreError as exc:
            message = f"Could not duplicate cohort {cohort_id}: {exc.message}"
            return await _list_page(request, web, conn, error=message, status=exc.status_code)
    return _done("duplicated", created.name, created.id)


def _users_of(cohort_id: int, cohorts: list[CohortOut]) -> list[CohortOut]:
    """The cohorts whose definitions refer to `cohort_id` (to name them when a delete is refused)."""
    out = []
    for c in cohorts:
        if c.definition is None or c.id == cohort_id:
            continue
        try:
            if any(ref == cohort_id for ref, _ in references(parse_definition(c.definition))):
                out.append(c)
        except ProfilestoreError:
            continue
    return out


@router.post("/cohorts/{cohort}/delete")
async def delete(
    request: Request, cohort: str, web: WebDep, form: FormDep, pool: PoolDep, settings: SettingsDep
) -> Response:
    cohort_id = _id(cohort)
    async with database(pool, settings) as conn:
        try:
            found = await service.get_cohort(conn, web.project_id, cohort_id)
            await service.delete_cohort(conn, web.project_id, cohort_id)
        except Conflict as exc:
            users = _users_of(cohort_id, await service.list_cohorts(conn, web.project_id))
            named = ", ".join(f"“{c.name}”" for c in users) or exc.message
            message = (
                f"“{found.name}” was not deleted: it is used by {named}. Change or delete that cohort first."
            )
            return await _list_page(request, web, conn, error=message, status=exc.status_code)
        except ProfilestoreError as exc:
            message = f"Could not delete cohort {cohort_id}: {exc.message}"
            return await _list_page(request, web, conn, error=message, status=exc.status_code)
    return _done("deleted", found.name)
