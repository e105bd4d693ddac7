#!/usr/bin/env python
"""Read API benchmark: /api/2.0/engage and /api/profiles/export on a million profiles, against the same
questions asked of Postgres directly.

    python bench/query.py [--profiles 1000000] [--database-url URL] [--runs 5] [--export-runs 3] [--keep]

One run, one Postgres server (the one of --database-url), one fresh database `profilestore_bench_query` on it
(created, migrated, dropped at the end unless --keep):

1. --profiles profiles are written by SQL (`INSERT ... SELECT FROM generate_series`, in chunks, with the
   profiles' GIN indexes dropped during the load and rebuilt after it from their own definitions), then
   `VACUUM (ANALYZE)`.  Properties: `$email` (gmail ~30%), `$name`, `$city` (~80%), `plan` (free, pro ~10%,
   team ~5%), `country` (DE ~5%), `age` (int 18-77), `score` (float 0-100), `tags` (a list), `signup` (an ISO
   date string), `active` (boolean), `company` (~30%), `referrer` (~5%); the `last_seen` column is set
   (`$last_seen` to the API).
2. `profilestore serve` is started as a separate process (DATABASE_URL = the bench database).
3. For each filter, --runs times after a warm-up (fewer when a query takes over 30 s in all): the first
   `/api/2.0/engage?where=...` request (it answers `total` and page 0, and pins the session), over real
   HTTP with a keep-alive connection; then the same count + first 1000 rows (ORDER BY distinct_id,
   `$last_seen` added, JSON as text) as hand-written SQL on a psycopg connection.
4. Deep page: page 500 of all profiles (no `where`) by `session_id`, against `OFFSET 500000 LIMIT 1000`.
5. Export: `GET /api/profiles/export?format=csv` of all profiles, a few columns and all columns, streamed
   to nowhere (profiles/s), the server's peak RSS during it (VmHWM, reset through /proc/PID/clear_refs before
   each export; VmRSS sampled every 20 ms as a fallback) and where the CPU went; against `COPY (SELECT ...)
   TO STDOUT (FORMAT csv)` of the same columns.
6. Prints every figure beside its target (indexed filters < 100 ms, full-scan filters < 1.5 s, export
   >= 100,000 profiles/s), a markdown table, and one JSON line with everything.

Figures are medians over the runs with the slowest run ("max") beside them.  The sessions the measured
requests create are deleted after each filter, so they do not pile up in the database.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg import sql

from harness.data import load_profiles
from harness.db import bench_url, create_database, create_project, drop_database, use_database
from harness.machine import announce_machine, machine_facts
from harness.proc import RssSampler, cpu_line, cpu_snapshot, cpu_split
from harness.report import Row, markdown, ms, verdict
from harness.server import Server, basic, free_port
from harness.stats import Timing, timed
from profilestore.db import migrate

BENCH_DB = "profilestore_bench_query"

PAGE_SIZE = 1000
DEEP_PAGE = 500
INDEXED_TARGET_S = 0.100
SCAN_TARGET_S = 1.5
EXPORT_TARGET = 100_000  # profiles/s
EXPORT_COLUMNS = ["$email", "plan", "country", "age", "score", "signup"]
ISO = "'YYYY-MM-DD\"T\"HH24:MI:SS'"
LAST_SEEN = f"to_char(p.last_seen AT TIME ZONE 'UTC', {ISO})"
API_PROPERTIES = (
    "CASE WHEN p.last_seen IS NULL THEN p.properties"
    f" ELSE p.properties || jsonb_build_object('$last_seen', {LAST_SEEN}) END"
)


@dataclass(frozen=True)
class Filter:
    key: str
    label: str
    where: str | None  # the service's expression; None: every profile
    raw: str  # the hand-written condition on `p`
    kind: str  # "indexed" or "scan": which target applies


FILTERS = [
    Filter(
        "plan_pro",
        'indexed equality: properties["plan"] == "pro"',
        'properties["plan"] == "pro"',
        """p.properties @> '{"plan": "pro"}'""",
        "indexed",
    ),
    Filter(
        "referrer_defined",
        'existence: defined(properties["referrer"])',
        'defined(properties["referrer"])',
        "p.properties ? 'referrer'",
        "indexed",
    ),
    Filter(
        "age_range",
        'number range: properties["age"] >= 30 and < 40',
        'properties["age"] >= 30 and properties["age"] < 40',
        # jsonb orders every number above every string and below every boolean: numbers only.
        "p.properties -> 'age' >= '30' AND p.properties -> 'age' < '40'",
        "scan",
    ),
    Filter(
        "email_gmail",
        'substring: "gmail" in properties["$email"]',
        '"gmail" in properties["$email"]',
        "jsonb_typeof(p.properties -> '$email') = 'string'"
        " AND strpos(p.properties ->> '$email', 'gmail') > 0",
        "scan",
    ),
    Filter(
        "combination",
        "combination: plan == pro and country == DE and score > 50",
        'properties["plan"] == "pro" and properties["country"] == "DE" and properties["score"] > 50',
        """p.properties @> '{"plan": "pro", "country": "DE"}' AND p.properties -> 'score' > '50'""",
        "indexed",
    ),
    Filter("all", "every profile (no where)", None, "true", "scan"),
]


# --- database ---------------------------------------------------------------------------------------------


def clear_sessions(url: str) -> None:
    """The measured requests' pagination sessions (the service's internal tables), between filters."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE query_sessions, query_session_pages")


