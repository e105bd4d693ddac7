"""The events hot path's SQL: ONE statement per /track or /import request, whatever its size.

The request's events go to Postgres as one JSONB array (jsonb_to_recordset), and one statement with a
data-modifying CTE inserts them into `events` and upserts `users_seen` (first/last event time per user):
one round trip, one implicit transaction (the pool's connections are autocommit), so a request is applied
whole or not at all.

* Dedupe: INSERT ... ON CONFLICT (project_id, event, distinct_id, time, insert_id) DO UPDATE keeps the
  latest copy of a retried event.  Duplicates inside one request are removed beforehand (records.dedupe):
  ON CONFLICT cannot touch the same row twice in one statement.
* Deadlocks: both inserts take their rows in key order (ORDER BY), so two concurrent requests that share
  users (the users_seen rows) or retried events (the unique index entries) lock them in the same order
  and one waits for the other instead of each holding what the other needs.
* Lock time: Postgres runs a data-modifying CTE that the main statement does not read after the main
  statement, so the users_seen upsert is the CTE: its row locks (shared by concurrent requests about the
  same users) are then held only from the end of the statement to the commit, not during the events
  insert.  Measured (bench/track.py, batches of 2,000): 48k -> 69k events/s.
* If Postgres refuses the batch as a whole (a value it cannot store, e.g. a \\u0000 in a string),
  `insert_one_by_one` runs it again event by event in one transaction, a savepoint each, so only the
  offending events fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from profilestore.ingest.events.records import Event
from profilestore.ingest.pipeline import REFUSED, refusal

INSERT = """
WITH seen AS (
    INSERT INTO users_seen AS u (project_id, distinct_id, first_seen, last_seen)
    SELECT s.p, s.d, s.f, s.l
    FROM jsonb_to_recordset(%(seen)s::jsonb) AS s(p bigint, d text, f timestamptz, l timestamptz)
    ORDER BY s.p, s.d
    ON CONFLICT (project_id, distinct_id)
    DO UPDATE SET first_seen = least(u.first_seen, excluded.first_seen),
                  last_seen = greatest(u.last_seen, excluded.last_seen)
)
INSERT INTO events AS e (project_id, event, distinct_id, time, insert_id, properties, received_at)
SELECT r.p, r.e, r.d, r.t, r.i, r.props, now()
FROM jsonb_to_recordset(%(events)s::jsonb)
    AS r(p bigint, e text, d text, t timestamptz, i text, props jsonb)
ORDER BY r.p, r.e, r.d, r.t, r.i
ON CONFLICT (project_id, event, distinct_id, time, insert_id)
DO UPDATE SET properties = excluded.properties, received_at = excluded.received_at
"""


@dataclass
class EventBatch:
    """One request's events as the statement's two JSONB parameters, plus which rows came from which event."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)  # record index of each row
    seen: dict[tuple[int, str], list[datetime]] = field(
        default_factory=dict
    )  # (project, id) -> [first, last]

    def params(self) -> dict[str, str]:
        seen = [{"p": p, "d": d, "f": fl[0], "l": fl[1]} for (p, d), fl in sorted(self.seen.items())]
        return {"events": orjson.dumps(self.rows).decode(), "seen": orjson.dumps(seen).decode()}


def _single(row: dict[str, Any]) -> dict[str, str]:
    seen = [{"p": row["p"], "d": row["d"], "f": row["t"], "l": row["t"]}] if row["d"] else []
    return {"events": orjson.dumps([row]).decode(), "seen": orjson.dumps(seen).decode()}


def build_event_batch(events: list[tuple[int, Event]]) -> EventBatch:
    """(project_id, event) pairs (already deduplicated) -> the batch, rows sorted by key."""
    batch = EventBatch()
    ordered = sorted(
        events, key=lambda pe: (pe[0], pe[1].event, pe[1].distinct_id, pe[1].time, pe[1].insert_id or "")
    )
    for project_id, ev in ordered:
        batch.rows.append(
            {
                "p": project_id,
                "e": ev.event,
                "d": ev.distinct_id,
                "t": ev.time,
                "i": ev.insert_id,
                "props": ev.properties,
            }
        )
        batch.indexes.append(ev.index)
        if ev.distinct_id:
            span = batch.seen.get((project_id, ev.distinct_id))
            if span is None:
                batch.seen[(project_id, ev.distinct_id)] = [ev.time, ev.time]
            else:
                span[0] = min(span[0], ev.time)
                span[1] = max(span[1], ev.time)
    return batch


async def insert_events(conn: AsyncConnection[Any], batch: EventBatch) -> None:
    """The whole batch in one statement (autocommit: one implicit transaction)."""
    await conn.execute(INSERT, batch.params())


async def insert_one_by_one(conn: AsyncConnection[Any], batch: EventBatch) -> dict[int, str]:
    """Slow path after the database refused the batch: one transaction, a savepoint per event, in key
    order.  Returns the refused record indexes with the message of each (pipeline.refusal)."""
    refused: dict[int, str] = {}
    async with conn.transaction():
        for row, index in zip(batch.rows, batch.indexes, strict=True):
            try:
                async with conn.transaction():
                    await conn.execute(INSERT, _single(row))
            except REFUSED as exc:
                refused[index] = refusal(exc)
    return refused
