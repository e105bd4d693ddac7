#!/usr/bin/env python
"""Ingestion benchmark of /track and /import: the service against the same events sent straight to Postgres.

    python bench/track.py [--database-url URL] [--seconds N] [--clients 8] [--workers 1] [--profile]

One run, one Postgres server (the one of --database-url), one fresh database `profilestore_bench_track` on
it (created, migrated, dropped at the end).  100,000 events over 100,000 users are generated once and
pre-serialised four ways: /track bodies of 50 events, /import bodies of 2,000, and the same two batchings
as jsonb_to_recordset rows for the raw phases.  Every event's `time` (epoch seconds with a fraction) and
`$insert_id` are stamped at send time by `replace` of placeholders, so every event sent is new (no
conflicts) and `now`.

1. `profilestore serve` is started as a separate process (DATABASE_URL = the bench database).
2. /track: --clients aiohttp clients (one keep-alive connection each), closed loop, JSON arrays of 50
   events, `?verbose=1` (as the SDKs ask), for --seconds after a warm-up: events/s, p50/p99.
3. /import: the same with 2,000 events per body, HTTP Basic with the project's API secret, strict mode.
4. Raw Postgres, on --clients autocommit psycopg connections (threads), batches of 50 and of 2,000:
   `INSERT INTO events ... SELECT FROM jsonb_to_recordset(...) ON CONFLICT (the dedupe key) DO UPDATE`,
   one per batch (the baseline of the ratios); then the service's own statement (events_sql.INSERT:
   the same insert, sorted, plus the users_seen upsert), which splits the gap into "more SQL" and
   "Python + HTTP".
5. Ratios service/raw, table size per million events (events partitions + their indexes), users_seen size,
   CPU per event of the server and of Postgres, per phase (the harness's /proc accounting).

The events, users_seen and rollup tables are truncated (and a CHECKPOINT taken) before every measured
phase.
--profile attaches py-spy (the harness's machinery) to the server during both HTTP phases; the
profiled phases' figures are then lower (py-spy pauses the server at every sample).
Output: human-readable lines, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import itertools
import json
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg

from harness.data import PLANS
from harness.db import bench_url, create_database, create_projects, drop_database, use_database
from harness.machine import announce_machine, machine_facts
from harness.proc import cpu_line, cpu_snapshot, cpu_split
from harness.pyspy import start_profile
from harness.server import Server, free_port
from harness.stats import PhaseResult
from profilestore.db import migrate
from profilestore.ingest.events.sql import INSERT as SERVICE_SQL

BENCH_DB = "profilestore_bench_track"
USERS = 100_000
EVENTS = 100_000  # distinct pre-generated events, cycled through by the clients
TRACK_BATCH = 50  # what the SDKs send per /track request
IMPORT_BATCH = 2000  # the /import maximum (settings.max_records)
NAMES = ["page_view", "click", "search", "signup", "login", "add_to_cart", "purchase", "share"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Mobile Safari", "Chrome iOS"]
OSES = ["Windows", "Mac OS X", "Linux", "iOS", "Android"]
PAGES = ["/", "/pricing", "/docs", "/docs/api", "/blog", "/signup", "/app", "/app/settings", "/checkout"]
ITEMS = ["sku-101", "sku-202", "sku-303", "sku-404", "sku-505", "sku-606"]

# Placeholders stamped at send time (one `replace` each over the whole body):
SECONDS_MARK = "4444444444"  # the integer part of `time` (epoch seconds; the fraction is per event)
ISO_MARK = "2000-01-01T00:00:00"  # the same second as ISO 8601, for the raw rows' timestamptz column
SEQ_MARK = "zzzzzzzzzz"  # $insert_id = SEQ_MARK-<event number>: a run-wide send counter, 10 hex digits
SEQ = itertools.count()  # shared by every phase, HTTP and raw: no $insert_id is ever sent twice

# The brief's baseline: the events insert alone, one statement per batch (dedupe key = uq_events_dedupe).
RAW_SQL = (
    "INSERT INTO events AS e (project_id, event, distinct_id, time, insert_id, properties, received_at)"
    " SELECT r.p, r.e, r.d, r.t, r.i, r.props, now()"
    " FROM jsonb_to_recordset(%s::jsonb) AS r(p bigint, e text, d text, t timestamptz, i text, props jsonb)"
    " ON CONFLICT (project_id, event, distinct_id, time, insert_id)"
    " DO UPDATE SET properties = excluded.properties, received_at = excluded.received_at"
)


# --- data -------------------------------------------------------------------------------------------------


@dataclass
class Bodies:
    track: list[bytes]  # JSON arrays of TRACK_BATCH /track records (token in properties)
    import_: list[bytes]  # JSON arrays of IMPORT_BATCH /import records
    raw_track: list[str]  # the same events as RAW_SQL rows, TRACK_BATCH per batch
    raw_import: list[str]
    seen_track: list[str]  # users_seen rows of each batch, for the service's statement
    seen_import: list[str]


def make_bodies(token: str, raw_project: int, seed: int = 1) -> Bodies:
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for n in range(EVENTS):
        distinct_id = f"user-{rng.randrange(USERS):06d}"
        frac = rng.randrange(1000)
        props = {
            "token": token,
            "distinct_id": distinct_id,
            "time": float(f"{SECONDS_MARK}.{frac:03d}"),
            "$insert_id": f"{SEQ_MARK}-{n:06d}",
            "$browser": rng.choice(BROWSERS),
            "$os": rng.choice(OSES),
            "$current_url": "https://example.com" + rng.choice(PAGES),
            "plan": rng.choice(PLANS),
            "price": round(rng.uniform(1, 500), 2),
            "items": rng.sample(ITEMS, rng.randint(1, 3)),
        }
        event = rng.choice(NAMES)
        records.append({"event": event, "properties": props})
        stored = {k: v for k, v in props.items() if k != "token"}  # what the service stores
        iso = f"{ISO_MARK}.{frac:03d}000+00:00"
        rows.append(
            {
                "p": raw_project,
                "e": event,
                "d": distinct_id,
                "t": iso,
                "i": props["$insert_id"],
                "props": stored,
            }
        )

    def http(size: int) -> list[bytes]:
        out = [orjson.dumps(records[i : i + size]) for i in range(0, EVENTS, size)]
        assert all(body.count(SECONDS_MARK.encode()) == size for body in out)
        assert all(body.count(SEQ_MARK.encode()) == size for body in out)
        return out

    def raw(size: int) -> list[str]:
        out = [orjson.dumps(rows[i : i + size]).decode() for i in range(0, EVENTS, size)]
        assert all(text.count(ISO_MARK) == size and text.count(SEQ_MARK) == 2 * size for text in out)
        return out

    def seen(size: int) -> list[str]:
        """users_seen rows of each batch as events_sql.build_event_batch makes them (first/last time);
        all events of a batch share their second, so the fraction orders them."""
        out = []
        for i in range(0, EVENTS, size):
            spans: dict[str, list[str]] = {}
            for row in rows[i : i + size]:
                span = spans.setdefault(row["d"], [row["t"], row["t"]])
                span[0], span[1] = min(span[0], row["t"]), max(span[1], row["t"])
            out.append(
                orjson.dumps(
                    [{"p": raw_project, "d": d, "f": f, "l": last} for d, (f, last) in sorted(spans.items())]
                ).decode()
            )
        return out

    return Bodies(
        http(TRACK_BATCH),
        http(IMPORT_BATCH),
        raw(TRACK_BATCH),
        raw(IMPORT_BATCH),
        seen(TRACK_BATCH),
        seen(IMPORT_BATCH),
    )


def stamp_http(body: bytes) -> bytes:
    """Every event's time = now (this second + its own fraction), every $insert_id new."""
    return body.replace(SECONDS_MARK.encode(), b"%d" % time.time()).replace(
        SEQ_MARK.encode(), b"%010x" % next(SEQ)
    )


