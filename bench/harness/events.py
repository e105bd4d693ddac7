"""Generated events for the read benches, loaded by SQL into the monthly partitions of `events` (the daily
rollup `event_days` is kept through its triggers and one compaction, as for any writer), in two shapes:

- "skewed" (bench/cohorts.py's world): `n` events spread evenly over the last 90 days; user k of `profiles`
  has a share falling like 1/sqrt(k), 5% of the events are of users without a profile ('anon' ids);
- "daily" (a realistic product's shape): over the last `days` days, each of `profiles` users is active on a
  day with probability 0.4 (every fifth user, the regulars) or 0.04 (the rest), about 11% a day, and does
  1-29 events that day (15 on average), at random times of the day.

Names in both: Viewed 50%, Added 20%, Purchase 15%, Shared 10%, Signed up 5%; Purchase has an `amount`.
The events indexes are dropped during the load and rebuilt after it from their own definitions; `users_seen`
is filled from the events; `VACUUM (ANALYZE)`.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg
from psycopg import sql

from harness.db import drop_indexes, rebuild_indexes

NAME = """CASE WHEN r2 < 0.50 THEN 'Viewed' WHEN r2 < 0.70 THEN 'Added' WHEN r2 < 0.85 THEN 'Purchase'
         WHEN r2 < 0.95 THEN 'Shared' ELSE 'Signed up' END"""
INSERT = """
INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties, received_at)
SELECT %(project_id)s, s.ev, s.d, s.t, s.i,
  jsonb_build_object('distinct_id', s.d, 'time', floor(extract(epoch FROM s.t))::bigint, '$insert_id', s.i,
      '$browser', (ARRAY['Chrome', 'Firefox', 'Safari', 'Edge'])[1 + floor(s.r3 * 4)::int],
      'mp_lib', 'web')
  || CASE WHEN s.ev = 'Purchase' THEN jsonb_build_object('amount', round((s.r4 * 200)::numeric, 2))
     ELSE '{{}}' END,
  s.t
FROM ({rows}) AS s
"""
# One statement per time slice [lo, lo + span): events g = first..last.
SKEWED = """
SELECT 'e' || g AS i, r3, r4,
  CASE WHEN r6 < 0.05 THEN 'anon' || floor(r1 * 100000)::int
       ELSE 'u' || lpad((1 + floor(%(profiles)s * r1 * r1))::bigint::text, 8, '0') END AS d,
  {name} AS ev, %(lo)s::timestamptz + r5 * %(span)s::interval AS t
FROM (
  SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5, random() AS r6
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
) AS s0
"""
# One statement per day starting at lo: the day's active users, then their events.
DAILY = """
SELECT 'd' || %(day)s || '-' || a.u || '-' || k AS i, random() AS r3, random() AS r4,
  'u' || lpad(a.u::text, 8, '0') AS d, {name} AS ev,
  %(lo)s::timestamptz + random() * interval '1 day' AS t
FROM (
  SELECT u, 1 + floor(random() * 29)::int AS n
  FROM generate_series(1, %(profiles)s::bigint) AS u
  WHERE random() < CASE WHEN u %% 5 = 0 THEN 0.4 ELSE 0.04 END
) AS a, LATERAL (SELECT k, random() AS r2 FROM generate_series(1, a.n) AS k) AS e
"""
SKEWED_CHUNKS = 20


def _slices(shape: str, profiles: int, n: int, days: int) -> list[dict[str, Any]]:
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if shape == "skewed":
        start = end - dt.timedelta(days=90)
        span = (end - start) / SKEWED_CHUNKS
        per = -(-n // SKEWED_CHUNKS)
        return [
            {
                "profiles": profiles,
                "lo": start + i * span,
                "span": span,
                "first": i * per + 1,
                "last": min(n, (i + 1) * per),
            }
            for i in range(SKEWED_CHUNKS)
            if i * per + 1 <= n
        ]
    today = dt.datetime.combine(end.date(), dt.time(), dt.UTC)
    return [
        {"profiles": profiles, "day": k, "lo": today - dt.timedelta(days=days - 1 - k)} for k in range(days)
    ]


def load_events(
    url: str, project_id: int, *, shape: str, profiles: int, n: int = 0, days: int = 30
) -> dict[str, Any]:
    """Events of `shape` ("skewed": n of them over 90 days; "daily": `days` days of `profiles` users)."""
    rows = sql.SQL(SKEWED if shape == "skewed" else DAILY).format(name=sql.SQL(NAME))
    statement = sql.SQL(INSERT).format(rows=rows)
    figures: dict[str, Any] = {}
    slices = _slices(shape, profiles, n, days)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT profilestore_ensure_event_partitions(%s, 5)", (slices[0]["lo"],))
        indexes = drop_indexes(conn, "tablename = 'events'")
        conn.execute("SELECT setseed(0.17)")
        began = time.perf_counter()
        loaded = 0
        for piece in slices:
            cur = conn.execute(statement, {"project_id": project_id, **piece})
            loaded += cur.rowcount
            rate = loaded / (time.perf_counter() - began)
            print(f"  loaded {loaded:,} events ({rate:,.0f}/s)", end="\r", flush=True)
        figures["insert_s"] = round(time.perf_counter() - began, 1)
        print()
        figures["indexes_s"] = rebuild_indexes(conn, indexes)
        began = time.perf_counter()
        conn.execute(
            "INSERT INTO users_seen (project_id, distinct_id, first_seen, last_seen)"
            " SELECT project_id, distinct_id, min(time), max(time) FROM events WHERE distinct_id <> ''"
            " GROUP BY 1, 2"
        )
        figures["users_seen_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        conn.execute("SELECT profilestore_event_days_compact()")  # the triggers' pending changes, folded in
        figures["rollup_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        for table in (
            "events",
            "users_seen",
            "event_days",
            "event_users",
            "event_names",
            "event_days_pending",
        ):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        figures["vacuum_analyze_s"] = round(time.perf_counter() - began, 1)
        row = conn.execute(
            "SELECT count(*), (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            " WHERE inhparent = 'events'::regclass), (SELECT count(*) FROM users_seen),"
            " count(*) FILTER (WHERE event = 'Purchase'), (SELECT count(*) FROM event_days),"
            " pg_total_relation_size('event_days') FROM events"
        ).fetchone()
        assert row is not None
        figures.update(
            rows=row[0],
            total_bytes=int(row[1] or 0),
            users=row[2],
            purchases=row[3],
            rollup_rows=row[4],
            rollup_bytes=int(row[5]),
        )
    return figures
