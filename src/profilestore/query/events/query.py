"""`POST /api/events/query`: events of a date range, filtered by name, an expression (event `properties[...]`
and the profile's `user[...]`) and a cohort, counted in total (`count`) and in distinct users (`unique`) per
group of any mix of event name, event property, profile property and time bucket (day, week, month; UTC).

Two paths, one answer (tests/query/test_events_rollup.py holds them to it):
* narrow (rollup.py): a question that reads nothing of the events but their name, day and user is answered
  from the daily rollup `event_days`, a groups statement and a totals statement in one REPEATABLE READ
  snapshot (both at once on two connections when the pool has a second one free);
* wide (here): anything else (an event property in `where` or `group_by`) reads the events of the range
  (joined to their profiles when a key or `where` reads `user[...]`), grouped by `GROUPING SETS ((keys), ())`,
  so the same pass gives every group and the range's totals (`unique` over the whole range is not the sum
  of the groups').  Measured (bench/cohorts.py) against a two-level form (count per (group, user), then per
  group, with hash aggregates): the keys are grouped as native values (timestamps, text `COLLATE "C"`,
  jsonb) and turned into JSON only for the few output rows, and `count(DISTINCT distinct_id COLLATE "C")`
  sorts each group's ids bytewise; that was fastest, and joining after a first aggregation saved nothing.
Both set `work_mem` for their own transaction only (rollup.ANALYTICS_WORK_MEM).  The cohort filter is a
condition on each event's user (a hashed membership test, cohorts/compile.py).

Choices where docs/query.md is silent:
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
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from profilestore.cohorts import cohort_condition
from profilestore.errors import BadRequest, Forbidden
from profilestore.expressions import Node, SqlParams, compile_value, compile_where
from profilestore.expressions.ast import Property
from profilestore.query.events import rollup
from profilestore.query.events import sql as ev
from profilestore.query.params import day_range, refuse_nul, where_param
from profilestore.settings import Settings

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
    project_id: int | None = Field(
        None, description="the project (with a service account): checked against the secret's project"
    )

    @model_validator(mode="after")
    def _valid(self) -> EventsQueryRequest:
        """The range within FIRST_DAY..LAST_DAY (params.day_range); no NUL in any text (Postgres cannot
        hold one, so no event name or property has one)."""
        try:
            day_range(self.from_date, self.to_date)
            refuse_nul("events", self.events)
            refuse_nul("cohort", self.cohort)
            for group in self.group_by:
                if isinstance(group, EventProperty | UserProperty):
                    refuse_nul("group_by", group.name)
        except BadRequest as exc:
            raise ValueError(exc.message) from None
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


def _key(group: GroupBy, compiled: SqlParams, now: float) -> tuple[sql.Composable, str]:
    """The grouping expression (cheap to hash and compare) and how its output becomes JSON (`{}`: itself)."""
    match group:
        case EventName():
            return sql.SQL('e.event COLLATE "C"'), "to_jsonb({})"
        case EventProperty(name=name) | UserProperty(name=name):
            prop = Property("user" if isinstance(group, UserProperty) else "properties", name)
            value = compile_value(prop, ev.EVENT_SCOPE, compiled, now=now)
            return sql.SQL("coalesce({}, 'null'::jsonb)").format(value), "{}"
        case TimeBucket(unit=unit):
            bucket = sql.SQL("date_trunc({}, e.time AT TIME ZONE 'UTC')").format(sql.Literal(unit))
            return bucket, "to_jsonb(to_char({}, 'YYYY-MM-DD'))"


async def _cohort(
    conn: AsyncConnection[Any],
    project_id: int,
    spec: dict[str, Any],
    compiled: SqlParams,
    now: float,
    user: str = "e.distinct_id",
) -> sql.Composable:
    """Membership of the event's user (`user`: its SQL); errors name the parameter."""
    try:
        return await cohort_condition(
            conn, project_id, spec, distinct_id=sql.SQL(user), params=compiled, now=now
        )
    except BadRequest as exc:
        raise BadRequest(f"cohort: {exc.message}") from None


