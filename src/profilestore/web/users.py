"""The Users table (`/users`), its count, its CSV export, and one profile (`/users/profile?distinct_id=`).

The URL is the state: filter (`where`, a saved `cohort`, an unsaved cohort definition `raw` as JSON, and the
filter builder's rows: cohort_filter.py), "All Users" (`all=1`), order (`sort`, `dir`), page (`after`, a
keyset cursor) and columns (`cols`) are all in the query string, so a view can be bookmarked, shared and
stepped back through.  The rows come from query/profiles/table.py, the export from the same function as
`GET /api/profiles/export`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from profilestore.cohorts.schemas import CohortDefinition, CohortFilter, parse_definition
from profilestore.cohorts.service import get_cohort
from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import BadRequest, ProfilestoreError
from profilestore.expressions import Node
from profilestore.expressions.ast import And
from profilestore.query.params import where_param
from profilestore.query.profiles.export import ExportQuery, export_lines
from profilestore.query.profiles.table import TableQuery, table_count, table_page
from profilestore.query.streaming import stream
from profilestore.web.cohort_filter import Builder, Built, and_texts, describe, template_values
from profilestore.web.deps import WebDep, context
from profilestore.web.render import page, query_string

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
    raw: str = ""  # an unsaved cohort definition, as JSON
    builder: Builder = field(default_factory=Builder)
    anchor: str | None = None  # the builder's rows were changed by a button: go to the new URL (and row)
    _built: Built | None = None

    @classmethod
    def of(cls, request: Request) -> View:
        q = request.query_params
        cohort = q.get("cohort") or None
        if cohort is not None and not (cohort.isdigit() and len(cohort) < 19):
            raise BadRequest("cohort: not a cohort id")
        cols = [c.strip() for c in q.get("cols", "").split(",") if c.strip()]
        builder, anchor = Builder.of(q)
        return cls(
            where=and_texts(q.get("where", "").strip(), builder.moved),
            raw=q.get("raw", "").strip(),
            builder=builder,
            anchor=anchor,
            cohort=int(cohort) if cohort else None,
            all_users=q.get("all") == "1",
            sort=q.get("sort") or "$last_seen",
            descending=q.get("dir", "desc") != "asc",
            after=q.get("after") or None,
            columns=cols[:50],
        )

    def params(self, filters: bool = True) -> dict[str, Any]:
        """The state as query parameters (without the page), for links that change one thing; without the
        filter (`filters=False`) for Clear."""
        kept = {
            "all": "1" if self.all_users else None,
            "sort": None if self.sort == "$last_seen" else self.sort,
            "dir": None if self.descending else "asc",
            "cols": ",".join(self.columns) or None,
        }
        if not filters:
            return kept
        return {"where": self.where or None, "cohort": self.cohort, "raw": self.raw or None, **kept} | (
            self.builder.params()
        )

    @property
    def built(self) -> Built:
        """What the builder's rows filter by."""
        if self._built is None:
            self._built = self.builder.compile()
        return self._built

    @property
    def filtered(self) -> bool:
        return bool(self.where or self.cohort or self.raw or self.built.where or self.built.definition)

    def where_text(self) -> str:
        """The typed expression and the builder's, as one."""
        return and_texts(self.where, self.built.where)

    def where_node(self) -> Node | None:
        if self.built.errors:
            raise BadRequest("; ".join(self.built.errors))
        typed = where_param("where", self.where or None)
        built = where_param("filter", self.built.where or None)
        if typed is not None and built is not None:
            return And((typed, built))
        return typed or built

    def raw_definition(self) -> CohortDefinition | None:
        if not self.raw:
            return None
        try:
            value = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            raise BadRequest("raw: not JSON (a cohort definition, as query.md describes)") from None
        return parse_definition(value, path="raw")

    def cohort_spec(self) -> int | CohortDefinition | None:
        """The saved cohort, the `raw` definition and the builder's behaviour, as one (None: none; a saved
        cohort alone: its id)."""
        definitions = [d for d in (self.raw_definition(), self._built_definition()) if d is not None]
        if not definitions:
            return self.cohort
        if self.cohort is None and len(definitions) == 1:
            return definitions[0]
        saved = [] if self.cohort is None else [CohortFilter(type="cohort", id=self.cohort)]
        return CohortDefinition(op="and", filters=[*saved, *definitions])

    def _built_definition(self) -> CohortDefinition | None:
        built = self.built.definition
        return None if built is None else parse_definition(built, path="filter")

    def definition(self) -> dict[str, Any] | None:
        """The whole filter as one cohort definition (for Save as cohort); None without a filter."""
        filters: list[dict[str, Any]] = []
        where = self.where_text()
        if where:
            filters.append({"type": "property", "where": where})
        for part in (self._raw_json(), self.built.definition):
            if part is None:
                continue
            if part.get("op", "and") == "and" and not part.get("negate"):
                filters.extend(part.get("filters", []))
            else:
                filters.append(part)
        if self.cohort is not None:
            filters.append({"type": "cohort", "id": self.cohort})
        if not filters:
            return None
        return {"op": "and", "filters": filters}

    def raw_summary(self) -> str:
        """The `raw` definition in words (as given, when it is not a definition)."""
        try:
            return describe(self._raw_json())
        except ProfilestoreError:
            return self.raw

    def _raw_json(self) -> dict[str, Any] | None:
        raw = self.raw_definition()
        return None if raw is None else raw.model_dump(mode="json", by_alias=True, exclude_none=True)

    def query(self, limit: int = PAGE_SIZE) -> TableQuery:
        return TableQuery(
            where=self.where_node(),
            cohort=self.cohort_spec(),
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
    cohort_name = None
    definition = None
    try:
        view = View.of(request)
        if view.anchor is not None:
            target = "/users?" + query_string(view.params())
            return RedirectResponse(target + (f"#{view.anchor}" if view.anchor else ""), status_code=303)
        async with database(pool, settings) as conn:
            if view.cohort is not None:
                cohort_name = (await get_cohort(conn, web.project_id, view.cohort)).name
            found = await table_page(conn, web.project_id, view.query(), now=time.time())
        rows, next_after = found.rows, found.next_after
        definition = view.definition()
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
            cleared=view.params(filters=False),
            columns=columns,
            rows=shown,
            next_after=next_after,
            error=error,
            page_size=PAGE_SIZE,
            cohort_name=cohort_name,
            definition=definition,
            definition_json=orjson.dumps(definition).decode() if definition else "",
            described=describe(definition),
            saved=request.query_params.get("saved") == "1",
            known=sorted({k for r in rows for k in (r["properties"] or {})} | set(columns))[:200],
            **template_values(),
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
        where=view.where_node(),
        columns=view.columns or None,
        cohort=view.cohort_spec(),
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
