"""Mixpanel's raw event export (`/api/2.0/export`) as plain functions: parameters in, JSONL chunks out.

One line per event, oldest first: `{"event": name, "properties": {...}}`, where `properties` are the stored
ones (as sent, less `token`) with `time` (integer epoch seconds, or milliseconds with `time_in_ms`),
`distinct_id` ('' for an event with no user) and `$insert_id` (absent when the event was sent without one)
taken from the columns, which are what ingestion validated and normalised.
`join_profiles=true` (an extension) adds `"user"`: the profile's current properties (with `$last_seen`),
or `null`.

As for the profile export (export.py): Postgres writes each line, a server-side cursor hands them over a few
thousand at a time, and Python only joins text, so memory stays flat whatever the range.  The order is by
time (ties by event, distinct_id, $insert_id, so `limit` is deterministic): Postgres sorts, spilling to
disk past work_mem, never the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from profilestore.errors import BadRequest
from profilestore.expressions import Node, SqlParams, compile_where
from profilestore.query.events import sql as ev
from profilestore.query.params import bool_param, day_range, int_param, json_param, text_param, where_param

FETCH_ROWS = 5000
MAX_LIMIT = 100_000


@dataclass(frozen=True)
class EventsExport:
    from_date: date
    to_date: date
    events: list[str] | None = None
    where: Node | None = None
    limit: int | None = None
    time_in_ms: bool = False
    join_profiles: bool = False


def event_names(value: Any, name: str = "event") -> list[str] | None:
    """A JSON array of event names (a single name is taken as a one-element list)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise BadRequest(f'{name}: must be a JSON array of event names, e.g. ["Signed up"]')
    return value


def events_export_query(params: dict[str, Any]) -> EventsExport:
    """Validates the parameters (query string, form or JSON body); every 400 names the parameter."""
    from_date = ev.parse_day("from_date", params.get("from_date"))
    to_date = ev.parse_day("to_date", params.get("to_date"))
    day_range(from_date, to_date)
    limit = int_param(params, "limit", minimum=1, maximum=MAX_LIMIT)
    return EventsExport(
        from_date=from_date,
        to_date=to_date,
        events=event_names(json_param(params, "event")),
        where=where_param("where", text_param(params, "where")),
        limit=limit,
        time_in_ms=bool_param(params, "time_in_ms", default=False),
        join_profiles=bool_param(params, "join_profiles", default=False),
    )


@dataclass
class ExportStats:
    events: int = 0


def export_statement(
    project_id: int, query: EventsExport, *, now: float
) -> tuple[sql.Composed, dict[str, Any]]:
    """The one SELECT of the export and its parameters (also what the benchmark's EXPLAIN reads)."""
    compiled = SqlParams()
    params: dict[str, Any] = {}
    conditions = ev.event_conditions(project_id, query.from_date, query.to_date, query.events, params)
    if query.where is not None:
        conditions.append(compile_where(query.where, ev.EVENT_SCOPE, compiled, now=now))
    join = query.join_profiles or ev.uses_user(query.where)
    time = sql.SQL("floor({} * 1000)::bigint" if query.time_in_ms else "floor({})::bigint").format(ev.EPOCH)
    properties = sql.SQL(
        "e.properties || jsonb_build_object('time', {}, 'distinct_id', e.distinct_id)"
        " || CASE WHEN e.insert_id IS NULL THEN '{{}}'::jsonb"
        " ELSE jsonb_build_object('$insert_id', e.insert_id) END"
    ).format(time)
    user = sql.SQL(", ',\"user\":', {}").format(ev.user_object()) if query.join_profiles else sql.SQL("")
    line = sql.SQL(
        """concat('{{"event":', to_json(e.event)::text, ',"properties":', ({})::text{}, '}}')"""
    ).format(properties, user)
    statement = sql.SQL(
        "SELECT {line} FROM events AS e{join} WHERE {where}"
        " ORDER BY e.time, e.event, e.distinct_id, e.insert_id{limit}"
    ).format(
        line=line,
        join=ev.PROFILE_JOIN if join else sql.SQL(""),
        where=sql.SQL(" AND ").join(conditions),
        limit=sql.SQL(" LIMIT %(limit)s") if query.limit is not None else sql.SQL(""),
    )
    params["limit"] = query.limit
    return statement, {**compiled.values, **params}


async def export_events(
    conn: AsyncConnection[Any],
    project_id: int,
    query: EventsExport,
    *,
    now: float,
    stats: ExportStats | None = None,
) -> AsyncIterator[bytes]:
    """The export as chunks of JSONL bytes (nothing at all for an empty range)."""
    stats = stats or ExportStats()
    statement, params = export_statement(project_id, query, now=now)
    async with (
        conn.transaction(),
        conn.cursor(name="profilestore_events_export", row_factory=tuple_row) as cur,
    ):
        cur.itersize = FETCH_ROWS
        await cur.execute(statement, params)
        while rows := await cur.fetchmany(FETCH_ROWS):
            stats.events += len(rows)
            yield ("\n".join(r[0] for r in rows) + "\n").encode()