def stamp_raw(*texts: str) -> list[str]:
    """The same for the raw rows (and their users_seen rows): one second and one counter for all `texts`."""
    now = int(time.time())
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    seq = f"{next(SEQ):010x}"
    return [t.replace(SECONDS_MARK, str(now)).replace(ISO_MARK, iso).replace(SEQ_MARK, seq) for t in texts]


# --- results and table state ------------------------------------------------------------------------------


class EventPhase(PhaseResult):
    """PhaseResult counting events instead of profile updates."""

    def figures(self) -> dict[str, Any]:
        return {k.replace("updates", "events"): v for k, v in super().figures().items()}

    def line(self) -> str:
        f = self.figures()
        errors = f" errors={f['errors']}" if f["errors"] else ""
        return (
            f"{self.name:<14} {f['events_per_s']:>9.0f} events/s {f['requests_per_s']:>7.1f} req/s"
            f"  p50 {f['p50_ms']:7.1f} ms  p99 {f['p99_ms']:7.1f} ms  ({f['requests']} requests of"
            f" {self.batch} in {f['seconds']:.1f} s){errors}"
        )


def reset_tables(url: str) -> None:
    """Every measured phase starts from empty tables and a fresh checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE events, users_seen, ingestion_warnings, event_days_pending, event_days, event_users,"
            " event_names"
        )
        conn.execute("CHECKPOINT")


def table_state(url: str) -> dict[str, Any]:
    """Rows and on-disk size of the events partitions (heap + TOAST + indexes) and of users_seen."""
    with psycopg.connect(url, autocommit=True) as conn:
        sizes = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint,"
            " coalesce(sum(pg_indexes_size(relid)), 0)::bigint,"
            " count(*) FILTER (WHERE pg_relation_size(relid) > 0)"
            " FROM pg_partition_tree('events') WHERE isleaf"
        ).fetchone()
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM events_default),"
            " (SELECT count(*) FROM users_seen), pg_total_relation_size('users_seen'),"
            " (SELECT count(*) FROM event_days_pending), (SELECT count(*) FROM event_days)"
        ).fetchone()
    assert sizes is not None and rows is not None
    total, indexes, used_partitions = sizes
    events, default_rows, seen_rows, seen_bytes, pending_rows, rollup_rows = rows
    return {
        "events": events,
        "events_default_partition": default_rows,
        "partitions_used": used_partitions,
        "events_bytes": total,
        "events_index_bytes": indexes,
        "bytes_per_million_events": round(total / events * 1e6) if events else None,
        "users_seen_rows": seen_rows,
        "users_seen_bytes": seen_bytes,
        "rollup_pending_rows": pending_rows,  # not yet compacted into event_days when the phase ended
        "rollup_rows": rollup_rows,
    }


def storage_line(state: dict[str, Any]) -> str:
    mb = 1024 * 1024
    per_m = state["bytes_per_million_events"]
    return (
        f"  table: {state['events']} events, {state['events_bytes'] / mb:.1f} MiB"
        f" (indexes {state['events_index_bytes'] / mb:.1f})"
        f" = {per_m / mb if per_m else float('nan'):.0f} MiB per million events"
        f" | users_seen {state['users_seen_rows']} rows, {state['users_seen_bytes'] / mb:.1f} MiB"
        f" | event_days {state['rollup_rows']} rows, {state['rollup_pending_rows']} changes pending"
        + (
            f" | {state['events_default_partition']} in events_default!"
            if state["events_default_partition"]
            else ""
        )
    )


class WaitSampler:
    """What the bench database's client backends are doing, from pg_stat_activity every `interval` s (a
    thread with its own connection): the average number of backends running (no wait event: on CPU or
    queued for it) and waiting, by wait event (Lock:transactionid = a row locked by another transaction,
    e.g. a users_seen row; IO:WALSync / LWLock:WALWrite = commits flushing the WAL)."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self.url = url
        self.interval = interval
        self.samples = 0
        self.states: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE datname = current_database() AND backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                for state, kind, event in rows:
                    if state != "active":
                        self.states[state or "?"] += 1
                    else:
                        self.states["running" if kind is None else f"{kind}:{event}"] += 1

    def figures(self) -> dict[str, float]:
        """Average backends in each state, most first ('idle' last)."""
        n = max(1, self.samples)
        out = {k: round(v / n, 2) for k, v in self.states.most_common() if k != "idle"}
        out["idle"] = round(self.states["idle"] / n, 2)
        return out


