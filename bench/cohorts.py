#!/usr/bin/env python
"""Cohorts and events-with-profiles benchmark: cohort counts and the events query on a million profiles and
ten million events, against the same questions asked of Postgres directly.

    python bench/cohorts.py [--profiles 1000000] [--events 10000000] [--database-url URL] [--runs 5] [--keep]

One run, one Postgres server (the one of --database-url), one fresh database `profilestore_bench_cohorts` on
it (created, migrated, dropped at the end unless --keep):

1. --profiles profiles by SQL (harness/data.py's loader: plan pro ~10%, team ~5%, free; country; ...), then
   --events events by SQL over the last 90 days, in chunks of consecutive time slices (so the table is in
   roughly time order, as ingestion leaves it), into monthly partitions made beforehand; the events indexes
   are dropped during the load and rebuilt after it from their own definitions; `users_seen` is filled from
   the events; `VACUUM (ANALYZE)`.  Users are skewed (user k's share falls like 1/sqrt(k)); 5% of the events
   are of users without a profile.  Names: Viewed 50%, Added 20%, Purchase 15%, Shared 10%, Signed up 5%;
   Purchase has an `amount`.
2. `profilestore serve` is started as a separate process (DATABASE_URL = the bench database).
3. Three saved cohorts (POST /api/cohorts) counted by `GET /api/cohorts/{id}/count`: plan == "pro" (a property
   cohort), did Purchase >= 3 times in the last 30 days (behavioural), and their `and`; against a
   hand-written count in SQL.  Then `POST /api/events/query`: unique users (and events) per day for 30 days
   broken down by the profile's plan, and per day by event name (no join); against hand-written GROUP BY
   statements.  Then `GET /api/2.0/export?join_profiles=true` of one day (events/s), against the same lines
   built by a SELECT read to the end.
4. The server's peak RSS during each measurement (VmHWM reset through /proc/PID/clear_refs; VmRSS sampled
   every 20 ms as a fallback); a markdown table with the targets (< 2 s for the counts and the queries,
   < 300 MB for all; the export's time is informational), one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from harness.data import load_profiles
from harness.db import bench_url, create_database, create_project, drop_database, use_database
from harness.events import load_events
from harness.machine import announce_machine, machine_facts
from harness.proc import RssSampler
from harness.report import Row, markdown, ms
from harness.server import Server, basic, free_port
from harness.stats import timed
from profilestore.db import migrate

BENCH_DB = "profilestore_bench_cohorts"

TARGET_S = 2.0
TARGET_RSS_MB = 300.0
PRO = 'properties["plan"] == "pro"'

RAW_COUNTS = {
    "pro": 'SELECT count(*) FROM profiles WHERE project_id = %(p)s AND properties @> \'{"plan": "pro"}\'',
    "buyers": """
SELECT count(*) FROM (
  SELECT distinct_id FROM events
  WHERE project_id = %(p)s AND event = 'Purchase' AND time >= now() - interval '30 days' AND time <= now()
  GROUP BY distinct_id HAVING count(*) >= 3) AS b""",
    "pro and buyers": """
SELECT count(*) FROM (
  SELECT distinct_id FROM events
  WHERE project_id = %(p)s AND event = 'Purchase' AND time >= now() - interval '30 days' AND time <= now()
  GROUP BY distinct_id HAVING count(*) >= 3) AS b
JOIN profiles AS p ON p.project_id = %(p)s AND p.distinct_id = b.distinct_id
WHERE p.properties @> '{\"plan\": \"pro\"}'""",
}

RAW_BY_PLAN = """
SELECT date_trunc('day', e.time AT TIME ZONE 'UTC') AS day, p.properties -> 'plan' AS plan,
  count(*), count(DISTINCT e.distinct_id) FILTER (WHERE e.distinct_id <> '')
FROM events AS e LEFT JOIN profiles AS p ON p.project_id = e.project_id AND p.distinct_id = e.distinct_id
WHERE e.project_id = %(p)s AND e.time >= %(start)s AND e.time < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""
RAW_BY_EVENT = """
SELECT date_trunc('day', e.time AT TIME ZONE 'UTC') AS day, e.event,
  count(*), count(DISTINCT e.distinct_id) FILTER (WHERE e.distinct_id <> '')
FROM events AS e WHERE e.project_id = %(p)s AND e.time >= %(start)s AND e.time < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""
RAW_EXPORT = """
SELECT concat('{"event":', to_json(e.event)::text, ',"properties":', (e.properties
  || jsonb_build_object('time', floor(extract(epoch FROM e.time))::bigint, 'distinct_id', e.distinct_id,
  '$insert_id', e.insert_id))::text, ',"user":', coalesce(p.properties::text, 'null'), '}')
