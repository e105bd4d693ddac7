"""The Users table (`/users`), its count, its CSV export, and one profile (`/users/profile?distinct_id=`).

The URL is the state: filter (`where`, `cohort`), "All Users" (`all=1`), order (`sort`, `dir`), page (`after`,
a keyset cursor) and columns (`cols`) are all in the query string, so a view can be bookmarked, shared and
stepped back through.  The rows come from query/profiles/table.py, the export from the same function as
`GET /api/profiles/export`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import BadRequest, ProfilestoreError
from profilestore.query.params import where_param
from profilestore.query.profiles.export import ExportQuery, export_lines
from profilestore.query.profiles.table import TableQuery, table_count, table_page
from profilestore.query.streaming import stream
from profilestore.web.deps import WebDep, context
from profilestore.web.render import page

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
DEFAULT_COLUMNS = 5  # property columns shown when the URL names none: the page's most common
PERSON = ("$avatar", "$name", "$first_name", "$last_name", "$email")


@dataclass
class View:
    """The table's state, read from the query string."""

    where: str = ""
    cohort: int | None = None
    all_users: bool = False
    sort: str = "$last_seen"
    descending: bool = True
    after: str | None = None
    columns: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, request: Request) -> View:
        q = request.query_params
        cohort = q.get("cohort") or None
        if cohort is not None and not cohort.isdigit():
            raise BadRequest("cohort: not a cohort id")
        cols = [c.strip() for c in q.get("cols", "").split(",") if c.strip()]
        return cls(
            where=q.get("where", "").strip(),
            cohort=int(cohort) if cohort else None,
            all_users=q.get("all") == "1",
            sort=q.get("sort") or "$last_seen",
            descending=q.get("dir", "desc") != "asc",
            after=q.get("after") or None,
            columns=cols[:50],
        )

    def params(self) -> dict[str, Any]:
        """The state as query parameters (without the page), for links that change one thing."""
        return {
            "where": self.where or None,
            "cohort": self.cohort,
            "all": "1" if self.all_users else None,
            "sort": None if self.sort == "$last_seen" else self.sort,
            "dir": None if self.descending else "asc",
            "cols": ",".join(self.columns) or None,
        }

    def query(self, limit: int = PAGE_SIZE) -> TableQuery:
        return TableQuery(
            where=where_param("where", self.where or None),
            cohort=self.cohort,
            all_users=self.all_users,
            sort=self.sort,
            descending=self.descending,
            after=self.after,
            limit=limit,
        )


def person(properties: dict[str, Any] | None, distinct_id: str) -> dict[str, str | None]:
    """Who a row is, as Mixpanel's table shows it: avatar, then $name, first and last name, $email, the id."""
    props = properties or {}
    name = props.get("$name") or " ".join(
        str(props[k]) for k in ("$first_name", "$last_name") if isinstance(props.get(k), str) and props[k]
    )
    avatar = props.get("$avatar")
    return {
        "name": str(name or props.get("$email") or distinct_id),
        "email": str(props["$email"]) if name and isinstance(props.get("$email"), str) else None,
        "avatar": avatar if isinstance(avatar, str) and avatar.startswith("https://") else None,
        "initial": (str(name or props.get("$email") or distinct_id)[:1] or "?").upper(),
    }


@router.get("/users")
async def users(request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep) -> Response:
    error = None
    rows: list[dict[str, Any]] = []
    next_after = None
    try:
        view = View.of(request)
        async with database(pool, settings) as conn:
            found = await table_page(conn, web.project_id, view.query(), now=time.time())
        rows, next_after = found.rows, found.next_after
    except ProfilestoreError as exc:
        view = view if "view" in locals() else View()
        error = exc.message
    columns = view.columns or _common_columns(rows)
    shown = [
        {
            "id": r["distinct_id"],
            "person": person(r["properties"], r["distinct_id"]),
            "props": r["properties"] or {},
            "last_seen": r["last_seen"],
            "profile": r["properties"] is not None,
        }
        for r in rows
    ]
    return page(
        request,
        "users.html",
        context(
            web,
            view=view,
            base=view.params(),
            columns=columns,
            rows=shown,
            next_after=next_after,
            error=error,
            page_size=PAGE_SIZE,
        ),
        status_code=400 if error else 200,
    )


def _common_columns(rows: list[dict[str, Any]]) -> list[str]:
    counts: Counter[str] = Counter()
    for r in rows:
        counts.update(k for k in (r["properties"] or {}) if k not in PERSON)
    return [k for k, _ in counts.most_common(DEFAULT_COLUMNS)]


@router.get("/users/count")
async def count(request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep) -> Response:
    """How many rows the view matches (the page asks after showing its rows)."""
    try:
        view = View.of(request)
        async with database(pool, settings) as conn:
            n = await table_count(conn, web.project_id, view.query(), now=time.time())
    except ProfilestoreError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)
    return JSONResponse({"count": n})


@router.get("/users/export.csv")
async def export_csv(request: Request, web: WebDep, pool: PoolDep, settings: SettingsDep) -> Response:
    """What the table shows (its filter and columns, every page), or only `ids` (the selected rows)."""
    view = View.of(request)
    ids = [i for i in request.query_params.getlist("id") if i][:10_000] or None
    query = ExportQuery(
        format="csv",
        where=where_param("where", view.where or None),
        columns=view.columns or None,
        cohort=view.cohort,
        all_users=view.all_users,
        distinct_ids=ids,
    )
    now = time.time()
    chunks = await stream(pool, settings, lambda conn: export_lines(conn, web.project_id, query, now=now))
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="users.csv"', "Cache-Control": "no-store"},
    )
