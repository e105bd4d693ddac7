"""What the event read endpoints (`/api/2.0/export`, `POST /api/events/query`) share: the date range, the
scope of their expressions, the profile join, and the filters, as psycopg `sql` fragments.

Aliases: `e` is `events`, `p` the joined `profiles` row (LEFT JOIN on `(project_id, distinct_id)`, the
profiles' primary key; an event with no user, distinct_id '', never finds one).  In an expression,
`properties[...]`/`event[...]` read the event and `user[...]` the profile; a missing profile reads as a
profile without properties, so `not defined(user["plan"])` holds for events of users without a profile.

Events are partitioned by month on `time`: the range is a half-open `[from 00:00 UTC, day after to 00:00 UTC)`
on the bare column, so Postgres prunes the partitions outside it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import sql

from profilestore.errors import BadRequest
from profilestore.expressions import Node, Scope, Source
from profilestore.expressions.ast import Property, children
from profilestore.profile_tables import USER_PROFILES

EPOCH = sql.SQL("extract(epoch FROM e.time)")

# The columns are the truth about an event's user, time and $insert_id (ingest stores `properties` as sent,
# where `time` may be milliseconds or ISO text): expressions and breakdowns read them from the columns.
EVENT_SOURCE = Source(
    column=sql.SQL("e.properties"),
    computed={
        "time": sql.SQL("to_jsonb({})").format(EPOCH),
        "distinct_id": sql.SQL("to_jsonb(e.distinct_id)"),
        "$insert_id": sql.SQL("to_jsonb(e.insert_id)"),
    },
)
# The joined profile (NULL without one: `defined()` is then false, `?` on NULL being NULL).
USER_SOURCE = USER_PROFILES.scope().properties
EVENT_SCOPE = Scope(properties=EVENT_SOURCE, user=USER_SOURCE)

PROFILE_JOIN = sql.SQL(
    " LEFT JOIN profiles AS p ON p.project_id = e.project_id AND p.distinct_id = e.distinct_id"
)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_day(name: str, value: object) -> date:
    """`YYYY-MM-DD` (or a date) -> the date; a 400 naming the parameter otherwise."""
    if isinstance(value, date):
        return value
    if value is None or value == "":
        raise BadRequest(f"{name}: required, a date YYYY-MM-DD")
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise BadRequest(f"{name}: must be a date YYYY-MM-DD, got {str(value)[:40]!r}") from None


def uses_user(node: Node | None) -> bool:
    """Does the expression read `user[...]` (so the query needs the profile join)?"""
    if node is None:
        return False
    if isinstance(node, Property):
        return node.source == "user"
    return any(uses_user(c) for c in children(node))


def event_conditions(
    project_id: int, from_date: date, to_date: date, names: list[str] | None, params: dict[str, Any]
) -> list[sql.Composable]:
    """Project, date range (inclusive days, UTC) and event names."""
    params.update(
        project_id=project_id,
        start=day_start(from_date),
        end=day_start(to_date + timedelta(days=1)),
    )
    conditions: list[sql.Composable] = [
        sql.SQL("e.project_id = %(project_id)s"),
        sql.SQL("e.time >= %(start)s"),
        sql.SQL("e.time < %(end)s"),
    ]
    if names is not None:
        params["names"] = names
        conditions.append(sql.SQL("e.event = ANY(%(names)s::text[])"))
    return conditions


def user_object() -> sql.Composable:
    """The joined profile as the read API shows it (with `$last_seen`), JSON `null` when there is none."""
    return sql.SQL("coalesce(({})::text, 'null')").format(USER_PROFILES.properties)