FROM events AS e LEFT JOIN profiles AS p ON p.project_id = e.project_id AND p.distinct_id = e.distinct_id
WHERE e.project_id = %(p)s AND e.time >= %(start)s AND e.time < %(end)s
ORDER BY e.time, e.event, e.distinct_id, e.insert_id
"""


def measure(
    name: str,
    args: argparse.Namespace,
    server: Server,
    service: Callable[[], Any],
    raw: Callable[[], Any],
    note: Callable[[Any, Any], str] = lambda s, r: "",
    *,
    timed_target: bool = True,
) -> tuple[Row, dict[str, Any]]:
    """The service's call and the raw one, `args.runs` times each after the warm-up; the peak RSS of the
    server over the service's runs."""
    sampler = RssSampler(server.pid)
    service_timing, service_result = timed(args.runs, args.warmup, service)
    rss = sampler.finish()
    raw_timing, raw_result = timed(args.runs, args.warmup, raw)
    text = note(service_result, raw_result)
    fast = service_timing.median < TARGET_S or not timed_target
    ok = fast and rss["peak_rss_mb"] < TARGET_RSS_MB
    print(
        f"  {name}: service {ms(service_timing.median)} (max {ms(service_timing.max)}),"
        f" raw {ms(raw_timing.median)}, peak RSS {rss['peak_rss_mb']} MB {text}",
        flush=True,
    )
    row = Row(
        name=name,
        service=ms(service_timing.median),
        service_max=ms(service_timing.max),
        raw=ms(raw_timing.median),
        ratio=service_timing.median / raw_timing.median if raw_timing.median else float("nan"),
        target=(f"< {TARGET_S:.0f} s, " if timed_target else "")
        + f"< {TARGET_RSS_MB:.0f} MB ({rss['peak_rss_mb']:.0f} MB)",
        ok=ok,
        note=text,
    )
    return row, {
        "service": service_timing.figures(),
        "raw": raw_timing.figures(),
        **rss,
        "note": text,
        "ok": ok,
    }


def cohort_phase(
    args: argparse.Namespace,
    http: httpx.Client,
    conn: psycopg.Connection[Any],
    server: Server,
    project_id: int,
) -> tuple[list[Row], dict[str, Any]]:
    buyers = {
        "type": "event",
        "event": "Purchase",
        "count": {"op": ">=", "value": 3},
        "window": {"last": 30, "unit": "day"},
    }
    definitions = {
        "pro": {"op": "and", "filters": [{"type": "property", "where": PRO}]},
        "buyers": {"op": "and", "filters": [buyers]},
        "pro and buyers": {"op": "and", "filters": [{"type": "property", "where": PRO}, buyers]},
    }
    rows, figures = [], {}
    for name, definition in definitions.items():
        response = http.post("/api/cohorts", json={"name": name, "definition": definition})
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/cohorts {name}: {response.status_code} {response.text[:500]}")
        cohort_id = response.json()["id"]

        def service(cohort_id: int = cohort_id) -> int:
            response = http.get(f"/api/cohorts/{cohort_id}/count")
            if response.status_code != 200:
                raise RuntimeError(f"count {cohort_id}: {response.status_code} {response.text[:500]}")
            return int(response.json()["count"])

        def raw(name: str = name) -> int:
            row = conn.execute(RAW_COUNTS[name], {"p": project_id}).fetchone()
            assert row is not None
            return int(row[0])

        def note(s: int, r: int) -> str:
            return f"{s:,} members" + ("" if s == r else f"; raw SQL counts {r:,}")

        row, figures[name] = measure(f"cohort count: {name}", args, server, service, raw, note)
        rows.append(row)
    return rows, figures