async def query_statement(
    conn: AsyncConnection[Any], project_id: int, request: EventsQueryRequest, *, now: float
) -> tuple[sql.Composed, dict[str, Any]]:
    """The one statement of the query and its parameters.  Rows: (1, NULL, count, unique) for the totals
    first, then (0, keys as JSON text, count, unique) per group in key order, at most limit + 1."""
    where: Node | None = where_param("where", request.where)
    compiled = SqlParams()
    params: dict[str, Any] = {"limit": request.limit + 2}
    conditions = ev.event_conditions(project_id, request.from_date, request.to_date, request.events, params)
    if where is not None:
        conditions.append(compile_where(where, ev.EVENT_SCOPE, compiled, now=now))
    if request.cohort is not None:
        conditions.append(await _cohort(conn, project_id, request.cohort, compiled, now))
    keys = [_key(g, compiled, now) for g in request.group_by]
    join = ev.uses_user(where) or any(isinstance(g, UserProperty) for g in request.group_by)
    names = [sql.Identifier(f"k{i}") for i in range(len(keys))]
    inner = sql.SQL(
        'SELECT {cols}e.distinct_id COLLATE "C" AS d FROM events AS e{join} WHERE {filters}'
    ).format(
        cols=sql.SQL("").join(
            sql.SQL("{} AS {}, ").format(x, n) for (x, _), n in zip(keys, names, strict=True)
        ),
        join=ev.PROFILE_JOIN if join else sql.SQL(""),
        filters=sql.SQL(" AND ").join(conditions),
    )
    counts = sql.SQL("count(*), count(DISTINCT d) FILTER (WHERE d <> '')")
    if not keys:
        statement = sql.SQL("SELECT 1, NULL, {counts} FROM ({inner}) AS s").format(counts=counts, inner=inner)
        return statement, {**compiled.values, **params}
    listed = sql.SQL(", ").join(names)
    output = sql.SQL(", ").join(sql.SQL(out).format(n) for (_, out), n in zip(keys, names, strict=True))
    statement = sql.SQL(
        "SELECT grouping({listed}) <> 0 AS total, jsonb_build_array({output})::text, {counts}"
        " FROM ({inner}) AS s GROUP BY GROUPING SETS (({listed}), ())"
        " ORDER BY 1 DESC, {listed} LIMIT %(limit)s"
    ).format(listed=listed, output=output, counts=counts, inner=inner)
    return statement, {**compiled.values, **params}


def narrow(request: EventsQueryRequest, where: Node | None) -> bool:
    """Can the daily rollup answer it (rollup.py): nothing read of the event but its name, day and user."""
    return not rollup.reads_event(where) and not any(isinstance(g, EventProperty) for g in request.group_by)


async def rollup_statements(
    conn: AsyncConnection[Any],
    project_id: int,
    request: EventsQueryRequest,
    where: Node | None,
    *,
    now: float,
) -> tuple[sql.Composed, sql.Composed, dict[str, Any]]:
    """The groups and totals statements of the narrow path, and their parameters."""
    compiled = SqlParams()
    params: dict[str, Any] = {"limit": request.limit + 1}
    conditions = rollup.day_conditions(project_id, request.from_date, request.to_date, request.events, params)
    where_sql = None if where is None else compile_where(where, ev.EVENT_SCOPE, compiled, now=now)
    cohort_sql = None
    if request.cohort is not None:
        cohort_sql = await _cohort(conn, project_id, request.cohort, compiled, now, "x.d")
    keys: list[tuple[str, Any]] = []
    for group in request.group_by:
        match group:
            case EventName():
                keys.append(("event", None))
            case TimeBucket(unit=unit):
                keys.append(("time", unit))
            case UserProperty(name=name):
                keys.append(("user", rollup.user_value(name, compiled, now)))
    groups, totals = rollup.statements(keys=keys, conditions=conditions, where=where_sql, cohort=cohort_sql)
    return groups, totals, {**compiled.values, **params}


async def _analytics_transaction(conn: AsyncConnection[Any]) -> None:  # also rollup.groups_and_totals
    """The first statements of the query's transaction: one snapshot for groups and totals, the memory its
    sorts and hash aggregates need, and no JIT compilation (measured on the rollup's statements over 3M
    rows: JIT added 0.1-0.3 s to each and saved nothing); for this transaction only."""
    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    await conn.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
        (rollup.ANALYTICS_WORK_MEM,),
    )


async def query_events(
    conn: AsyncConnection[Any],
    project_id: int,
    request: EventsQueryRequest,
    *,
    now: float,
    settings: Settings,
    pool: AsyncConnectionPool | None = None,
) -> EventsQueryResponse:
    """The answer; with `pool`, the narrow path's groups and totals may run at once on two connections
    (rollup.groups_and_totals)."""
    if request.project_id is not None and request.project_id != project_id:
        raise Forbidden(f"this secret does not belong to project {request.project_id}")
    where: Node | None = where_param("where", request.where)
    results: list[Group] = []
    total = Counts(count=0, unique=0)
    if narrow(request, where):
        groups, totals, params = await rollup_statements(conn, project_id, request, where, now=now)
        await rollup.compact(conn, settings)
        async with conn.transaction():
            await _analytics_transaction(conn)
            cur = conn.cursor(row_factory=tuple_row)
            if not request.group_by:
                await cur.execute(totals, params)
                row = await cur.fetchone()
            else:
                rows, row = await rollup.groups_and_totals(conn, pool, groups, totals, params, settings)
                results = [Group(keys=orjson.loads(keys), count=c, unique=u) for keys, c, u in rows]
            assert row is not None
            total = Counts(count=row[0], unique=row[1])
    else:
        statement, params = await query_statement(conn, project_id, request, now=now)
        async with conn.transaction():
            await _analytics_transaction(conn)
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(statement, params)
            for is_total, keys, count, unique in await cur.fetchall():
                if is_total:
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
