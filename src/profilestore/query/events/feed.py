"""One user's events: the activity feed (newest first, by keyset on (time, insert_id, event)) and events per
day over a window, both served by ix_events_project_id_distinct_id_time."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection

from profilestore.errors import BadRequest

FEED = """
SELECT event, time, insert_id, properties FROM events
WHERE project_id = %(project_id)s AND distinct_id = %(distinct_id)s {after}
ORDER BY time DESC, coalesce(insert_id, '') DESC, event DESC
LIMIT %(limit)s
"""
AFTER = "AND (time, coalesce(insert_id, ''), event) < (%(t)s, %(i)s, %(e)s)"
PER_DAY = """
SELECT date_trunc('day', time AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM events
WHERE project_id = %(project_id)s AND distinct_id = %(distinct_id)s AND time >= %(since)s
GROUP BY 1 ORDER BY 1
"""


@dataclass
class Feed:
    events: list[dict[str, Any]]
    next_after: str | None


async def activity(
    conn: AsyncConnection[Any], project_id: int, distinct_id: str, *, after: str | None, limit: int = 50
) -> Feed:
    params: dict[str, Any] = {"project_id": project_id, "distinct_id": distinct_id, "limit": limit + 1}
    where = ""
    if after:
        try:
            t, i, e = orjson.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
            params.update(t=dt.datetime.fromtimestamp(float(t), dt.UTC), i=str(i), e=str(e))
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise BadRequest("after: not a cursor of this feed") from None
        where = AFTER
    rows = await (await conn.execute(FEED.format(after=where), params)).fetchall()
    page = rows[:limit]
    next_after = None
    if len(rows) > limit:
        last = page[-1]
        cursor = [last["time"].timestamp(), last["insert_id"] or "", last["event"]]
        next_after = base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")
    return Feed(list(page), next_after)


async def per_day(
    conn: AsyncConnection[Any], project_id: int, distinct_id: str, *, days: int, today: dt.date
) -> list[tuple[dt.date, int]]:
    """(day, events) for each of the `days` days up to `today` (UTC), zeros included."""
    first = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time(), dt.UTC)
    params = {"project_id": project_id, "distinct_id": distinct_id, "since": since}
    counts = {r["day"]: int(r["n"]) for r in await (await conn.execute(PER_DAY, params)).fetchall()}
    return [(first + dt.timedelta(days=i), counts.get(first + dt.timedelta(days=i), 0)) for i in range(days)]