def events_phase(
    args: argparse.Namespace,
    http: httpx.Client,
    conn: psycopg.Connection[Any],
    server: Server,
    project_id: int,
) -> tuple[list[Row], dict[str, Any]]:
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=29)
    bounds = {
        "p": project_id,
        "start": dt.datetime.combine(first, dt.time(), dt.UTC),
        "end": dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC),
    }
    queries = {
        "events query: uniques per day x plan, 30 days": (
            [{"type": "time", "unit": "day"}, {"type": "user", "name": "plan"}],
            RAW_BY_PLAN,
        ),
        "events query: uniques per day x event, 30 days": (
            [{"type": "time", "unit": "day"}, {"type": "event"}],
            RAW_BY_EVENT,
        ),
    }
    rows, figures = [], {}
    for name, (group_by, raw_sql) in queries.items():
        body = {"from_date": first.isoformat(), "to_date": today.isoformat(), "group_by": group_by}

        def service(body: dict[str, Any] = body) -> dict[str, Any]:
            response = http.post("/api/events/query", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"/api/events/query: {response.status_code} {response.text[:500]}")
            answer: dict[str, Any] = response.json()
            return answer

        def raw(raw_sql: str = raw_sql) -> list[Any]:
            return conn.execute(raw_sql, bounds).fetchall()

        def note(s: dict[str, Any], r: list[Any]) -> str:
            same = sum(g["count"] for g in s["results"]) == sum(x[2] for x in r) and sorted(
                g["unique"] for g in s["results"]
            ) == sorted(x[3] for x in r)
            return f"{len(s['results'])} groups, {s['total']['count']:,} events" + (
                "" if same else "; MISMATCH with raw SQL"
            )

        row, figures[name] = measure(name, args, server, service, raw, note)
        rows.append(row)

    day = today - dt.timedelta(days=1)
    day_bounds = {
        "p": project_id,
        "start": dt.datetime.combine(day, dt.time(), dt.UTC),
        "end": dt.datetime.combine(today, dt.time(), dt.UTC),
    }

    def export() -> tuple[int, int]:
        params = {"from_date": day.isoformat(), "to_date": day.isoformat(), "join_profiles": "true"}
        lines = size = 0
        with http.stream("GET", "/api/2.0/export", params=params) as response:
            if response.status_code != 200:
                raise RuntimeError(f"/api/2.0/export: {response.status_code} {response.read()[:500]!r}")
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
                size += len(chunk)
        return lines, size

    def raw_export() -> tuple[int, int]:
        lines = size = 0
        with conn.transaction(), conn.cursor(name="bench_export") as cur:
            cur.itersize = 5000
            cur.execute(RAW_EXPORT, day_bounds)
            for (line,) in cur:
                lines += 1
                size += len(line) + 1
        return lines, size

    def note(s: tuple[int, int], r: tuple[int, int]) -> str:
        return f"{s[0]:,} events, {s[1] / 2**20:,.0f} MiB" + ("" if s[0] == r[0] else f"; raw {r[0]:,}")

    # the export's time is informational (its rate is what matters); its memory is held to the target

    row, figures["export one day, join_profiles"] = measure(
        "export of one day, join_profiles", args, server, export, raw_export, note, timed_target=False
    )
    rows.append(row)
    return rows, figures


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", type=int, default=1_000_000, help="profiles to load")
    p.add_argument("--events", type=int, default=10_000_000, help="events to load (over 90 days)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a database on the server to use; the bench creates and drops its own beside it",
    )
    p.add_argument("--runs", type=int, default=5, help="measured runs of each query")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs before each measurement")
    p.add_argument("--workers", type=int, default=1, help="app processes of the server")
    p.add_argument("--keep", action="store_true", help=f"do not drop {BENCH_DB} at the end")
    args = p.parse_args()
    if args.profiles < 1 or args.events < 1 or args.runs < 1 or args.warmup < 0:
        p.error("--profiles, --events and --runs must be positive, --warmup at least 0")
    return args


def main() -> None:
    args = parse_args()
    use_database(BENCH_DB)
    url = bench_url(args.database_url)
    machine = machine_facts()
    create_database(args.database_url)
    server: Server | None = None
    rows: list[Row] = []
    results: dict[str, Any] = {}
    try:
        announce_machine(machine, url)
        migrate.upgrade(url)
        project = create_project(url)
        print(f"loading {args.profiles:,} profiles ...", flush=True)
        results["profiles"] = load_profiles(url, project["id"], args.profiles)
        print(f"loading {args.events:,} events ...", flush=True)
        results["events"] = ev = load_events(
            url, project["id"], shape="skewed", profiles=args.profiles, n=args.events
        )
        print(
            f"loaded {ev['rows']:,} events ({ev['purchases']:,} Purchase) of {ev['users']:,} users:"
            f" insert {ev['insert_s']} s, indexes {ev['indexes_s']} s, users_seen {ev['users_seen_s']} s,"
            f" vacuum+analyze {ev['vacuum_analyze_s']} s; {ev['total_bytes'] / 2**20:,.0f} MiB with indexes",
            flush=True,
        )
        server = Server(url, free_port(), args.workers)
        server.wait_healthy()
        headers = {"Authorization": basic(project["api_secret"])}
        with (
            httpx.Client(base_url=server.base, headers=headers, timeout=600) as http,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            print(f"\n{args.runs} runs after {args.warmup} warm-up(s)")
            cohort_rows, results["cohorts"] = cohort_phase(args, http, conn, server, project["id"])
            event_rows, results["events_queries"] = events_phase(args, http, conn, server, project["id"])
            rows = cohort_rows + event_rows
        server.stop()
        server = None
    finally:
        if server is not None:
            print(server.output())
            server.stop()
        if not args.keep:
            drop_database(args.database_url)

    print()
    for line in markdown(rows):
        print(line)
    print(
        f"\nmachine: nproc={machine['nproc']}, postgres {machine['postgres'].split(' ', 1)[0]},"
        f" code {machine['code']}; {args.profiles:,} profiles, {args.events:,} events"
    )
    print(json.dumps({"machine": machine, "config": vars(args), **results}, default=str))


if __name__ == "__main__":
    main()
