"""The distinct event names of a project over a date range (the Insights page's event picker), and whether a
project has any event at all (its empty state).

Bounded: a loose index scan on ix_events_project_id_event_time (project_id, event, time).  Each step of the
recursive query descends the index once for the next name after the last one found (the range on `time` is
checked inside the index and prunes the monthly partitions outside it), so the work grows with the number of
names returned, at most `limit` + 1, not with the number of events.  Ordering by (event, time), the index's
own order, keeps the planner on it rather than the wider dedupe index.  A plain `SELECT DISTINCT event` would
read every event of the range.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from profilestore.query.events.sql import day_start

NAMES = """
WITH RECURSIVE names (event) AS (
    (SELECT event FROM events
     WHERE project_id = %(project_id)s AND time >= %(start)s AND time < %(end)s
     ORDER BY event, time LIMIT 1)
    UNION ALL
    SELECT (SELECT e.event FROM events AS e
            WHERE e.project_id = %(project_id)s AND e.event > n.event
              AND e.time >= %(start)s AND e.time < %(end)s
            ORDER BY e.event, e.time LIMIT 1)
    FROM names AS n WHERE n.event IS NOT NULL
)
SELECT event FROM names WHERE event IS NOT NULL LIMIT %(limit)s
"""
ANY_EVENT = "SELECT EXISTS (SELECT 1 FROM events WHERE project_id = %(project_id)s)"


async def event_names(
    conn: AsyncConnection[Any], project_id: int, from_date: date, to_date: date, *, limit: int = 500
) -> tuple[list[str], bool]:
    """The names of the events from `from_date` to `to_date` (inclusive days, UTC) in the index's order, at
    most `limit`, and whether there are more."""
    params = {
        "project_id": project_id,
        "start": day_start(from_date),
        "end": day_start(to_date + timedelta(days=1)),
        "limit": limit + 1,
    }
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(NAMES, params)
    names = [row[0] for row in await cur.fetchall()]
    return names[:limit], len(names) > limit


async def has_events(conn: AsyncConnection[Any], project_id: int) -> bool:
    """Whether the project has stored any event (one index probe)."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(ANY_EVENT, {"project_id": project_id})
    row = await cur.fetchone()
    return bool(row and row[0])
