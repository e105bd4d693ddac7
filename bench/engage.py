#!/usr/bin/env python
"""Ingestion benchmark of /engage: the service against the same upserts sent straight to Postgres.

    python bench/engage.py [--database-url URL] [--seconds N] [--clients 8] [--batch 200] [--workers 1]
                           [--preload 1000000] [--profile]

One run, one Postgres server (the one of --database-url), one fresh database `profilestore_bench` on it
(created, migrated, dropped at the end):

1. `profilestore serve` is started as a separate process (DATABASE_URL = the bench database).
2. Saturation: --clients concurrent aiohttp clients (one keep-alive connection each) POST pre-serialised
   JSON arrays of --batch `$set` updates to /engage?verbose=0 for --seconds, after a warm-up.
3. Fixed offered load at half the measured rate, open loop: requests leave at fixed intervals from a
   schedule and latency counts from the scheduled time, so queueing shows up.
4. Raw Postgres: the same batches as ONE `INSERT ... SELECT FROM jsonb_to_recordset ... ON CONFLICT DO UPDATE`
   each, on the same number of autocommit psycopg connections (threads).
5. Ratio service/raw, and where the CPU went (server process, Postgres processes, this client) per phase.

--profile attaches py-spy (--native --gil: the samples where the server holds the GIL, C frames included,
so the garbage collector shows as itself) during the saturation phase, writes the collapsed stacks
(speedscope.app or flamegraph.pl read them) and a summary, and prints where the time goes.  py-spy pauses
the server at every sample, so a --profile run's saturation figures are lower (--profile-python-only: no
pauses, no C frames).
--preload N (default 1,000,000) first loads N profiles of another project (harness/data.py), so the phases
write into a table and indexes the size of a real one; before every measured phase the bench projects'
profiles are deleted, the table vacuumed (GIN pending lists flushed) and a CHECKPOINT taken, so all phases
start from the same table (`--preload 0`: an empty one).
Output: human-readable lines, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg

from harness.data import PLANS, load_profiles
from harness.db import (
    bench_url,
    create_database,
    create_project,
    create_projects,
    drop_database,
    use_database,
)
from harness.machine import announce_machine, machine_facts
from harness.proc import cpu_line, cpu_snapshot, cpu_split
from harness.pyspy import start_profile
from harness.server import Server, free_port
from harness.stats import PhaseResult
from profilestore.db import migrate

BENCH_DB = "profilestore_bench"
USERS = 100_000
# Distinct pre-serialised request bodies, cycled through by the clients: 2 x 100k updates at --batch 200.
N_BATCHES = 1000
# $time placeholder (13 digits, like a millisecond timestamp): replaced in the bytes at send time.
TIME_MARK = b"9999999999999"
CITIES = ["Paris", "Berlin", "Lagos", "Lima", "Osaka", "Austin", "Pune", "Oslo", "Quito", "Perth"]
TAGS = ["beta", "mobile", "web", "vip", "churn-risk", "trial", "api", "eu", "us", "apac"]
HEADERS = {"Content-Type": "application/json"}
PRELOADED: list[int] = []  # the project of the --preload profiles, once loaded

RAW_SQL = (
    "INSERT INTO profiles AS p (project_id, distinct_id, properties)"
    " SELECT %s::bigint, r.d, r.s FROM jsonb_to_recordset(%s::jsonb) AS r(d text, s jsonb)"
    " ORDER BY r.d"
    " ON CONFLICT (project_id, distinct_id) DO UPDATE"
    " SET properties = p.properties || excluded.properties, updated_at = now()"
)


# --- data -------------------------------------------------------------------------------------------------


@dataclass
class Batches:
    http: list[bytes]  # JSON arrays of /engage records, $time = TIME_MARK
    raw: list[str]  # the same updates as [{"d": distinct_id, "s": {...}}] for jsonb_to_recordset


def user_batches(rng: random.Random, batch: int, count: int) -> Iterator[list[int]]:
    """`count` batches of distinct user ids: consecutive random permutations of all USERS cut into
    batches, so each cycle through the bodies touches every user about equally often (an id that would
    repeat within a batch where two permutations meet waits for the next batch)."""
    stream: list[int] = []
    carry: list[int] = []
    for _ in range(count):
        ids: list[int] = []
        seen: set[int] = set()
        pending, carry = carry, []
        while len(ids) < batch:
            if not pending:
                if not stream:
                    stream = rng.sample(range(USERS), USERS)
                pending, stream = stream[:batch], stream[batch:]
            uid = pending.pop(0)
            if uid in seen:
                carry.append(uid)
            else:
                seen.add(uid)
                ids.append(uid)
        carry.extend(pending)
        yield ids


def make_batches(token: str, batch: int, seed: int = 1) -> Batches:
    rng = random.Random(seed)
    http: list[bytes] = []
    raw: list[str] = []
    mark = int(TIME_MARK)
    for ids in user_batches(rng, batch, N_BATCHES):
        records = []
        rows = []
        for uid in ids:
            distinct_id = f"user-{uid:06d}"
            props = {
                "plan": rng.choice(PLANS),
                "seats": rng.randint(1, 500),
                "email": f"{distinct_id}@example.com",
                "city": rng.choice(CITIES),
                "score": round(rng.random() * 100, 3),
                "tags": rng.sample(TAGS, rng.randint(1, 3)),
            }
            records.append({"$token": token, "$distinct_id": distinct_id, "$time": mark, "$set": props})
            rows.append({"d": distinct_id, "s": props})
        body = orjson.dumps(records)
        assert body.count(TIME_MARK) == batch
        http.append(body)
        raw.append(orjson.dumps(rows).decode())
    return Batches(http, raw)


def stamp(body: bytes) -> bytes:
    """The body with every update's $time = now (ms): one C-level bytes.replace."""
    return body.replace(TIME_MARK, b"%d" % (time.time() * 1000))


