"""The Users table: one page of matching profiles in any order, by keyset (never OFFSET), and their count.

The rows are those of rows.matching (the FROM and WHERE of /api/2.0/engage and the export); this adds the
order and the keyset.  The sort value of a row is
    $last_seen      coalesce(last_seen, '-infinity'): the index ix_profiles_last_seen serves the default order
                    (most recently seen first) as one backward index scan, profiles never seen last
    $distinct_id    the id itself (the primary key)
    any property    the JSON value (Postgres orders jsonb totally: null < strings < numbers < booleans < lists
                    < objects; a missing property counts as null)
and the id breaks ties, so `(sort value, id)` is unique and a page starts strictly after the last row of the
one before: `after` is that pair, encoded in the URL.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from profilestore.cohorts import CohortDefinition
from profilestore.errors import BadRequest
from profilestore.expressions import Node, SqlParams
from profilestore.query.profiles.rows import Matching, matching

MAX_PAGE = 500


@dataclass(frozen=True)
class TableQuery:
    where: Node | None = None
    cohort: int | CohortDefinition | None = None  # a saved cohort's id, or an unsaved definition
    all_users: bool = False
    group_key: str | None = None
    sort: str = "$last_seen"
    descending: bool = True
    after: str | None = None  # the cursor of the page before
    limit: int = 50


@dataclass
class TablePage:
    rows: list[dict[str, Any]]  # {"distinct_id", "properties" (None: no profile), "last_seen"}
    next_after: str | None


def _sort_value(rows: Matching, sort: str, params: SqlParams) -> tuple[sql.Composable, str]:
    """(the SQL of a row's sort value, its kind: "time", "id" or "json").  A time goes into the cursor as
    epoch seconds (None: never seen)."""
    if sort == "$last_seen":
        return sql.SQL("coalesce(p.last_seen, '-infinity'::timestamptz)"), "time"
    if sort == "$distinct_id":
        return rows.distinct_id, "id"
    return sql.SQL("coalesce(p.properties -> {}, 'null'::jsonb)").format(params.add(sort)), "json"


def encode_cursor(value: Any, distinct_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([value, distinct_id])).decode().rstrip("=")


def _decode_cursor(text: str, kind: str) -> tuple[Any, str]:
    try:
        value, distinct_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if kind == "time" and not (value is None or isinstance(value, int | float)):
            raise ValueError("not a time")
        if kind == "id":
            value = str(value)
        return (Jsonb(value) if kind == "json" else value), str(distinct_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("after: not a cursor of this table (start again from the first page)") from None


async def table_page(
    conn: AsyncConnection[Any], project_id: int, query: TableQuery, *, now: float
) -> TablePage:
    if not 1 <= query.limit <= MAX_PAGE:
        raise BadRequest(f"limit: must be 1 to {MAX_PAGE}")
    params = SqlParams()
    rows = await _matching(conn, project_id, query, params, now=now)
    value, kind = _sort_value(rows, query.sort, params)
    direction = sql.SQL("DESC" if query.descending else "ASC")
    where: sql.Composable = rows.where
    if query.after is not None:
        after_value, after_id = _decode_cursor(query.after, kind)
        after = {
            "time": sql.SQL("coalesce(to_timestamp({}::float8), '-infinity'::timestamptz)"),
            "id": sql.SQL("{}::text"),
            "json": sql.SQL("{}::jsonb"),
        }[kind].format(params.add(after_value))
        where = sql.SQL("{} AND ({}, {}) {} ({}, {}::text)").format(
            where,
            value,
            rows.distinct_id,
            sql.SQL("<" if query.descending else ">"),
            after,
            params.add(after_id),
        )
    statement = sql.SQL(
        "SELECT {id} AS distinct_id, p.properties AS properties, p.last_seen AS last_seen,"
        " {shown} AS sort_value"
        " FROM {source} WHERE {where} ORDER BY {value} {dir}, {id} {dir} LIMIT {limit}"
    ).format(
        id=rows.distinct_id,
        value=value,
        shown=sql.SQL("extract(epoch FROM p.last_seen)::float8") if kind == "time" else value,
        source=rows.source,
        where=where,
        dir=direction,
        limit=sql.Literal(query.limit + 1),
    )
    found = await (await conn.execute(statement, params.values)).fetchall()
    page = found[: query.limit]
    next_after = None
    if len(found) > query.limit:
        last = page[-1]
        next_after = encode_cursor(last["sort_value"], last["distinct_id"])
    return TablePage(
        [
            {"distinct_id": r["distinct_id"], "properties": r["properties"], "last_seen": r["last_seen"]}
            for r in page
        ],
        next_after,
    )


async def table_count(conn: AsyncConnection[Any], project_id: int, query: TableQuery, *, now: float) -> int:
    """How many rows the table's query matches (exact)."""
    params = SqlParams()
    rows = await _matching(conn, project_id, query, params, now=now)
    statement = sql.SQL("SELECT count(*) AS n FROM {} WHERE {}").format(rows.source, rows.where)
    row = await (await conn.execute(statement, params.values)).fetchone()
    assert row is not None
    return int(row["n"])


async def _matching(
    conn: AsyncConnection[Any], project_id: int, query: TableQuery, params: SqlParams, *, now: float
) -> Matching:
    return await matching(
        conn,
        project_id,
        params,
        now=now,
        group_key=query.group_key,
        cohort=query.cohort,
        all_users=query.all_users,
        where=query.where,
    )
