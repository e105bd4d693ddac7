"""`POST /api/events/query`: events of a date range, filtered by name, an expression (event `properties[...]`
and the profile's `user[...]`) and a cohort, counted in total (`count`) and in distinct users (`unique`) per
group of any mix of event name, event property, profile property and time bucket (day, week, month; UTC).

One SQL statement, aggregated by Postgres in two levels: first per (group, distinct_id) with the number of
events, then per group (`count` = the sum, `unique` = the rows of a real user); both are hash aggregates and
need no `count(DISTINCT)` sort.  The same inner rows give the range's totals (`unique` over the whole range is
not the sum of the groups').  When neither `where` nor a cohort reads the profile, events are aggregated
before the profile join, so the join looks up each (group, user) once instead of each event.

Choices where query.md is silent:
* events with no user (distinct_id '') count in `count`, never in `unique`;
* a missing property and a JSON `null` group together, as `null`; an event without a profile has `null` for
  every profile property;
* weeks start on Monday (ISO); a bucket is named by its first day, `YYYY-MM-DD`;
* groups come ordered by their keys (in the order of `group_by`), at most `limit` of them (`truncated` says
  when more exist); totals always cover every group.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from profilestore.cohorts import cohort_condition
from profilestore.errors import BadRequest
from profilestore.expressions import Node, SqlParams, compile_value, compile_where
from profilestore.expressions.ast import Property
from profilestore.query import events_sql as ev
from profilestore.query.engage import parse_where

MAX_GROUPS = 100_000


class EventName(BaseModel):
    """Group by the event's name."""

    type: Literal["event"]


class EventProperty(BaseModel):
    """Group by a property of the event (`time`, `distinct_id` and `$insert_id` come from the columns)."""

    type: Literal["property"]
    name: str = Field(min_length=1, max_length=255)


class UserProperty(BaseModel):
    """Group by a property of the user's profile (`$last_seen` included); `null` for users without one."""

    type: Literal["user"]
    name: str = Field(min_length=1, max_length=255)


class TimeBucket(BaseModel):
    """Group by the UTC day, ISO week (from Monday) or month of the event, named by its first day."""

    type: Literal["time"]
    unit: Literal["day", "week", "month"]


GroupBy = Annotated[EventName | EventProperty | UserProperty | TimeBucket, Field(discriminator="type")]


class EventsQueryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "from_date": "2026-01-01",
                    "to_date": "2026-01-31",
                    "events": ["Purchase"],
                    "where": 'properties["amount"] > 10 and user["plan"] == "pro"',
                    "group_by": [{"type": "time", "unit": "day"}, {"type": "user", "name": "plan"}],
                }
            ]
        },
    )

    from_date: date = Field(description="first day, YYYY-MM-DD (UTC), inclusive")
    to_date: date = Field(description="last day, YYYY-MM-DD (UTC), inclusive")
    events: list[str] | None = Field(None, description="event names; default all", max_length=1000)
    where: str | None = Field(
        None, description='an expression over event `properties["..."]` and the profile\'s `user["..."]`'
    )
    cohort: dict[str, Any] | None = Field(
        None, description='only users in this cohort: {"id": N} or {"raw_cohort": {...}}'
    )
    group_by: list[GroupBy] = Field(default_factory=list, max_length=8)
    limit: int = Field(10_000, ge=1, le=MAX_GROUPS, description="at most this many groups")

    @model_validator(mode="after")
    def _range(self) -> EventsQueryRequest:
        if self.to_date < self.from_date:
            raise ValueError("to_date must not be before from_date")
        return self


class Counts(BaseModel):
    count: int = Field(description="events")
    unique: int = Field(description="distinct users (events with no user are not counted)")


class Group(Counts):
    keys: list[JsonValue] = Field(description="one value per group_by entry, in its order")


class EventsQueryResponse(BaseModel):
    group_by: list[str] = Field(
        description="what each key is: event, properties.NAME, user.NAME, day/week/month"
    )
    results: list[Group]
    total: Counts
    truncated: bool = Field(description="more groups exist than `limit`")


def label(group: GroupBy) -> str:
    match group:
        case EventName():
            return "event"
        case EventProperty(name=name):
            return f"properties.{name}"
        case UserProperty(name=name):
            return f"user.{name}"
        case TimeBucket(unit=unit):
            return unit


def _key(group: GroupBy, compiled: SqlParams, now: float) -> sql.Composable:
    match group:
        case EventName():
            return sql.SQL("to_jsonb(e.event)")
        case EventProperty(name=name) | UserProperty(name=name):
            prop = Property("user" if isinstance(group, UserProperty) else "properties", name)
            value = compile_value(prop, ev.EVENT_SCOPE, compiled, now=now)
            return sql.SQL("coalesce({}, 'null'::jsonb)").format(value)
        case TimeBucket(unit=unit):
            return sql.SQL(
                "to_jsonb(to_char(date_trunc({}, e.time AT TIME ZONE 'UTC'), 'YYYY-MM-DD'))"
            ).format(sql.Literal(unit))


def _columns(exprs: list[sql.Composable], names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(x, sql.Identifier(n)) for x, n in zip(exprs, names, strict=True)
    )