# --- database ---------------------------------------------------------------------------------------------


def reset_table(url: str) -> None:
    """Every measured phase starts from the same table (empty, or only the preloaded profiles, the GIN
    indexes' pending lists flushed) and a fresh checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE profile_tombstones, ingestion_warnings")
        if PRELOADED:
            conn.execute("DELETE FROM profiles WHERE project_id <> %s", (PRELOADED[0],))
            conn.execute("VACUUM profiles")
        else:
            conn.execute("TRUNCATE profiles")
        conn.execute("CHECKPOINT")


def table_state(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE properties ? 'plan'),"
            " pg_total_relation_size('profiles') FROM profiles"
        ).fetchone()
        assert row is not None
        return {"rows": row[0], "rows_with_plan": row[1], "table_bytes": row[2]}


# --- HTTP phases ------------------------------------------------------------------------------------------


async def post(session: aiohttp.ClientSession, url: str, body: bytes, errors: Counter[str]) -> bool:
    try:
        async with session.post(url, data=stamp(body), headers=HEADERS) as resp:
            answer = await resp.read()
            if resp.status == 200 and answer == b"1":
                return True
            errors[f"{resp.status} {answer[:80]!r}"] += 1
    except (aiohttp.ClientError, OSError) as exc:
        errors[type(exc).__name__] += 1
    return False


async def saturate(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], clients: int, seconds: float, batch: int
) -> PhaseResult:
    """Closed loop: every client sends its next request as soon as the previous one is answered."""
    result = PhaseResult("saturation", seconds, batch)
    counter = itertools.count()
    t_end = time.perf_counter() + seconds

    async def client() -> None:
        while (start := time.perf_counter()) < t_end:
            ok = await post(session, url, bodies[next(counter) % len(bodies)], result.errors)
            end = time.perf_counter()
            if ok and end <= t_end:  # only requests answered within the window count
                result.latencies.append(end - start)

    await asyncio.gather(*(client() for _ in range(clients)))
    return result


async def fixed_rate(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    clients: int,
    seconds: float,
    batch: int,
    rps: float,
) -> PhaseResult:
    """Open loop on `clients` connections: request i is due at t0 + i/rps; a request that finds every
    connection busy waits for one, and its latency counts from when it was due (no coordinated omission)."""
    result = PhaseResult("fixed-load", seconds, batch)
    interval = 1.0 / rps
    n = max(1, int(seconds * rps))
    counter = itertools.count()
    t0 = time.perf_counter() + 0.05
    last_end = t0
    late = 0

    async def worker() -> None:
        nonlocal last_end, late
        while (i := next(counter)) < n:
            due = t0 + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                late += 1
            ok = await post(session, url, bodies[i % len(bodies)], result.errors)
            end = time.perf_counter()
            last_end = max(last_end, end)
            if ok:
                result.latencies.append(end - due)

    await asyncio.gather(*(worker() for _ in range(clients)))
    result.seconds = max(seconds, last_end - t0)
    result.extra = {
        "offered_requests_per_s": round(rps, 2),
        "offered_updates_per_s": round(rps * batch, 1),
        "started_late": late,
    }
    return result


async def http_phases(
    args: argparse.Namespace,
    server: Server,
    url: str,
    bodies: list[bytes],
    profile: Callable[[], Callable[[], dict[str, Any]]] | None,
) -> tuple[PhaseResult, PhaseResult, dict[str, Any] | None]:
    engage = server.base + "/engage?verbose=0"
    connector = aiohttp.TCPConnector(limit=args.clients, force_close=False, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        print(f"warm-up {args.warmup:g} s ...", flush=True)
        await saturate(session, engage, bodies, args.clients, args.warmup, args.batch)
        reset_table(url)

        finish_profile = profile() if profile else None
        before = cpu_snapshot(server.pid)
        sat = await saturate(session, engage, bodies, args.clients, args.seconds, args.batch)
        sat.cpu = cpu_split(before, cpu_snapshot(server.pid))
        sat.extra["table"] = table_state(url)
        profile_summary = finish_profile() if finish_profile else None
        print(sat.line())
        print(cpu_line(sat.cpu), flush=True)

        reset_table(url)
        rps = sat.requests / sat.seconds / 2
        if rps <= 0:
            raise RuntimeError(f"no request succeeded during saturation: {dict(sat.errors)}")
        before = cpu_snapshot(server.pid)
        fixed = await fixed_rate(session, engage, bodies, args.clients, args.seconds, args.batch, rps)
        fixed.cpu = cpu_split(before, cpu_snapshot(server.pid))
        fixed.extra["table"] = table_state(url)
        print(fixed.line() + f"  (offered {rps * args.batch:.0f} updates/s)")
        print(cpu_line(fixed.cpu), flush=True)
    return sat, fixed, profile_summary


# --- raw Postgres -----------------------------------------------------------------------------------------


def raw_run(
    conns: list[psycopg.Connection[Any]], project_id: int, bodies: list[str], seconds: float, batch: int
) -> PhaseResult:
    result = PhaseResult("raw-pg", seconds, batch)
    counter = itertools.count()
    t_end = time.perf_counter() + seconds
    lock = threading.Lock()

    def worker(conn: psycopg.Connection[Any]) -> None:
        mine: list[float] = []
        while (start := time.perf_counter()) < t_end:
            with lock:
                i = next(counter)
            try:
                conn.execute(RAW_SQL, (project_id, bodies[i % len(bodies)]))
            except psycopg.Error as exc:
                result.errors[type(exc).__name__] += 1
                continue
            end = time.perf_counter()
            if end <= t_end:
                mine.append(end - start)
        with lock:
            result.latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(conn,)) for conn in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def raw_phase(args: argparse.Namespace, url: str, project_id: int, bodies: list[str]) -> PhaseResult:
    conns = [psycopg.connect(url, autocommit=True) for _ in range(args.clients)]
    try:
        raw_run(conns, project_id, bodies, args.warmup, args.batch)  # warm-up (and prepared statements)
        reset_table(url)
        before = cpu_snapshot(None)
        result = raw_run(conns, project_id, bodies, args.seconds, args.batch)
        result.cpu = cpu_split(before, cpu_snapshot(None))
        result.extra["table"] = table_state(url)
    finally:
        for conn in conns:
            conn.close()
    print(result.line())
    print(cpu_line(result.cpu), flush=True)
    return result


# --- py-spy categories of the /engage path ----------------------------------------------------------------

# Where a sample's time goes: walking its stack from the leaf up, the first of these frames decides
# (function name, "" = any, "x*" = prefix; a substring of its file) -> category.  Mutually exclusive, so the
# shares add up to 100 %.  Native frames (--native) put the garbage collector's time where it belongs
# instead of on whichever Python line happened to allocate.
CATEGORIES: list[tuple[str, str, str]] = [
    ("gc_collect*", "libpython", "cyclic garbage collector (gc_collect_main)"),
    ("read_wire_request", "ingest/wire.py", "decode body (wire.read_wire_request: orjson.loads)"),
    ("validate", "ingest/pipeline.py", "validate records (pipeline.validate)"),
    ("resolve", "profilestore/projects.py", "token lookup (TokenCache.resolve)"),
    ("build_batch", "ingest/profiles/sql.py", "group updates (sql.build_batch)"),
    ("_params", "ingest/profiles/sql.py", "serialise batch (sql._params: orjson.dumps)"),
    ("apply_batch", "ingest/profiles/sql.py", "send the statement (sql.apply_batch: psycopg)"),
    ("ingest_response", "ingest/responses.py", "render response"),
    ("engage", "ingest/profiles/routes.py", "engage(), rest"),
    ("WorkerThread.run", "anyio/_backends/_asyncio.py", "threadpool hops (FastAPI's sync dependencies)"),
    ("run_sync", "anyio/to_thread.py", "threadpool hops (FastAPI's sync dependencies)"),
    ("run_asgi", "uvicorn/protocols/http/httptools_impl.py", "framework (uvicorn/starlette/fastapi, rest)"),
    ("connection", "psycopg_pool/pool_async.py", "connection pool (psycopg_pool)"),
    ("", "httptools/parser", "HTTP parsing (httptools)"),
    ("", "loop.c", "event loop and socket calls (uvloop)"),
    ("", "uvloop/", "event loop and socket calls (uvloop)"),
]
# Functions of the request path whose inclusive share is worth a line each.
KEY_FRAMES = [(n, f) for n, f, _ in CATEGORIES[:9]] + [
    ("_parse_json", "ingest/wire.py"),
    ("normalise", "ingest/profiles/records.py"),
    ("_check_container", "ingest/profiles/records.py"),
    ("validate_python", "pydantic/type_adapter.py"),
    ("ingest", "ingest/pipeline.py"),
    ("solve_dependencies", "fastapi/dependencies/utils.py"),
]


# --- main -------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database on the server to use; the bench creates and drops its own beside it",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="length of each measured phase")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up before the saturation and raw phases")
    p.add_argument("--clients", type=int, default=8, help="concurrent connections (HTTP and Postgres)")
    p.add_argument("--batch", type=int, default=200, help="updates per request")
    p.add_argument(
        "--preload",
        type=int,
        default=1_000_000,
        help="profiles of another project in the table (and its indexes) before every phase; 0: empty",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("PROFILESTORE_WORKERS", "1")),
        help="app processes of the server (PROFILESTORE_WORKERS)",
    )
    p.add_argument("--profile", action="store_true", help="run py-spy on the server during saturation")
    p.add_argument(
        "--profile-out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "profilestore-engage.collapsed",
        help="py-spy collapsed stacks (speedscope.app / flamegraph.pl read them); a .summary.txt beside",
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument(
        "--profile-python-only",
        action="store_true",
        help="py-spy without --native: no pauses of the server, but GC time lands on the allocating lines",
    )
    p.add_argument("--keep-database", action="store_true", help="do not drop profilestore_bench at the end")
    args = p.parse_args()
    if not 1 <= args.batch <= USERS:
        p.error("--batch must be between 1 and 100000")
    return args


def main() -> None:
    args = parse_args()
    use_database(BENCH_DB)
    try:
        import uvloop

        uvloop.install()  # the client's own loop: cheaper, it shares the cores with the server
    except ImportError:
        pass
    url = bench_url(args.database_url)
    machine = machine_facts()
    create_database(args.database_url)
    server: Server | None = None
    try:
        announce_machine(machine, url)
        migrate.upgrade(url)
        service_project, raw_project = create_projects(url)
        if args.preload:
            other = create_project(url)
            print(f"preloading {args.preload:,} profiles of another project ...", flush=True)
            load_profiles(url, other["id"], args.preload)
            PRELOADED.append(other["id"])
        batches = make_batches(service_project["token"], args.batch)
        print(
            f"{N_BATCHES} bodies of {args.batch} $set updates (~{len(batches.http[0]) // 1024} KiB each),"
            f" {USERS} users, {args.clients} clients, {args.seconds:g} s per phase, workers={args.workers}",
            flush=True,
        )

        server = Server(url, free_port(), args.workers)
        server.wait_healthy()
        profile = None
        if args.profile:
            profile = functools.partial(
                start_profile,
                server.pid,
                args.seconds,
                args.workers,
                args.profile_out,
                args.profile_rate,
                not args.profile_python_only,
                CATEGORIES,
                KEY_FRAMES,
            )

        sat, fixed, profile_summary = asyncio.run(http_phases(args, server, url, batches.http, profile))
        server.stop()
        server = None

        raw = raw_phase(args, url, raw_project["id"], batches.raw)
    finally:
        if server is not None:
            server.stop()
        if not args.keep_database:
            drop_database(args.database_url)

    ratio = sat.requests / sat.seconds / (raw.requests / raw.seconds) if raw.requests else float("nan")
    print(
        f"service/raw: {ratio:.3f} (updates/s {sat.figures()['updates_per_s']:.0f}"
        f" vs {raw.figures()['updates_per_s']:.0f})"
    )
    s, r = sat.cpu, raw.cpu
    sat_ups = sat.figures()["updates_per_s"] or 1
    raw_ups = raw.figures()["updates_per_s"] or 1
    cost = {
        "service_server_us": round(s["server"] / sat_ups * 1e6, 1),
        "service_postgres_us": round(s["postgres"] / sat_ups * 1e6, 1),
        "raw_postgres_us": round(r["postgres"] / raw_ups * 1e6, 1),
        "raw_client_us": round(r["bench_client"] / raw_ups * 1e6, 1),
    }
    print(
        f"cpu per update (µs of one core): service = server {cost['service_server_us']}"
        f" + postgres {cost['service_postgres_us']}; raw = postgres {cost['raw_postgres_us']}"
        f" (+ client {cost['raw_client_us']})"
    )
    if profile_summary is not None:
        files = f"{profile_summary.get('file')} ({profile_summary.get('summary_file')})"
        print(f"py-spy during saturation -> {files}")
        for line in profile_summary.get("text", []):
            print(line)
        print("  (saturation figures above were taken with py-spy attached)")
    figures = {
        "machine": machine,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "saturation": sat.figures(),
        "fixed_load": fixed.figures(),
        "raw_postgres": raw.figures(),
        "service_over_raw": round(ratio, 4),
        "cpu_per_update_us": cost,
        "profile": {k: v for k, v in profile_summary.items() if k != "text"} if profile_summary else None,
    }
    print(
        f"machine: nproc={machine['nproc']}, postgres {machine['postgres'].split(' ', 1)[0]},"
        f" python {machine['python']}, code {machine['code']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