def waits_line(waits: dict[str, float]) -> str:
    busy = {k: v for k, v in waits.items() if not k.startswith("idle") and v >= 0.01}
    shown = ", ".join(f"{k} {v:.2f}" for k, v in busy.items()) or "-"
    return f"  postgres backends (average count): {shown} | idle {waits.get('idle', 0):.2f}"


# --- HTTP phases ------------------------------------------------------------------------------------------


async def closed_loop(
    name: str,
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    headers: dict[str, str],
    expected: bytes,
    clients: int,
    seconds: float,
    batch: int,
) -> EventPhase:
    """Every client sends its next request as soon as the previous one is answered; a request counts
    when it was answered within the window with exactly `expected`."""
    result = EventPhase(name, seconds, batch)
    counter = itertools.count()
    t_end = time.perf_counter() + seconds

    async def client() -> None:
        while (start := time.perf_counter()) < t_end:
            body = stamp_http(bodies[next(counter) % len(bodies)])
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    answer = await resp.read()
            except (aiohttp.ClientError, OSError) as exc:
                result.errors[type(exc).__name__] += 1
                continue
            end = time.perf_counter()
            if resp.status != 200 or answer != expected:
                result.errors[f"{resp.status} {answer[:120]!r}"] += 1
            elif end <= t_end:
                result.latencies.append(end - start)

    await asyncio.gather(*(client() for _ in range(clients)))
    return result


