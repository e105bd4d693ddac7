"""The narrow path of `POST /api/events/query`: the daily rollup `event_days` instead of the events.

`event_days` holds one row per (project, UTC day, event, distinct_id) with its number of events, kept exact
by triggers on `events` (db/sql/0010_event_days.sql).  A question that reads nothing of an event but its
name, day and user (no `properties[...]` in `where`, no event-property breakdown) is answered from it:
* per group, `count` is the sum of the rows' counts; `unique` is the number of distinct users, and when the
  groups are finer than (day, event) the rows are unique per (group, user) already, so it is `count(*)`;
  coarser groups (weeks, months, all events) add the users' rows up first (one hash aggregate);
* profile properties and the cohort are functions of the user: the profiles are joined after the rollup
  rows are reduced to one per (group, user), so a user is looked up once per group, not once per event;
* the totals are a second statement (one row per user of the range), so that neither pays for
  `GROUPING SETS`, and both can run in parallel (Postgres does not parallelise `GROUPING SETS` or
  `count(DISTINCT)`); both read the same snapshot (one REPEATABLE READ transaction, query.py).
Measured (bench/cohorts.py, 1M profiles, 10M events over 90 days, 2 cores): see the README's figures.
Why a rollup and not a covering index on events: counting rows that are already one per (day, event, user)
needs no distinct at all; an index-only scan of the events still reads one entry per event and has to
deduplicate them (and depends on the visibility map).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from psycopg import sql

from profilestore.expressions import Node, SqlParams, compile_value
from profilestore.expressions.ast import Property, children
from profilestore.query.events import sql as ev

# The events query's statements may hash a few million (group, user) pairs: enough memory for that, set for
# the analytics transaction only (SET LOCAL), never for the server.
ANALYTICS_WORK_MEM = "256MB"


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
        conditions.append(sql.SQL("r.event = ANY(%(names)s::text[])"))
    return conditions


def event_key() -> tuple[sql.Composable, str]:
    return sql.SQL('r.event COLLATE "C"'), "to_jsonb({})"


def time_key(unit: str) -> tuple[sql.Composable, str]:
    bucket = (
        sql.SQL("r.day")
        if unit == "day"
        else sql.SQL("date_trunc({}, r.day::timestamp)::date").format(sql.Literal(unit))
    )
    return bucket, "to_jsonb(to_char({}, 'YYYY-MM-DD'))"


def user_key(name: str, compiled: SqlParams, now: float) -> tuple[sql.Composable, str]:
    value = compile_value(Property("user", name), ev.EVENT_SCOPE, compiled, now=now)
    return sql.SQL("coalesce({}, 'null'::jsonb)").format(value), "{}"


PROFILE_JOIN = sql.SQL(" LEFT JOIN profiles AS p ON p.project_id = %(project_id)s AND p.distinct_id = g.d")


def statements(
    *,
    keys: list[tuple[str, sql.Composable, str]],
    conditions: list[sql.Composable],
    user_conditions: list[sql.Composable],
    join: bool,
    per_user: bool,
) -> tuple[sql.Composed, sql.Composed]:
    """(groups, totals).  `keys`: per group_by entry, where it comes from ("row": the rollup row, "user": the
    joined profile), its expression and how its value becomes JSON; `conditions` on `r`, `user_conditions`
    on `g.d` and `p`; `per_user`: the rows are already one per (group, user) (day and event are keys)."""
    row_keys = [(i, x) for i, (where, x, _) in enumerate(keys) if where == "row"]
    names = {i: sql.Identifier(f"k{i}") for i, _ in row_keys}
    inner_cols = sql.SQL("").join(sql.SQL("{} AS {}, ").format(x, names[i]) for i, x in row_keys)
    filters = sql.SQL(" AND ").join(conditions)
    template: sql.SQL
    if per_user:
        template = sql.SQL("SELECT {cols}r.distinct_id AS d, r.events AS n FROM event_days AS r WHERE {f}")
    else:
        template = sql.SQL(
            "SELECT {cols}r.distinct_id AS d, sum(r.events) AS n FROM event_days AS r WHERE {f}"
            " GROUP BY {group}r.distinct_id"
        )
    inner = template.format(
        cols=inner_cols,
        f=filters,
        group=sql.SQL("").join(sql.SQL("{}, ").format(names[i]) for i, _ in row_keys),
    )
    outer_keys = [
        sql.SQL("g.{}").format(names[i]) if where == "row" else x for i, (where, x, _) in enumerate(keys)
    ]
    output = sql.SQL(", ").join(
        sql.SQL(out).format(k) for k, (_, _, out) in zip(outer_keys, keys, strict=True)
    )
    listed = sql.SQL(", ").join(outer_keys)
    join_sql = PROFILE_JOIN if join else sql.SQL("")
    where_sql: sql.Composable = sql.SQL("")
    if user_conditions:
        where_sql = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(user_conditions))
    counts = sql.SQL("sum(g.n)::bigint, count(*) FILTER (WHERE g.d <> '')")
    groups = sql.SQL(
        "SELECT jsonb_build_array({output})::text, {counts} FROM ({inner}) AS g{join}{where}"
        " GROUP BY {listed} ORDER BY {listed} LIMIT %(limit)s"
    ).format(output=output, counts=counts, inner=inner, join=join_sql, where=where_sql, listed=listed)
    totals = sql.SQL(
        "SELECT coalesce(sum(g.n), 0)::bigint, count(*) FILTER (WHERE g.d <> '')"
        " FROM (SELECT r.distinct_id AS d, sum(r.events) AS n FROM event_days AS r WHERE {f}"
        " GROUP BY r.distinct_id) AS g{join}{where}"
    ).format(f=filters, join=join_sql, where=where_sql)
    return groups, totals
