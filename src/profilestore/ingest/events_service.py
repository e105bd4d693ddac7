"""/track and /import as a plain function: decoded events in, an `Outcome` out (events_routes.py renders it).

Steps: validate every event (events.py), resolve the project tokens (/track; /import's project comes from
its credentials), drop duplicates within the request, insert them in one statement (events_sql.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from profilestore.ingest.events import Event, dedupe, error_id, validate_events
from profilestore.ingest.events_sql import build_event_batch, insert_events, insert_one_by_one
from profilestore.ingest.responses import Outcome, RecordError
from profilestore.ingest.service import connector
from profilestore.projects import TokenCache
from profilestore.settings import Settings


async def ingest_events(
    records: list[Any],
    *,
    body_bytes: int,
    now: float,
    project_id: int | None,
    pool: AsyncConnectionPool,
    tokens: TokenCache,
    settings: Settings,
) -> Outcome:
    """/track (project_id None: each event's properties.token) or /import (the authenticated project)."""
    importing = project_id is not None
    id_field = "$insert_id" if importing else "$distinct_id"
    limit = settings.max_records
    over = [
        RecordError(i, id_field, error_id(r, id_field), "", f"a request holds at most {limit} events")
        for i, r in enumerate(records[limit:], start=limit)
    ]
    events, errors = validate_events(
        records[:limit], now=now, importing=importing, settings=settings, body_bytes=body_bytes
    )
    errors.extend(over)

    connect = connector(pool, settings)
    pairs: list[tuple[int, Event]] = []
    if project_id is not None:
        pairs = [(project_id, ev) for ev in events]
    elif events:
        project_ids = await tokens.resolve(connect, {ev.token for ev in events if ev.token is not None})
        for ev in events:
            pid = project_ids.get(ev.token) if ev.token is not None else None
            if pid is None:
                bad = RecordError(
                    ev.index, id_field, ev.distinct_id, "properties.token", "unknown project token"
                )
                errors.append(bad)
            else:
                pairs.append((pid, ev))
    pairs = dedupe(pairs)
    if pairs:
        batch = build_event_batch(pairs)
        async with connect() as conn:
            try:
                await insert_events(conn, batch)
            except psycopg.errors.DataError:
                refused = await insert_one_by_one(conn, batch)
                by_index = {ev.index: ev for _, ev in pairs}
                for index, reason in refused.items():
                    ev = by_index[index]
                    value = ev.insert_id if importing else ev.distinct_id
                    message = f"refused by the database: {reason}"
                    errors.append(RecordError(index, id_field, value, "", message))
    errors.sort(key=lambda e: e.index)
    return Outcome(total=len(records), failures=errors)
