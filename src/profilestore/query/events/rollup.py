"""The narrow path of `POST /api/events/query`: the daily rollup `event_days` instead of the events.

`event_days` holds one row per (project, UTC day, event, user) with its number of events, keyed by integers
from the dictionaries `event_names` and `event_users` (user 0 is the '' of events without one), kept exact
by triggers on `events` (db/sql/0010_event_days.sql).  A question that reads nothing of an event but its
name, day and user (no `properties[...]` in `where`, no event-property breakdown) is answered from it:
* `count` is the sum of the rows' counts; `unique` is the number of distinct users: when day and event are
  both keys the rows are one per (group, user) already, so it is a `count(*)` (hash aggregate); otherwise
  `count(DISTINCT user_id)`, which sorts integers (measured on 2.6M rows: 0.5 s, where adding the users up
  per group first with a hash aggregate took 2.3 s);
* profile properties, `user[...]` conditions and the cohort are functions of the user: they are computed
  once per user of the project (`event_users` joined to `profiles`, materialised) and joined to the rollup
  rows by the integer id, so each rollup row costs one integer hash probe, not a profile lookup;
* the totals are a second statement (`count(DISTINCT)` over the range), so that neither pays for
  `GROUPING SETS`; both read the same snapshot (one REPEATABLE READ transaction, query.py).
Why a rollup keyed by integers (measured, bench/analytics.py; README): grouping and counting distinct
integers is 3-5x faster than the same on distinct_id text, and a rollup row is a third of an event's index
entry; where users do several events a day (the "daily" world) it holds a quarter of the events' rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from profilestore.db.engine import long_running
from profilestore.expressions import Node, SqlParams, compile_value
from profilestore.expressions.ast import Property, children
from profilestore.query.events import sql as ev
from profilestore.settings import Settings

# How long the events query waits for a second connection before running its two statements one after the
# other on its own.
SECOND_CONNECTION_WAIT = 0.01
# The events query's statements may sort or hash a few million rows: enough memory for that, set for the
# analytics transaction only (SET LOCAL), never for the server.
ANALYTICS_WORK_MEM = "256MB"

# Every user of the project (`x`: its id and distinct_id `d`; user 0 is the '' of events without one) with
# what its profile says (`pv`, NULL without one).  `pv` computes the values from `profiles AS p` first, so
# the join hashes a few columns per profile, not the profiles' whole properties (measured: 2.9 s -> 0.7 s
# for a million users).
USERS = sql.SQL(
    "(SELECT u.id, u.distinct_id AS d FROM event_users AS u WHERE u.project_id = %(project_id)s"
    " UNION ALL SELECT 0, '') AS x LEFT JOIN (SELECT p.distinct_id{values} FROM profiles AS p"
    " WHERE p.project_id = %(project_id)s) AS pv ON pv.distinct_id = x.d"
)
# The same expressions over a missing profile (the `p` of an event whose user has none: all NULL).
NO_PROFILE = sql.SQL(
    "(SELECT {} FROM (SELECT NULL::jsonb AS properties, NULL::timestamptz AS last_seen,"
    " NULL::text AS distinct_id) AS p)"
)


async def compact(conn: AsyncConnection[Any], settings: Settings) -> int:
    """Folds the pending changes into `event_days` in one transaction (`conn` is in autocommit); waits for a
    compaction in progress.  It may run as long as `long_statement_timeout_seconds` (a backlog after a bulk
    load or a stop of the app is folded in whole, never cut short and started again).  Returns the number of
    changes folded in (0 on a hot standby)."""
    async with conn.transaction():
        await long_running(conn, settings)
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute("SELECT profilestore_event_days_compact()")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def groups_and_totals(
    conn: AsyncConnection[Any],
    pool: AsyncConnectionPool | None,
    groups: sql.Composed,
    totals: sql.Composed,
    params: dict[str, Any],
    settings: Settings,
) -> tuple[list[tuple[Any, ...]], tuple[Any, ...] | None]:
    """The groups statement's rows and the totals' row, in `conn`'s analytics transaction (REPEATABLE READ,
    begun by the caller).  Each is one aggregate Postgres runs on one core, and the totals'
    `count(DISTINCT)` takes as long as the groups (0.7-0.9 s of 3M rows, measured): when the pool has a
    connection free at once, the totals run there at the same time, in the same snapshot
    (`pg_export_snapshot`); otherwise (or on a standby) one after the other here."""
    other = None
    if pool is not None:
        with contextlib.suppress(PoolTimeout):
            other = await pool.getconn(timeout=SECOND_CONNECTION_WAIT)
    try:
        cur = conn.cursor(row_factory=tuple_row)
        snapshot = None
        if other is not None:
            await cur.execute("SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_export_snapshot() END")
            exported = await cur.fetchone()
            snapshot = exported[0] if exported else None
        if other is None or snapshot is None:
            await cur.execute(groups, params)
            rows = await cur.fetchall()
            await cur.execute(totals, params)
            return rows, await cur.fetchone()
        async with other.transaction():
            await other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            await other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            await other.execute(
                "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
                (ANALYTICS_WORK_MEM,),
            )
            second = other.cursor(row_factory=tuple_row)

            async def run_totals() -> tuple[Any, ...] | None:
                await second.execute(totals, params)
                return await second.fetchone()

            async def run_groups() -> list[tuple[Any, ...]]:
                await cur.execute(groups, params)
                return await cur.fetchall()

            rows, row = await asyncio.gather(run_groups(), run_totals())
        return rows, row
    finally:
        if other is not None and pool is not None:
            await pool.putconn(other)


def reads_event(node: Node | None) -> bool:
    """Does the expression read anything of the event itself (`properties[...]`/`event[...]`)?"""
    if node is None:
        return False
    if isinstance(node, Property):
        return node.source != "user"
    return any(reads_event(c) for c in children(node))


def day_conditions(
    project_id: int, from_date: date, to_date: date, names: list[str] | None, params: dict[str, Any]
) -> list[sql.Composable]:
    """Project, days (inclusive) and event names, on `event_days AS r`."""
    params.update(project_id=project_id, first_day=from_date, last_day=to_date)
    conditions: list[sql.Composable] = [
        sql.SQL("r.project_id = %(project_id)s"),
        sql.SQL("r.day >= %(first_day)s"),
        sql.SQL("r.day <= %(last_day)s"),
    ]
    if names is not None:
        params["names"] = names
        conditions.append(
            sql.SQL(
                "r.event_id = ANY(ARRAY(SELECT k.id FROM event_names AS k"
                " WHERE k.project_id = %(project_id)s AND k.name = ANY(%(names)s::text[])))"
            )
        )
    return conditions


def time_bucket(unit: str) -> sql.Composable:
    if unit == "day":
        return sql.SQL("r.day")
    return sql.SQL("date_trunc({}, r.day::timestamp)::date").format(sql.Literal(unit))


def user_value(name: str, compiled: SqlParams, now: float) -> sql.Composable:
    """A profile property of the user (JSON `null` when missing or without a profile), over `p`."""
    value = compile_value(Property("user", name), ev.EVENT_SCOPE, compiled, now=now)
    return sql.SQL("coalesce({}, 'null'::jsonb)").format(value)


def _users(
    user_keys: list[sql.Composable], where: sql.Composable | None, cohort: sql.Composable | None
) -> sql.Composable:
    """`WITH m AS MATERIALIZED (...)`: the users (ids, key values `v0`...) that pass `where` (over `p`) and
    the cohort (over `x.d`)."""
    profile_values = [
        sql.SQL(", {} AS {}").format(x, sql.Identifier(f"v{i}")) for i, x in enumerate(user_keys)
    ]
    if where is not None:
        profile_values.append(sql.SQL(", {} AS ok").format(where))
    values = sql.SQL("").join(
        sql.SQL(", coalesce(pv.{v}, 'null'::jsonb) AS {v}").format(v=sql.Identifier(f"v{i}"))
        for i in range(len(user_keys))
    )
    filters: list[sql.Composable] = []
    if where is not None:
        filters.append(sql.SQL("coalesce(pv.ok, {})").format(NO_PROFILE.format(where)))
    if cohort is not None:
        filters.append(cohort)
    return sql.SQL("WITH m AS MATERIALIZED (SELECT x.id{values} FROM {users}{filters}) ").format(
        values=values,
        users=USERS.format(values=sql.SQL("").join(profile_values)),
        filters=sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(filters)) if filters else sql.SQL(""),
    )


def statements(
    *,
    keys: list[tuple[str, Any]],
    conditions: list[sql.Composable],
    where: sql.Composable | None,
    cohort: sql.Composable | None,
) -> tuple[sql.Composed, sql.Composed]:
    """(groups, totals).  `keys`, per group_by entry: ("event", None), ("time", unit) or ("user", its
    expression over `p`); `conditions` on `r`; `where` over the user's profile `p`, `cohort` over its
    distinct_id `x.d`.
    Groups rows: (keys as JSON text, count, unique) in key order, at most %(limit)s of them; totals: one
    row (count, unique)."""
    user_keys = [x for kind, x in keys if kind == "user"]
    filtered = where is not None or cohort is not None
    with_users = _users(user_keys, where, cohort)
    join_users = sql.SQL(" JOIN m ON m.id = r.user_id")
    on_rows = sql.SQL(" AND ").join(conditions)
    grouped: list[sql.Composable] = []
    output: list[sql.Composable] = []
    order: list[sql.Composable] = []
    names: list[sql.Composable] = []
    values = iter(range(len(user_keys)))
    for i, (kind, arg) in enumerate(keys):
        k = sql.Identifier(f"k{i}")
        if kind == "event":
            n = sql.Identifier(f"n{i}")
            grouped.append(sql.SQL("r.event_id AS {}").format(k))
            names.append(sql.SQL(" JOIN event_names AS {n} ON {n}.id = g.{k}").format(n=n, k=k))
            output.append(sql.SQL("to_jsonb({}.name)").format(n))
            order.append(sql.SQL('{}.name COLLATE "C"').format(n))
            continue
        if kind == "time":
            grouped.append(sql.SQL("{} AS {}").format(time_bucket(arg), k))
            output.append(sql.SQL("to_jsonb(to_char(g.{}, 'YYYY-MM-DD'))").format(k))
        else:
            grouped.append(sql.SQL("m.{} AS {}").format(sql.Identifier(f"v{next(values)}"), k))
            output.append(sql.SQL("g.{}").format(k))
        order.append(sql.SQL("g.{}").format(k))
    per_user = any(kind == "event" for kind, _ in keys) and ("time", "day") in keys
    unique = "count(*)" if per_user else "count(DISTINCT r.user_id)"
    groups = sql.SQL(
        "{with_users}SELECT jsonb_build_array({output})::text, g.c, g.u FROM ("
        "SELECT {grouped}, sum(r.events)::bigint AS c, {unique} FILTER (WHERE r.user_id <> 0) AS u"
        " FROM event_days AS r{join} WHERE {where} GROUP BY {positions}) AS g{names}"
        " ORDER BY {order} LIMIT %(limit)s"
    ).format(
        with_users=with_users if user_keys or filtered else sql.SQL(""),
        output=sql.SQL(", ").join(output),
        grouped=sql.SQL(", ").join(grouped),
        unique=sql.SQL(unique),
        join=join_users if user_keys or filtered else sql.SQL(""),
        where=on_rows,
        positions=sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(keys))),
        names=sql.SQL("").join(names),
        order=sql.SQL(", ").join(order),
    )
    totals = sql.SQL(
        "{with_users}SELECT coalesce(sum(r.events), 0)::bigint,"
        " count(DISTINCT r.user_id) FILTER (WHERE r.user_id <> 0) FROM event_days AS r{join} WHERE {where}"
    ).format(
        with_users=_users([], where, cohort) if filtered else sql.SQL(""),
        join=join_users if filtered else sql.SQL(""),
        where=on_rows,
    )
    return groups, totals