async def http_phases(
    args: argparse.Namespace,
    server: Server,
    url: str,
    bodies: Bodies,
    secret: str,
    profile: Callable[[str], Callable[[], dict[str, Any]]] | None,
) -> tuple[list[EventPhase], dict[str, Any]]:
    basic = base64.b64encode(f"{secret}:".encode()).decode()
    plans = [
        # name, url, bodies, headers, expected answer, batch
        ("track", "/track?verbose=1", bodies.track, {}, b'{"status":1,"error":null}', TRACK_BATCH),
        (
            "import",
            "/import",  # strict mode (the default without `verbose`)
            bodies.import_,
            {"Authorization": f"Basic {basic}"},
            b'{"code":200,"status":"OK","num_records_imported":%d}' % IMPORT_BATCH,
            IMPORT_BATCH,
        ),
    ]
    connector = aiohttp.TCPConnector(limit=args.clients, force_close=False, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=120)
    results: list[EventPhase] = []
    profiles: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for name, path, phase_bodies, extra, expected, batch in plans:
            headers = {"Content-Type": "application/json", **extra}
            run = functools.partial(
                closed_loop, name, session, server.base + path, phase_bodies, headers, expected, args.clients
            )
            print(f"{name}: warm-up {args.warmup:g} s ...", flush=True)
            warm = await run(args.warmup, batch)
            if not warm.requests:
                raise RuntimeError(f"no /{name} request succeeded during the warm-up: {dict(warm.errors)}")
            reset_tables(url)
            finish_profile = profile(name) if profile else None
            before = cpu_snapshot(server.pid)
            with WaitSampler(url) as waits:
                result = await run(args.seconds, batch)
            result.cpu = cpu_split(before, cpu_snapshot(server.pid))
            result.extra["postgres_backends"] = waits.figures()
            result.extra["table"] = table_state(url)
            if finish_profile:
                profiles[name] = finish_profile()
            print(result.line())
            print(cpu_line(result.cpu))
            print(waits_line(result.extra["postgres_backends"]))
            print(storage_line(result.extra["table"]), flush=True)
            results.append(result)
    return results, profiles


# --- raw Postgres -----------------------------------------------------------------------------------------


def raw_run(
    conns: list[psycopg.Connection[Any]],
    name: str,
    execute: Callable[[psycopg.Connection[Any], int], None],
    seconds: float,
    batch: int,
) -> EventPhase:
    """Closed loop on every connection (a thread each): execute(conn, i) sends batch i."""
    result = EventPhase(name, seconds, batch)
    counter = itertools.count()
    t_end = time.perf_counter() + seconds
    lock = threading.Lock()

    def worker(conn: psycopg.Connection[Any]) -> None:
        mine: list[float] = []
        while (start := time.perf_counter()) < t_end:
            with lock:
                i = next(counter)
            try:
                execute(conn, i)
            except psycopg.Error as exc:
                result.errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
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