async def _cohort(
    conn: AsyncConnection[Any], project_id: int, spec: dict[str, Any], compiled: SqlParams, now: float
) -> sql.Composable:
    """Membership of the pre-aggregated row's user (`r.distinct_id`); errors name the parameter."""
    try:
        return await cohort_condition(
            conn, project_id, spec, distinct_id=sql.SQL("r.distinct_id"), params=compiled, now=now
        )
    except BadRequest as exc:
        raise BadRequest(f"cohort: {exc.message}") from None


async def query_statement(
    conn: AsyncConnection[Any], project_id: int, request: EventsQueryRequest, *, now: float
) -> tuple[sql.Composed, dict[str, Any]]:
    """The one statement of the query and its parameters.  Rows: (0, keys as JSON text, count, unique) per
    group in key order, at most limit + 1; then (1, NULL, count, unique): the totals."""
    where: Node | None = parse_where("where", request.where)
    compiled = SqlParams()
    params: dict[str, Any] = {"limit": request.limit + 1}
    conditions = ev.event_conditions(project_id, request.from_date, request.to_date, request.events, params)
    if where is not None:
        conditions.append(compile_where(where, ev.EVENT_SCOPE, compiled, now=now))
    cohort = None
    if request.cohort is not None:
        cohort = await _cohort(conn, project_id, request.cohort, compiled, now)

    names = [f"k{i}" for i in range(len(request.group_by))]
    exprs = [_key(g, compiled, now) for g in request.group_by]
    on_user = [isinstance(g, UserProperty) for g in request.group_by]
    join_first = ev.uses_user(where)
    filters = sql.SQL(" AND ").join(conditions)
    if join_first or not any(on_user):
        # One level: events (joined when the filter needs the profile) counted per (keys, user).
        inner = sql.SQL(
            "SELECT {cols}e.distinct_id, count(*) AS n FROM events AS e{join} WHERE {filters} GROUP BY {by}"
        ).format(
            cols=sql.SQL("{}, ").format(_columns(exprs, names)) if names else sql.SQL(""),
            join=ev.PROFILE_JOIN if join_first else sql.SQL(""),
            filters=filters,
            by=sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(names) + 1)),
        )
    else:
        # Events per (event keys, user) first; then one profile lookup per such row for the profile keys.
        event_names = [n for n, u in zip(names, on_user, strict=True) if not u]
        event_exprs = [x for x, u in zip(exprs, on_user, strict=True) if not u]
        pre = sql.SQL(
            "SELECT {cols}e.distinct_id, count(*) AS n FROM events AS e WHERE {filters} GROUP BY {by}"
        ).format(
            cols=sql.SQL("{}, ").format(_columns(event_exprs, event_names)) if event_names else sql.SQL(""),
            filters=filters,
            by=sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(event_names) + 1)),
        )
        outer = [
            sql.SQL("a.{}").format(sql.Identifier(n)) if not u else x
            for n, x, u in zip(names, exprs, on_user, strict=True)
        ]
        inner = sql.SQL(
            "SELECT {cols}, a.distinct_id, a.n FROM ({pre}) AS a"
            " LEFT JOIN profiles AS p ON p.project_id = %(project_id)s AND p.distinct_id = a.distinct_id"
        ).format(cols=_columns(outer, names), pre=pre)
    rows = inner if cohort is None else sql.SQL("SELECT * FROM ({}) AS r WHERE {}").format(inner, cohort)

    keys = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    total = sql.SQL(
        "SELECT 1 AS kind, 0 AS ord, NULL AS keys, coalesce(sum(n), 0)::bigint,"
        " count(*) FILTER (WHERE distinct_id <> '')"
        " FROM (SELECT distinct_id, sum(n) AS n FROM rows GROUP BY distinct_id) AS t"
    )
    groups: sql.Composable = sql.SQL("")
    if names:
        groups = sql.SQL(
            "(SELECT 0, row_number() OVER (ORDER BY {keys}), jsonb_build_array({keys})::text, sum(n)::bigint,"
            " count(*) FILTER (WHERE distinct_id <> '') FROM rows GROUP BY {keys} ORDER BY {keys}"
            " LIMIT %(limit)s) UNION ALL "
        ).format(keys=keys)
    statement = sql.SQL(
        "WITH rows AS ({rows}) SELECT kind, keys, count, uniq FROM ({groups}{total})"
        " AS x(kind, ord, keys, count, uniq) ORDER BY kind, ord"
    ).format(rows=rows, groups=groups, total=total)
    return statement, {**compiled.values, **params}


async def query_events(
    conn: AsyncConnection[Any], project_id: int, request: EventsQueryRequest, *, now: float
) -> EventsQueryResponse:
    statement, params = await query_statement(conn, project_id, request, now=now)
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(statement, params)
    results: list[Group] = []
    total = Counts(count=0, unique=0)
    for kind, keys, count, unique in await cur.fetchall():
        if kind == 1:
            total = Counts(count=count, unique=unique)
        else:
            results.append(Group(keys=orjson.loads(keys), count=count, unique=unique))
    truncated = len(results) > request.limit
    if not request.group_by:
        results = [Group(keys=[], count=total.count, unique=total.unique)] if total.count else []
    return EventsQueryResponse(
        group_by=[label(g) for g in request.group_by],
        results=results[: request.limit],
        total=total,
        truncated=truncated,
    )
