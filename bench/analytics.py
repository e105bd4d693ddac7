#!/usr/bin/env python
"""Event analytics benchmark: `POST /api/events/query` and behavioural cohort counts, against the same
questions asked of Postgres by hand and of DuckDB over the same rows in memory (the anchor).

    python bench/analytics.py [--world skewed|daily|both] [--runs 5] [--database-url URL] [--keep]

Two worlds, each in a fresh database `profilestore_bench_analytics` (created, migrated, dropped at the end
unless --keep), built by harness/data.py (profiles) and harness/events.py (events):
- skewed: 1,000,000 profiles and 10,000,000 events over 90 days, users' shares falling like 1/sqrt(k)
  (bench/cohorts.py's world); targets: the two 30-day queries <= 1.5 s and <= 1.2 x DuckDB;
- daily: 200,000 profiles, 30 days, ~11% of users active a day with ~15 events each (~10M events); target:
  every query and count <= 1 s.
For each question, `--runs` timed runs after a warm-up of:
1. the service over HTTP (`profilestore serve` as its own process);
2. "Postgres, by hand": the same question written by hand against the daily rollup `event_days`;
3. "Postgres, events": the same question by hand against `events` (what the service did before the rollup);
4. DuckDB (threads = the machine's cores) over the 30 days' (time, event, distinct_id) and the profiles'
   (distinct_id, plan), loaded into its memory beforehand (the load is not timed).
The service's numbers are checked against DuckDB's (groups, counts, uniques); a difference is printed.
Prints a markdown table and one JSON line.  DuckDB is a benchmark dependency only (`pip install duckdb`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg

from harness.data import load_profiles
from harness.db import bench_url, create_database, create_project, drop_database, use_database
from harness.events import load_events
from harness.machine import announce_machine, machine_facts
from harness.report import ms
from harness.server import Server, basic, free_port
from harness.stats import Timing, timed
from profilestore.db import migrate

BENCH_DB = "profilestore_bench_analytics"
Fn = Callable[[], Any]
WORLDS = {
    "skewed": {"profiles": 1_000_000, "events": 10_000_000, "target_s": 1.5, "anchor": 1.2},
    "daily": {"profiles": 200_000, "events": 0, "target_s": 1.0, "anchor": None},
}
BUYERS = {"type": "event", "event": "Purchase", "count": {"op": ">=", "value": 3},
          "window": {"last": 30, "unit": "day"}}  # fmt: skip
SIGNED_UP = {"type": "event", "event": "Signed up", "count": {"op": ">=", "value": 1},
             "window": {"last": 7, "unit": "day"}}  # fmt: skip
PRO = {"type": "property", "where": 'properties["plan"] == "pro"'}

# name -> (service request, SQL on the rollup, SQL on events, DuckDB SQL); each is the groups (keys...,
# count, unique) and the range's totals (count, unique), as the service answers them: the rollup and
# DuckDB in two statements, `events` in one with GROUPING SETS (the service's way before the rollup).
DAY = "date_trunc('day', e.time AT TIME ZONE 'UTC')::date"
EV_RANGE = "e.project_id = %(p)s AND e.time >= %(start)s AND e.time < %(end)s"
EV_UNIQUE = "count(DISTINCT e.distinct_id) FILTER (WHERE e.distinct_id <> '')"
R_RANGE = "r.project_id = %(p)s AND r.day >= %(first)s AND r.day <= %(last)s"
R_UNIQUE = "count(DISTINCT r.user_id) FILTER (WHERE r.user_id <> 0)"
R_TOTALS = f"SELECT sum(r.events), {R_UNIQUE} FROM event_days r WHERE {R_RANGE}"
R_NAMES = " JOIN event_names AS k ON k.id = g.e"
R_PLANS = (
    " JOIN (SELECT x.id, p.properties -> 'plan' AS plan FROM (SELECT id, distinct_id FROM event_users"
    " WHERE project_id = %(p)s UNION ALL SELECT 0, '') AS x LEFT JOIN profiles AS p ON p.project_id = %(p)s"
    " AND p.distinct_id = x.distinct_id) AS m ON m.id = r.user_id"
)
D_RANGE = "e.time >= $start AND e.time < $end"
D_UNIQUE = "count(DISTINCT e.distinct_id) FILTER (WHERE e.distinct_id <> '')"
D_TOTALS = f"SELECT count(*), {D_UNIQUE} FROM ev e WHERE {D_RANGE}"
PLAN_JOIN = " LEFT JOIN profiles AS p ON p.project_id = %(p)s AND p.distinct_id = e.distinct_id"
QUESTIONS: dict[str, tuple[dict[str, Any], list[str], str, list[str]]] = {
    "uniques per day x event": (
        {"group_by": [{"type": "time", "unit": "day"}, {"type": "event"}]},
        [
            "SELECT g.day, k.name, g.c, g.u FROM (SELECT r.day, r.event_id AS e, sum(r.events) AS c,"
            f" count(*) FILTER (WHERE r.user_id <> 0) AS u FROM event_days r WHERE {R_RANGE} GROUP BY 1, 2) g"
            f"{R_NAMES}",
            R_TOTALS,
        ],
        f"SELECT {DAY}, e.event, count(*), {EV_UNIQUE} FROM events e WHERE {EV_RANGE}"
        " GROUP BY GROUPING SETS ((1, 2), ())",
        [
            f"SELECT e.time::date, e.event, count(*), {D_UNIQUE} FROM ev e WHERE {D_RANGE} GROUP BY ALL",
            D_TOTALS,
        ],
    ),
    "uniques per day x plan": (
        {"group_by": [{"type": "time", "unit": "day"}, {"type": "user", "name": "plan"}]},
        [
            "SELECT r.day, m.plan, sum(r.events), count(DISTINCT r.user_id) FILTER (WHERE r.user_id <> 0)"
            f" FROM event_days r{R_PLANS} WHERE {R_RANGE} GROUP BY 1, 2",
            R_TOTALS,
        ],
        f"SELECT {DAY}, p.properties -> 'plan', count(*), {EV_UNIQUE} FROM events e{PLAN_JOIN}"
        f" WHERE {EV_RANGE} GROUP BY GROUPING SETS ((1, 2), ())",
        [
            f"SELECT e.time::date, u.plan, count(*), {D_UNIQUE} FROM ev e"
            f" LEFT JOIN users u USING (distinct_id) WHERE {D_RANGE} GROUP BY ALL",
            D_TOTALS,
        ],
    ),
    "uniques per week x event": (
        {"group_by": [{"type": "time", "unit": "week"}, {"type": "event"}]},
        [
            "SELECT g.w, k.name, g.c, g.u FROM (SELECT date_trunc('week', r.day::timestamp) AS w,"
            f" r.event_id AS e, sum(r.events) AS c, {R_UNIQUE} AS u FROM event_days r WHERE {R_RANGE}"
            f" GROUP BY 1, 2) g{R_NAMES}",
            R_TOTALS,
        ],
        f"SELECT date_trunc('week', e.time AT TIME ZONE 'UTC'), e.event, count(*), {EV_UNIQUE}"
        f" FROM events e WHERE {EV_RANGE} GROUP BY GROUPING SETS ((1, 2), ())",
        [
            f"SELECT date_trunc('week', e.time), e.event, count(*), {D_UNIQUE} FROM ev e WHERE {D_RANGE}"
            " GROUP BY ALL",
            D_TOTALS,
        ],
    ),
    "unique users in 30 days (no groups)": (
        {},
        [R_TOTALS],
        f"SELECT count(*), {EV_UNIQUE} FROM events e WHERE {EV_RANGE}",
        [D_TOTALS],
    ),
}
COHORTS: dict[str, tuple[dict[str, Any], str, str]] = {
    "cohort: did Purchase >= 3 times in 30 days": (
        {"op": "and", "filters": [BUYERS]},
        "SELECT count(*) FROM (SELECT e.distinct_id FROM events e WHERE e.project_id = %(p)s"
        " AND e.event = 'Purchase' AND e.time >= %(now)s - interval '30 days' AND e.time <= %(now)s"
        " GROUP BY 1 HAVING count(*) >= 3) b",
        "SELECT count(*) FROM (SELECT e.distinct_id FROM ev e WHERE e.event = 'Purchase'"
        " AND e.time >= $now - INTERVAL 30 DAY AND e.time <= $now GROUP BY 1 HAVING count(*) >= 3) b",
    ),
    "cohort: did Signed up in 7 days": (
        {"op": "and", "filters": [SIGNED_UP]},
        "SELECT count(DISTINCT e.distinct_id) FROM events e WHERE e.project_id = %(p)s"
        " AND e.event = 'Signed up' AND e.time >= %(now)s - interval '7 days' AND e.time <= %(now)s",
        "SELECT count(DISTINCT e.distinct_id) FROM ev e WHERE e.event = 'Signed up'"
        " AND e.time >= $now - INTERVAL 7 DAY AND e.time <= $now",
    ),
    "cohort: pro and did Purchase >= 3 times in 30 days": (
        {"op": "and", "filters": [PRO, BUYERS]},
        "SELECT count(*) FROM (SELECT e.distinct_id FROM events e WHERE e.project_id = %(p)s"
        " AND e.event = 'Purchase' AND e.time >= %(now)s - interval '30 days' AND e.time <= %(now)s"
        " GROUP BY 1 HAVING count(*) >= 3) b JOIN profiles p ON p.project_id = %(p)s"
        ' AND p.distinct_id = b.distinct_id WHERE p.properties @> \'{"plan": "pro"}\'',
        "SELECT count(*) FROM (SELECT e.distinct_id FROM ev e WHERE e.event = 'Purchase'"
        " AND e.time >= $now - INTERVAL 30 DAY AND e.time <= $now GROUP BY 1 HAVING count(*) >= 3) b"
        " JOIN users u USING (distinct_id) WHERE u.plan = 'pro'",
    ),
}


def load_duckdb(url: str, project_id: int, start: dt.datetime, end: dt.datetime) -> duckdb.DuckDBPyConnection:
    """The window's events (time as naive UTC, event, distinct_id) and the profiles' plans in DuckDB's
    memory, through CSV files written by COPY."""
    db = duckdb.connect(":memory:")
    db.execute(f"SET threads = {os.cpu_count() or 1}")
    with tempfile.TemporaryDirectory() as tmp, psycopg.connect(url) as conn:
        for name, query in {
            "ev": "SELECT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), event, distinct_id"
            f" FROM events WHERE project_id = {project_id} AND time >= '{start.isoformat()}'"
            f" AND time < '{end.isoformat()}'",
            "users": "SELECT distinct_id, properties ->> 'plan' FROM profiles"
            f" WHERE project_id = {project_id}",
        }.items():
            path = Path(tmp) / f"{name}.csv"
            with path.open("wb") as out, conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                for data in copy:
                    out.write(data)
            columns = (
                "{'time': 'TIMESTAMP', 'event': 'VARCHAR', 'distinct_id': 'VARCHAR'}"
                if name == "ev"
                else "{'distinct_id': 'VARCHAR', 'plan': 'VARCHAR'}"
            )
            db.execute(
                f"CREATE TABLE {name} AS SELECT * FROM read_csv('{path}', header = false,"
                f" columns = {columns}, nullstr = '')"
            )
    return db


def normal(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as comparable tuples, sorted: dates as text, NULL as "null", numbers as ints."""
    out = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, dt.datetime | dt.date):
                cells.append(v.strftime("%Y-%m-%d"))
            elif isinstance(v, int | float | Decimal) and not isinstance(v, bool):
                cells.append(int(v))
            elif v is None:
                cells.append("null")
            else:
                cells.append(json.dumps(v) if not isinstance(v, str) else v)
        out.append(tuple(cells))
    return sorted(out, key=str)