def raw_phases(args: argparse.Namespace, url: str, bodies: Bodies) -> list[EventPhase]:
    def brief(rows: list[str]) -> Callable[[psycopg.Connection[Any], int], None]:
        def execute(conn: psycopg.Connection[Any], i: int) -> None:
            (events,) = stamp_raw(rows[i % len(rows)])
            conn.execute(RAW_SQL, (events,))

        return execute

    def service(rows: list[str], seen: list[str]) -> Callable[[psycopg.Connection[Any], int], None]:
        def execute(conn: psycopg.Connection[Any], i: int) -> None:
            events, users = stamp_raw(rows[i % len(rows)], seen[i % len(seen)])
            conn.execute(SERVICE_SQL, {"events": events, "seen": users})

        return execute

    plans = [
        ("raw-50", brief(bodies.raw_track), TRACK_BATCH),
        ("raw-2000", brief(bodies.raw_import), IMPORT_BATCH),
    ]
    if not args.no_statement_baseline:
        plans += [
            ("raw-stmt-50", service(bodies.raw_track, bodies.seen_track), TRACK_BATCH),
            ("raw-stmt-2000", service(bodies.raw_import, bodies.seen_import), IMPORT_BATCH),
        ]
    conns = [psycopg.connect(url, autocommit=True) for _ in range(args.clients)]
    results = []
    try:
        for name, execute, batch in plans:
            print(f"{name}: warm-up {args.warmup:g} s ...", flush=True)
            warm = raw_run(conns, name, execute, args.warmup, batch)  # (and prepared statements)
            if not warm.requests:
                raise RuntimeError(f"no {name} batch succeeded during the warm-up: {dict(warm.errors)}")
            reset_tables(url)
            before = cpu_snapshot(None)
            with WaitSampler(url) as waits:
                result = raw_run(conns, name, execute, args.seconds, batch)
            result.cpu = cpu_split(before, cpu_snapshot(None))
            result.extra["postgres_backends"] = waits.figures()
            result.extra["table"] = table_state(url)
            print(result.line())
            print(cpu_line(result.cpu))
            print(waits_line(result.extra["postgres_backends"]))
            print(storage_line(result.extra["table"]), flush=True)
            results.append(result)
    finally:
        for conn in conns:
            conn.close()
    return results


# --- py-spy categories ------------------------------------------------------------------------------------

