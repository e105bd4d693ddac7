"""One profile (`/users/profile?distinct_id=`, as Mixpanel's URL carries it): its properties with their types,
when it was seen, its groups, a chart of its events per day over 90 days, and its activity feed, newest
first, paged, each event opening to its properties."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from profilestore.db.connections import database
from profilestore.deps import PoolDep, SettingsDep
from profilestore.errors import ProfilestoreError
from profilestore.query.events.feed import activity, per_day
from profilestore.web.charts import daily_bars
from profilestore.web.deps import WebDep, context
from profilestore.web.render import page
from profilestore.web.users import person

router = APIRouter(include_in_schema=False)

CHART_DAYS = 90
PROFILE = """
SELECT properties, created_at, updated_at, last_seen FROM profiles
WHERE project_id = %(project_id)s AND distinct_id = %(distinct_id)s
"""
# The group keys of the project that this profile names in a property of the same name (Mixpanel's group
# membership), with the group profiles that exist.
GROUPS = """
SELECT g.group_key, g.group_id, g.properties->>'$name' AS name FROM group_profiles AS g
WHERE g.project_id = %(project_id)s AND g.group_key = ANY(%(keys)s) AND g.group_id = ANY(%(ids)s)
ORDER BY 1, 2 LIMIT 100
"""


@router.get("/users/profile")
async def profile(
    request: Request,
    web: WebDep,
    pool: PoolDep,
    settings: SettingsDep,
    distinct_id: str = "",
    after: str | None = None,
) -> Response:
    if not distinct_id or "\x00" in distinct_id:
        return page(request, "not_found.html", context(web, what="profile", distinct_id=distinct_id), 404)
    error = None
    params = {"project_id": web.project_id, "distinct_id": distinct_id}
    async with database(pool, settings) as conn:
        row = await (await conn.execute(PROFILE, params)).fetchone()
        try:
            feed = await activity(conn, web.project_id, distinct_id, after=after)
        except ProfilestoreError as exc:
            feed, error = None, exc.message
        series = await per_day(
            conn, web.project_id, distinct_id, days=CHART_DAYS, today=dt.datetime.now(dt.UTC).date()
        )
        groups = await _groups(conn, web.project_id, row["properties"] if row else {})
    if row is None and not any(n for _, n in series) and (feed is None or not feed.events):
        return page(request, "not_found.html", context(web, what="profile", distinct_id=distinct_id), 404)
    properties: dict[str, Any] = dict(sorted((row["properties"] if row else {}).items()))
    total = sum(n for _, n in series)
    return page(
        request,
        "profile.html",
        context(
            web,
            distinct_id=distinct_id,
            row=row,
            who=person(properties, distinct_id),
            properties=properties,
            groups=groups,
            chart=daily_bars(series, f"Events per day, last {CHART_DAYS} days: {total} in all"),
            total=total,
            feed=feed,
            error=error,
        ),
    )


async def _groups(conn: Any, project_id: int, properties: dict[str, Any]) -> list[dict[str, Any]]:
    ids: list[str] = []
    keys: list[str] = []
    for key, value in properties.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str | int) and not isinstance(v, bool):
                keys.append(key)
                ids.append(str(v))
    if not keys:
        return []
    rows = await (await conn.execute(GROUPS, {"project_id": project_id, "keys": keys, "ids": ids})).fetchall()
    return [r for r in rows if (r["group_key"], r["group_id"]) in set(zip(keys, ids, strict=True))]