# --- the service over HTTP --------------------------------------------------------------------------------


def engage_first_page(http: httpx.Client, where: str | None) -> dict[str, Any]:
    params = {"where": where} if where is not None else {}
    response = http.get("/api/2.0/engage", params=params)
    if response.status_code != 200:
        raise RuntimeError(f"/api/2.0/engage where={where!r}: {response.status_code} {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def first_page_then_ready(
    http: httpx.Client, where: str | None, first: list[float], ready: list[float]
) -> dict[str, Any]:
    """The first request, timed into `first`; then page 1, which waits until the session's pages are stored
    (the server builds them just after answering page 0): the time until then goes to `ready`, and the next
    measurement starts on a quiet server."""
    start = time.perf_counter()
    body = engage_first_page(http, where)
    first.append(time.perf_counter() - start)
    if body["total"] > body["page_size"]:
        engage_page(http, body["session_id"], 1)
    ready.append(time.perf_counter() - start)
    return body


def engage_page(http: httpx.Client, session_id: str, page: int) -> dict[str, Any]:
    response = http.get("/api/2.0/engage", params={"session_id": session_id, "page": page})
    if response.status_code != 200:
        raise RuntimeError(f"/api/2.0/engage page={page}: {response.status_code} {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def export_once(http: httpx.Client, columns: list[str] | None) -> tuple[int, int]:
    """(profiles, bytes) of one streamed CSV export."""
    params: dict[str, str] = {"format": "csv"}
    if columns is not None:
        params["columns"] = ",".join(columns)
    lines = size = 0
    # identity: httpx asks for gzip by default, and the service then compresses the stream (as curl without
    # --compressed, or the CLI's -o, would not ask it to).
    headers = {"Accept-Encoding": "identity"}
    with http.stream("GET", "/api/profiles/export", params=params, headers=headers) as response:
        if response.headers.get("content-encoding", "identity") != "identity":
            raise RuntimeError(f"export answered {response.headers['content-encoding']} to identity")
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"/api/profiles/export: {response.status_code} {response.text[:500]}")
        for chunk in response.iter_raw(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines - 1, size  # the header


# --- raw Postgres -----------------------------------------------------------------------------------------


def raw_first_page(conn: psycopg.Connection[Any], project_id: int, condition: str) -> tuple[int, list[Any]]:
    where = f"p.project_id = %(project_id)s AND ({condition})"
    row = conn.execute(
        f"SELECT count(*) FROM profiles AS p WHERE {where}", {"project_id": project_id}
    ).fetchone()
    assert row is not None
    rows = conn.execute(
        f"SELECT p.distinct_id, ({API_PROPERTIES})::text FROM profiles AS p WHERE {where}"
        " ORDER BY p.distinct_id LIMIT %(limit)s",
        {"project_id": project_id, "limit": PAGE_SIZE},
    ).fetchall()
    return int(row[0]), rows


def raw_count(conn: psycopg.Connection[Any], project_id: int, condition: str) -> int:
    """The count alone: the floor of `total` (a bitmap heap scan visits every matching row)."""
    row = conn.execute(
        f"SELECT count(*) FROM profiles AS p WHERE p.project_id = %(project_id)s AND ({condition})",
        {"project_id": project_id},
    ).fetchone()
    assert row is not None
    return int(row[0])


def raw_deep_page(conn: psycopg.Connection[Any], project_id: int) -> list[Any]:
    return conn.execute(
        f"SELECT p.distinct_id, ({API_PROPERTIES})::text FROM profiles AS p"
        " WHERE p.project_id = %(project_id)s ORDER BY p.distinct_id OFFSET %(offset)s LIMIT %(limit)s",
        {"project_id": project_id, "offset": DEEP_PAGE * PAGE_SIZE, "limit": PAGE_SIZE},
    ).fetchall()


def raw_columns(conn: psycopg.Connection[Any], project_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT k FROM profiles AS p, jsonb_object_keys(p.properties) AS k"
        " WHERE p.project_id = %s ORDER BY k",
        (project_id,),
    ).fetchall()
    return [r[0] for r in rows]


def raw_export(conn: psycopg.Connection[Any], project_id: int, columns: list[str] | None) -> tuple[int, int]:
    """COPY ... TO STDOUT (FORMAT csv) of the same columns (all: the property names found first, as the
    service does); `->>` gives strings as text and lists as JSON text, as the service's CSV cells."""
    if columns is None:
        columns = raw_columns(conn, project_id)
    cells: list[sql.Composable] = [sql.SQL("p.distinct_id")]
    for name in columns:
        if name == "$last_seen":
            cells.append(sql.SQL(LAST_SEEN))
        else:
            cells.append(sql.SQL("p.properties ->> {}").format(sql.Literal(name)))
    statement = sql.SQL(
        "COPY (SELECT {} FROM profiles AS p WHERE p.project_id = {} ORDER BY p.distinct_id)"
        " TO STDOUT (FORMAT csv, HEADER)"
    ).format(sql.SQL(", ").join(cells), sql.Literal(project_id))
    lines = size = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for data in copy:
            lines += bytes(data).count(b"\n")
            size += len(data)
    return lines - 1, size


# --- phases -----------------------------------------------------------------------------------------------


def filter_phase(
    args: argparse.Namespace, http: httpx.Client, conn: psycopg.Connection[Any], url: str, project_id: int
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    for f in FILTERS:
        first: list[float] = []
        ready: list[float] = []
        step = functools.partial(first_page_then_ready, http, f.where, first, ready)
        _, body = timed(args.runs, args.warmup, step)
        skip = args.warmup if len(first) > args.warmup else 0
        service = Timing(samples=first[skip:])
        session_ready = Timing(samples=ready[skip:])
        clear_sessions(url)
        raw, (count, raw_rows) = timed(
            args.runs, args.warmup, functools.partial(raw_first_page, conn, project_id, f.raw)
        )
        count_only, _ = timed(args.runs, args.warmup, functools.partial(raw_count, conn, project_id, f.raw))
        page_ids = [r["$distinct_id"] for r in body["results"]]
        same = body["total"] == count and page_ids == [r[0] for r in raw_rows]
        target = INDEXED_TARGET_S if f.kind == "indexed" else SCAN_TARGET_S
        ok = service.median < target
        ratio = service.median / raw.median
        note = (
            f"{body['total']:,} matches, raw count alone {ms(count_only.median)},"
            f" every page ready after {ms(session_ready.median)}"
        ) + ("" if same else f" MISMATCH: raw count {count:,} / page 0 differs")
        print(
            f"{f.label:<62} service {ms(service.median):>11} (max {ms(service.max)})"
            f"  raw {ms(raw.median):>11}  x{ratio:5.2f}  target < {ms(target)} {verdict(ok)}  {note}",
            flush=True,
        )
        rows.append(
            Row(
                f"count + first page: {f.label}",
                ms(service.median),
                ms(service.max),
                ms(raw.median),
                ratio,
                f"< {target * 1000:,.0f} ms",
                ok,
                note,
            )
        )
        figures[f.key] = {
            "where": f.where,
            "raw_condition": f.raw,
            "kind": f.kind,
            "total": body["total"],
            "raw_count": count,
            "page0_rows": len(page_ids),
            "same_as_raw": same,
            "service": service.figures(),
            "session_ready": session_ready.figures(),
            "raw": raw.figures(),
            "raw_count_only": count_only.figures(),
            "service_over_raw": round(ratio, 3),
            "target_ms": target * 1000,
            "ok": ok,
        }
    return rows, figures


def deep_page_phase(
    args: argparse.Namespace, http: httpx.Client, conn: psycopg.Connection[Any], url: str, project_id: int
) -> tuple[list[Row], dict[str, Any]]:
    first = engage_first_page(http, None)
    if first["total"] < (DEEP_PAGE + 1) * PAGE_SIZE:
        print(f"deep page: skipped ({first['total']:,} profiles < {(DEEP_PAGE + 1) * PAGE_SIZE:,})")
        clear_sessions(url)
        return [], {"skipped": True}
    session = first["session_id"]
    service, body = timed(args.runs, args.warmup, lambda: engage_page(http, session, DEEP_PAGE))
    clear_sessions(url)
    raw, raw_rows = timed(args.runs, args.warmup, lambda: raw_deep_page(conn, project_id))
    ids = [r["$distinct_id"] for r in body["results"]]
    same = body["page"] == DEEP_PAGE and ids == [r[0] for r in raw_rows]
    ratio = service.median / raw.median
    ok = service.median < INDEXED_TARGET_S
    note = f"{len(ids)} rows" + ("" if same else " MISMATCH with OFFSET")
    label = f"deep page: page {DEEP_PAGE} of all by session_id (raw: OFFSET {DEEP_PAGE * PAGE_SIZE:,})"
    print(
        f"{label:<62} service {ms(service.median):>11} (max {ms(service.max)})"
        f"  raw {ms(raw.median):>11}  x{ratio:5.2f}  target < {ms(INDEXED_TARGET_S)} {verdict(ok)}  {note}",
        flush=True,
    )
    row = Row(
        label, ms(service.median), ms(service.max), ms(raw.median), ratio, "< 100 ms (a key read)", ok, note
    )
    return [row], {
        "page": DEEP_PAGE,
        "rows": len(ids),
        "same_as_raw": same,
        "service": service.figures(),
        "raw": raw.figures(),
        "service_over_raw": round(ratio, 3),
        "ok": ok,
    }


def export_phase(
    args: argparse.Namespace,
    http: httpx.Client,
    conn: psycopg.Connection[Any],
    server: Server,
    project_id: int,
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    for key, columns in (("chosen_columns", EXPORT_COLUMNS), ("all_columns", None)):
        label = f"CSV export, {'columns ' + ','.join(columns) if columns else 'all columns'}"
        runs: list[dict[str, Any]] = []
        for i in range(args.warmup + args.export_runs):
            sampler = RssSampler(server.pid)
            before = cpu_snapshot(server.pid)
            start = time.perf_counter()
            count, size = export_once(http, columns)
            seconds = time.perf_counter() - start
            cpu = cpu_split(before, cpu_snapshot(server.pid))
            memory = sampler.finish()
            if i >= args.warmup:
                runs.append(
                    {"seconds": seconds, "profiles": count, "bytes": size, "memory": memory, "cpu": cpu}
                )
        raw_runs: list[tuple[float, int, int]] = []
        for i in range(args.warmup + args.export_runs):
            start = time.perf_counter()
            raw_count, raw_size = raw_export(conn, project_id, columns)
            if i >= args.warmup:
                raw_runs.append((time.perf_counter() - start, raw_count, raw_size))
        rates = [r["profiles"] / r["seconds"] for r in runs]
        raw_rates = [n / s for s, n, _ in raw_runs]
        rate, raw_rate = statistics.median(rates), statistics.median(raw_rates)
        peak = max(r["memory"]["peak_rss_mb"] for r in runs)
        ok = rate >= EXPORT_TARGET
        ratio = raw_rate / rate  # as a time ratio: service time over raw time
        complete = all(r["profiles"] == args.profiles for r in runs)
        note = (
            f"{runs[0]['bytes'] / 1e6:,.0f} MB, server peak RSS {peak:,.0f} MB"
            f" (before {runs[0]['memory']['rss_before_mb']:,.0f} MB, {runs[0]['memory']['peak_from']})"
            + ("" if complete else f" MISMATCH: {[r['profiles'] for r in runs]} profiles")
        )
        print(
            f"{label:<62} service {rate:>11,.0f}/s (slowest {min(rates):,.0f}/s)"
            f"  raw COPY {raw_rate:>11,.0f}/s  x{ratio:5.2f}"
            f"  target >= {EXPORT_TARGET:,}/s {verdict(ok)}  {note}",
            flush=True,
        )
        print(cpu_line(runs[len(runs) // 2]["cpu"]), flush=True)
        rows.append(
            Row(
                label,
                f"{rate:,.0f} profiles/s",
                f"{min(rates):,.0f} profiles/s",
                f"{raw_rate:,.0f} profiles/s",
                ratio,
                f">= {EXPORT_TARGET:,} profiles/s",
                ok,
                note,
            )
        )
        figures[key] = {
            "columns": columns,
            "profiles_per_s": round(rate),
            "slowest_profiles_per_s": round(min(rates)),
            "raw_copy_profiles_per_s": round(raw_rate),
            "service_time_over_raw": round(ratio, 3),
            "peak_rss_mb": peak,
            "runs": [
                {
                    "seconds": round(r["seconds"], 3),
                    "profiles": r["profiles"],
                    "bytes": r["bytes"],
                    "memory": r["memory"],
                    "cpu": {k: r["cpu"][k] for k in ("server", "postgres", "bench_client", "machine_busy")},
                }
                for r in runs
            ],
            "raw_runs": [{"seconds": round(s, 3), "profiles": n, "bytes": b} for s, n, b in raw_runs],
            "ok": ok,
        }
    return rows, figures


# --- main -------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", type=int, default=1_000_000, help="profiles to load")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a database on the server to use; the bench creates and drops its own beside it",
    )
    p.add_argument("--runs", type=int, default=5, help="measured runs of each query")
    p.add_argument("--export-runs", type=int, default=3, help="measured runs of each export")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs before each measurement")
    p.add_argument(
        "--workers", type=int, default=1, help="app processes of the server (PROFILESTORE_WORKERS)"
    )
    p.add_argument("--no-export", action="store_true", help="skip the export measurements")
    p.add_argument(
        "--keep",
        "--keep-database",
        dest="keep",
        action="store_true",
        help=f"do not drop {BENCH_DB} at the end",
    )
    args = p.parse_args()
    if args.profiles < 1 or args.runs < 1 or args.export_runs < 1 or args.warmup < 0:
        p.error("--profiles, --runs and --export-runs must be positive, --warmup at least 0")
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
        results["load"] = load_profiles(url, project["id"], args.profiles)
        ld = results["load"]
        print(
            f"loaded {ld['rows']:,} profiles: insert {ld['insert_s']} s, indexes {ld['indexes_s']} s,"
            f" vacuum+analyze {ld['vacuum_analyze_s']} s; table {ld['heap_bytes'] / 2**20:,.0f} MiB"
            f" ({ld['total_bytes'] / 2**20:,.0f} MiB with indexes and TOAST),"
            f" properties {ld['avg_properties_bytes']} B on average; shares {ld['shares']}",
            flush=True,
        )

        server = Server(url, free_port(), args.workers)
        server.wait_healthy()
        headers = {"Authorization": basic(project["api_secret"])}
        with (
            httpx.Client(base_url=server.base, headers=headers, timeout=600) as http,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            print(f"\n{args.runs} runs after {args.warmup} warm-up(s); service: the first /api/2.0/engage")
            filter_rows, results["filters"] = filter_phase(args, http, conn, url, project["id"])
            rows += filter_rows
            deep_rows, results["deep_page"] = deep_page_phase(args, http, conn, url, project["id"])
            rows += deep_rows
            if not args.no_export:
                print(f"\nexports: {args.export_runs} runs after {args.warmup} warm-up(s)")
                export_rows, results["export"] = export_phase(args, http, conn, server, project["id"])
                rows += export_rows
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
        f" python {machine['python']}, code {machine['code']}; {args.profiles:,} profiles"
    )
    figures = {"machine": machine, "config": vars(args), **results}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