# The profile summary files each sample under the first of these frames met from the leaf up (see
# harness/pyspy.py); these are the events path's.
EVENT_CATEGORIES: list[tuple[str, str, str]] = [
    ("gc_collect*", "libpython", "cyclic garbage collector (gc_collect_main)"),
    ("_mark_inexact", "ingest/wire.py", "decode: inexact-number scan (wire._mark_inexact: regex)"),
    ("read_wire_request", "ingest/wire.py", "decode body (wire.read_wire_request: orjson.loads, rest)"),
    ("TypeAdapter.validate_python", "pydantic/type_adapter.py", "validate: shape (pydantic TypedDict)"),
    ("parse_time", "ingest/pipeline.py", "validate: time (pipeline.parse_time)"),
    ("normalise", "ingest/events/records.py", "validate: rules (records.normalise)"),
    ("validate", "ingest/pipeline.py", "validate: loop (pipeline.validate, rest)"),
    ("TokenCache.resolve", "profilestore/projects.py", "token lookup (TokenCache.resolve)"),
    ("_import_project", "ingest/events/routes.py", "/import credentials (secret hashes query, sha256)"),
    ("dedupe", "ingest/events/records.py", "dedupe (records.dedupe)"),
    ("EventBatch.params", "ingest/events/sql.py", "serialise batch (EventBatch.params: orjson.dumps)"),
    ("build_event_batch", "ingest/events/sql.py", "build batch (sort, users_seen spans)"),
    ("insert_events", "ingest/events/sql.py", "send the statement (sql.insert_events: psycopg)"),
    ("ingest_response", "ingest/responses.py", "render response"),
    ("ingest", "ingest/pipeline.py", "pipeline.ingest(), rest"),
    ("handle", "ingest/pipeline.py", "pipeline.handle(), rest"),
    ("WorkerThread.run", "anyio/_backends/_asyncio.py", "threadpool hops (FastAPI's sync dependencies)"),
    ("run_sync", "anyio/to_thread.py", "threadpool hops (FastAPI's sync dependencies)"),
    (
        "RequestResponseCycle.run_asgi",
        "uvicorn/protocols/http/httptools_impl.py",
        "framework (uvicorn/starlette/fastapi, rest)",
    ),
    ("AsyncConnectionPool.connection", "psycopg_pool/pool_async.py", "connection pool (psycopg_pool)"),
    ("", "httptools/parser", "HTTP parsing (httptools)"),
    # uvloop writes with the GIL held; on a busy machine the wake-up of the reader often preempts the
    # server inside write(), so this is mostly wall time, not CPU (see the server's kernel time).
    ("UVStream_*", "loop.c", "socket writes (uvloop UVStream: the HTTP responses)"),
    ("", "loop.c", "event loop and socket calls (uvloop)"),
    ("", "uvloop/", "event loop and socket calls (uvloop)"),
]
EVENT_KEY_FRAMES = [(n, f) for n, f, _ in EVENT_CATEGORIES[:16]] + [
    ("_parse_json", "ingest/wire.py"),
    ("solve_dependencies", "fastapi/dependencies/utils.py"),
]


def profiler(args: argparse.Namespace, pid: int) -> Callable[[str], Callable[[], dict[str, Any]]]:
    def start(phase: str) -> Callable[[], dict[str, Any]]:
        out = args.profile_out.with_name(f"{args.profile_out.name}-{phase}.collapsed")
        native = not args.profile_python_only
        return start_profile(
            pid,
            args.seconds,
            args.workers,
            out,
            args.profile_rate,
            native,
            EVENT_CATEGORIES,
            EVENT_KEY_FRAMES,
        )

    return start