def service_rows(answer: dict[str, Any]) -> list[list[tuple[Any, ...]]]:
    """The answer as the floors give it: [groups, totals], or [totals] without groups."""
    totals = normal([[answer["total"]["count"], answer["total"]["unique"]]])
    if not answer["group_by"]:
        return [totals]
    return [normal([[*g["keys"], g["count"], g["unique"]] for g in answer["results"]]), totals]


def run_world(
    world: str, args: argparse.Namespace, machine: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    shape = {k: v if k in ("target_s", "anchor") or v is None else int(v * args.scale)
             for k, v in WORLDS[world].items()}  # fmt: skip
    create_database(args.database_url)
    url = bench_url(args.database_url)
    server: Server | None = None
    figures: dict[str, Any] = {}
    lines: list[str] = []
    try:
        announce_machine(machine, url)
        migrate.upgrade(url)
        project = create_project(url)
        pid = project["id"]
        print(f"[{world}] loading {shape['profiles']:,} profiles ...", flush=True)
        figures["profiles"] = load_profiles(url, pid, int(shape["profiles"]))
        print(f"[{world}] loading events ...", flush=True)
        load = load_events(
            url, pid, shape="skewed" if world == "skewed" else "daily", profiles=int(shape["profiles"]),
            n=int(shape["events"]),
        )  # fmt: skip
        figures["events"] = load
        print(
            f"[{world}] {load['rows']:,} events, rollup {load['rollup_rows']:,} rows"
            f" ({load['rollup_bytes'] / 2**20:,.0f} MiB), loaded in {load['insert_s']} s",
            flush=True,
        )
        today = dt.datetime.now(dt.UTC).date()
        first = today - dt.timedelta(days=29)
        start = dt.datetime.combine(first, dt.time(), dt.UTC)
        end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
        duck = load_duckdb(url, pid, start - dt.timedelta(days=2), end)  # the cohorts reach back 30 x 24 h
        now = dt.datetime.now(dt.UTC)
        duck_params = {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None),
                       "now": now.replace(tzinfo=None)}  # fmt: skip
        pg_params = {"p": pid, "start": start, "end": end, "first": first, "last": today, "now": now}
        server = Server(url, free_port(), args.workers)
        server.wait_healthy()
        headers = {"Authorization": basic(project["api_secret"])}
        cohort_ids: dict[str, int] = {}
        with (
            httpx.Client(base_url=server.base, headers=headers, timeout=600) as http,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            for name, (definition, _, _) in COHORTS.items():
                response = http.post("/api/cohorts", json={"name": name, "definition": definition})
                response.raise_for_status()
                cohort_ids[name] = response.json()["id"]
            lines.append(
                "| question | service | Postgres by hand (rollup) | Postgres by hand (events) | DuckDB"
                " | service / DuckDB | target | |"
            )
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
            jobs: list[tuple[str, Fn, Fn | None, Fn, Fn]]
            jobs = []
            for name, (body, rollup_sql, events_sql, duck_sql) in QUESTIONS.items():
                request = {"from_date": first.isoformat(), "to_date": today.isoformat(), **body}
                jobs.append((
                    f"events query: {name}, 30 days",
                    lambda request=request: service_rows(_post(http, request)),
                    lambda qs=rollup_sql: [normal(conn.execute(q, pg_params).fetchall()) for q in qs],
                    lambda q=events_sql: normal(conn.execute(q, pg_params).fetchall()),
                    lambda qs=duck_sql: [normal(duck.execute(q, _named(q, duck_params)).fetchall())
                                         for q in qs],
                ))  # fmt: skip
            for name, (_, events_sql, duck_sql) in COHORTS.items():
                cid = cohort_ids[name]
                jobs.append((
                    name,
                    lambda cid=cid: [[(int(_get(http, f"/api/cohorts/{cid}/count")["count"]),)]],
                    None,
                    lambda q=events_sql: normal(conn.execute(q, pg_params).fetchall()),
                    lambda q=duck_sql: [normal(duck.execute(q, _named(q, duck_params)).fetchall())],
                ))  # fmt: skip
            for name, service, by_rollup, by_events, by_duck in jobs:
                timings: dict[str, Timing] = {}
                results: dict[str, Any] = {}
                for who, fn in (("service", service), ("rollup", by_rollup), ("events", by_events),
                                ("duckdb", by_duck)):  # fmt: skip
                    if fn is not None:
                        timings[who], results[who] = timed(args.runs, 1, fn)
                same = results["service"] == results["duckdb"]
                s, d = timings["service"].median, timings["duckdb"].median
                ratio = s / d if d else float("nan")
                ok = s <= float(shape["target_s"]) and (
                    shape["anchor"] is None or ratio <= float(shape["anchor"])
                )
                target = f"<= {shape['target_s']} s" + (
                    f", <= {shape['anchor']} x DuckDB" if shape["anchor"] else ""
                )
                # A rolling window moves between the calls: a cohort may differ by the events at its start.
                note = (
                    ""
                    if same
                    else f" (DuckDB: {results['duckdb'][0][0] if name.startswith('cohort') else 'DIFFERS'})"
                )
                groups = len(results["service"][0])
                lines.append(
                    f"| {name} ({groups} rows){note} | {ms(s)} | "
                    + (ms(timings["rollup"].median) if "rollup" in timings else "")
                    + f" | {ms(timings['events'].median)} | {ms(d)} | {ratio:.2f} | {target} |"
                    f" {'ok' if ok else 'MISSED'} |"
                )
                print(f"[{world}] {lines[-1]}", flush=True)
                if not same:
                    diff = set(results["service"][0]) ^ set(results["duckdb"][0])
                    print(f"  differences (first 5): {sorted(diff, key=str)[:5]}", flush=True)
                figures[name] = {who: t.figures() for who, t in timings.items()} | {
                    "same_as_duckdb": same,
                    "ok": ok,
                }
        server.stop()
        server = None
    finally:
        if server is not None:
            print(server.output())
            server.stop()
        if not args.keep:
            drop_database(args.database_url)
    return lines, figures


def _named(query: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a DuckDB query names (DuckDB refuses the others)."""
    return {k: v for k, v in params.items() if f"${k}" in query}


def _post(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/api/events/query", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"/api/events/query: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer


def _get(http: httpx.Client, path: str) -> dict[str, Any]:
    response = http.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=["skewed", "daily", "both"], default="both")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a database on the server to use; the bench creates and drops its own beside it",
    )
    p.add_argument("--runs", type=int, default=5, help="measured runs of each question")
    p.add_argument("--scale", type=float, default=1.0, help="profiles and events x this (a smoke test: 0.01)")
    p.add_argument("--workers", type=int, default=1, help="app processes of the server")
    p.add_argument("--keep", action="store_true", help=f"do not drop {BENCH_DB} at the end (one world only)")
    args = p.parse_args()
    if args.runs < 1 or args.scale <= 0:
        p.error("--runs and --scale must be positive")
    return args


def main() -> None:
    args = parse_args()
    use_database(BENCH_DB)
    machine = machine_facts()
    worlds = ["skewed", "daily"] if args.world == "both" else [args.world]
    report: dict[str, Any] = {}
    tables: list[str] = []
    for world in worlds:
        lines, report[world] = run_world(world, args, machine)
        tables += ["", f"**{world}**", "", *lines]
    print("\n".join(tables))
    print(f"\nmachine: nproc={machine['nproc']}, postgres {machine['postgres'].split(' ', 1)[0]},"
          f" duckdb {duckdb.__version__}, code {machine['code']}")  # fmt: skip
    print(json.dumps({"machine": machine, "config": vars(args), **report}, default=str))


if __name__ == "__main__":
    main()
