"""Helpers of the event ingestion tests: reading events and users_seen back."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]


def events_of(db: psycopg.Connection[Row], project_id: int) -> list[Row]:
    """The project's events, oldest first: event, distinct_id, time (epoch seconds), insert_id, properties."""
    return db.execute(
        "SELECT event, distinct_id, extract(epoch FROM time)::float8 AS time, insert_id, properties,"
        " tableoid::regclass::text AS partition FROM events WHERE project_id = %s"
        " ORDER BY time, event, distinct_id, insert_id",
        (project_id,),
    ).fetchall()


def seen_of(db: psycopg.Connection[Row], project_id: int) -> dict[str, tuple[float, float]]:
    rows = db.execute(
        "SELECT distinct_id, extract(epoch FROM first_seen)::float8 AS f,"
        " extract(epoch FROM last_seen)::float8"
        " AS l FROM users_seen WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {r["distinct_id"]: (r["f"], r["l"]) for r in rows}


def event(token: str | None, name: str = "Signed up", **props: Any) -> Row:
    properties = dict(props)
    if token is not None:
        properties["token"] = token
    return {"event": name, "properties": properties}