# --- main -------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help=f"a database on the server to use; the bench creates and drops {BENCH_DB} beside it",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="length of each measured phase")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up before each measured phase")
    p.add_argument("--clients", type=int, default=8, help="concurrent connections (HTTP and Postgres)")
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("PROFILESTORE_WORKERS", "1")),
        help="app processes of the server (PROFILESTORE_WORKERS)",
    )
    p.add_argument(
        "--no-statement-baseline",
        action="store_true",
        help="skip the raw phases with the service's own statement (events + users_seen)",
    )
    p.add_argument("--profile", action="store_true", help="run py-spy on the server during both HTTP phases")
    p.add_argument(
        "--profile-out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "profilestore-track",
        help="prefix of the py-spy outputs: PREFIX-track.collapsed, PREFIX-import.collapsed (+ .summary.txt)",
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument(
        "--profile-python-only",
        action="store_true",
        help="py-spy without --native: no pauses of the server, but GC time lands on the allocating lines",
    )
    p.add_argument("--keep-database", action="store_true", help=f"do not drop {BENCH_DB} at the end")
    return p.parse_args()


def per_event_cost(phase: EventPhase) -> dict[str, float]:
    """CPU µs (of one core) per event, by party."""
    eps = phase.figures()["events_per_s"] or 1
    return {
        party: round(phase.cpu[party] / eps * 1e6, 1)
        for party in ("server", "postgres", "postgres_backends", "bench_client")
    }


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
        bodies = make_bodies(service_project["token"], raw_project["id"])
        print(
            f"{EVENTS} events over {USERS} users: /track bodies of {TRACK_BATCH}"
            f" (~{len(bodies.track[0]) // 1024} KiB), /import bodies of {IMPORT_BATCH}"
            f" (~{len(bodies.import_[0]) // 1024} KiB); {args.clients} clients,"
            f" {args.seconds:g} s per phase, workers={args.workers}",
            flush=True,
        )

        server = Server(url, free_port(), args.workers)
        server.wait_healthy()
        profile = profiler(args, server.pid) if args.profile else None
        (track, import_), profiles = asyncio.run(
            http_phases(args, server, url, bodies, service_project["api_secret"], profile)
        )
        server.stop()
        server = None

        raws = {r.name: r for r in raw_phases(args, url, bodies)}
    finally:
        if server is not None:
            server.stop()
        if not args.keep_database:
            drop_database(args.database_url)

    def eps(phase: EventPhase | None) -> float:
        return float(phase.figures()["events_per_s"]) if phase else float("nan")

    ratios = {
        "track_over_raw": eps(track) / eps(raws["raw-50"]),
        "import_over_raw": eps(import_) / eps(raws["raw-2000"]),
        "track_over_service_statement": eps(track) / eps(raws.get("raw-stmt-50")),
        "import_over_service_statement": eps(import_) / eps(raws.get("raw-stmt-2000")),
    }
    ratios = {k: round(v, 4) for k, v in ratios.items()}
    print()
    print(
        f"service/raw /track:  {ratios['track_over_raw']:.3f} ({eps(track):.0f} vs {eps(raws['raw-50']):.0f}"
        f" events/s, batches of {TRACK_BATCH})  target >= 0.7"
    )
    print(
        f"service/raw /import: {ratios['import_over_raw']:.3f} ({eps(import_):.0f} vs"
        f" {eps(raws['raw-2000']):.0f} events/s, batches of {IMPORT_BATCH})  target >= 0.7"
    )
    if "raw-stmt-50" in raws:
        print(
            f"service statement (+ users_seen upsert, sorted) / events-only insert, raw:"
            f" batches of {TRACK_BATCH} {eps(raws['raw-stmt-50']) / eps(raws['raw-50']):.3f},"
            f" of {IMPORT_BATCH} {eps(raws['raw-stmt-2000']) / eps(raws['raw-2000']):.3f};"
            f" service / its own statement raw: /track {ratios['track_over_service_statement']:.3f},"
            f" /import {ratios['import_over_service_statement']:.3f}"
        )
    phases = [track, import_, *raws.values()]
    costs = {p.name: per_event_cost(p) for p in phases}
    print("cpu per event (µs of one core):")
    for name, c in costs.items():
        print(
            f"  {name:<14} server {c['server']:6.1f}  postgres {c['postgres']:6.1f}"
            f" (backends {c['postgres_backends']:6.1f})  bench client {c['bench_client']:6.1f}"
        )
    storage = {p.name: p.extra["table"] for p in phases}
    mib = 1024 * 1024
    print(
        "storage per million events (events partitions + indexes): "
        + ", ".join(
            f"{name} {s['bytes_per_million_events'] / mib:.0f} MiB"
            for name, s in storage.items()
            if s["bytes_per_million_events"]
        )
    )
    print(
        f"users_seen after /track: {storage['track']['users_seen_rows']} rows,"
        f" {storage['track']['users_seen_bytes'] / mib:.1f} MiB"
        f" ({storage['track']['users_seen_bytes'] / max(1, storage['track']['users_seen_rows']):.0f} B/row)"
    )
    for name, summary in profiles.items():
        print(f"py-spy during /{name} -> {summary.get('file')} ({summary.get('summary_file')})")
        for line in summary.get("text", []):
            print(line)
    if profiles:
        print("  (the HTTP figures above were taken with py-spy attached)")
    figures = {
        "machine": machine,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        | {"events": EVENTS, "users": USERS, "track_batch": TRACK_BATCH, "import_batch": IMPORT_BATCH},
        "phases": {p.name: p.figures() for p in phases},
        "ratios": ratios,
        "cpu_per_event_us": costs,
        "storage": storage,
        "profile": {k: {kk: vv for kk, vv in v.items() if kk != "text"} for k, v in profiles.items()} or None,
    }
    print(
        f"machine: nproc={machine['nproc']}, postgres {machine['postgres'].split(' ', 1)[0]},"
        f" python {machine['python']}, code {machine['code']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
