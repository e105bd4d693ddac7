#!/usr/bin/env python
"""Ingestion benchmark of /engage: the service against the same upserts sent straight to Postgres.

    python bench/engage.py [--database-url URL] [--seconds N] [--clients 8] [--batch 200] [--workers 1]
                           [--profile]

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
The profiles table is truncated (and a CHECKPOINT taken) before every measured phase, so all start empty.
Output: human-readable lines, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import psycopg
from psycopg.rows import dict_row

from profilestore import projects
from profilestore.db import migrate
from profilestore.db.engine import libpq_dsn

BENCH_DB = "profilestore_bench"
USERS = 100_000
# Distinct pre-serialised request bodies, cycled through by the clients: 2 x 100k updates at --batch 200.
N_BATCHES = 1000
# $time placeholder (13 digits, like a millisecond timestamp): replaced in the bytes at send time.
TIME_MARK = b"9999999999999"
PLANS = ["free", "starter", "pro", "team", "enterprise"]
CITIES = ["Paris", "Berlin", "Lagos", "Lima", "Osaka", "Austin", "Pune", "Oslo", "Quito", "Perth"]
TAGS = ["beta", "mobile", "web", "vip", "churn-risk", "trial", "api", "eu", "us", "apac"]
HEADERS = {"Content-Type": "application/json"}

RAW_SQL = (
    "INSERT INTO profiles AS p (project_id, distinct_id, properties)"
    " SELECT %s::bigint, r.d, r.s FROM jsonb_to_recordset(%s::jsonb) AS r(d text, s jsonb)"
    " ORDER BY r.d"
    " ON CONFLICT (project_id, distinct_id) DO UPDATE"
    " SET properties = p.properties || excluded.properties, updated_at = now()"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


# --- statistics -------------------------------------------------------------------------------------------


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class PhaseResult:
    name: str
    seconds: float
    batch: int
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "updates": self.requests * self.batch,
            "requests_per_s": round(self.requests / self.seconds, 2),
            "updates_per_s": round(self.requests * self.batch / self.seconds, 1),
            "p50_ms": round(pct(lat, 50) * 1000, 2),
            "p99_ms": round(pct(lat, 99) * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "errors": dict(self.errors),
            **self.extra,
            "cpu": self.cpu,
        }

    def line(self) -> str:
        f = self.figures()
        errors = f" errors={f['errors']}" if f["errors"] else ""
        return (
            f"{self.name:<11} {f['updates_per_s']:>9.0f} updates/s {f['requests_per_s']:>7.1f} req/s"
            f"  p50 {f['p50_ms']:7.1f} ms  p99 {f['p99_ms']:7.1f} ms  ({f['requests']} requests in"
            f" {f['seconds']:.1f} s){errors}"
        )


# --- CPU accounting from /proc ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str  # comm
    ppid: int
    user: float  # utime of all its threads, seconds
    system: float  # stime

    @property
    def seconds(self) -> float:
        return self.user + self.system


def scan_processes() -> dict[int, Proc]:
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        procs[int(entry.name)] = Proc(
            name, int(fields[1]), int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
        )
    return procs


def process_tree(procs: dict[int, Proc], root: int) -> set[int]:
    """root and its descendants (uvicorn worker processes when --workers > 1)."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def cmdline(pid: int) -> str:
    """Postgres rewrites its argv: 'postgres: 15/main: user db 127.0.0.1(port) idle' for a backend."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


MACHINE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_ticks() -> dict[str, int]:
    """Jiffies of all CPUs since boot, by kind (guest time is inside user)."""
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return dict(zip(MACHINE_FIELDS, map(int, values), strict=False))


@dataclass
class CpuSnapshot:
    wall: float
    procs: dict[int, Proc]
    server: set[int]
    backends: set[int]  # postgres processes serving the bench database (not autovacuum)
    postmaster: int | None  # their parent: its other children are the server's own processes
    machine: dict[str, int]


def cpu_snapshot(server_pid: int | None) -> CpuSnapshot:
    procs = scan_processes()
    server = process_tree(procs, server_pid) if server_pid in procs else set()
    backends = set()
    for pid, proc in procs.items():
        if proc.name == "postgres":  # what `ps -C postgres` lists
            args = cmdline(pid)
            if f" {BENCH_DB} " in args and "autovacuum" not in args:
                backends.add(pid)
    parents = Counter(procs[pid].ppid for pid in backends)
    postmaster = parents.most_common(1)[0][0] if parents else None
    return CpuSnapshot(time.perf_counter(), procs, server, backends, postmaster, machine_ticks())


def cpu_split(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """Cores used on average over the interval (1.0 = one core busy all the time), per party.
    A process that started during the interval counts whole; one that ended during it is lost."""
    wall = after.wall - before.wall

    def used(pid: int, kind: str = "seconds") -> float:
        old = before.procs.get(pid)  # (kernel workers rename themselves: match by pid only)
        base = getattr(old, kind) if old is not None else 0.0
        return float(getattr(after.procs[pid], kind) - base) / wall

    me = os.getpid()
    parties: dict[str, float] = {"server": 0.0, "postgres_backends": 0.0, "postgres_other": 0.0}
    parties["bench_client"] = used(me)
    server_system = 0.0
    postmaster = after.postmaster or before.postmaster
    others: dict[str, float] = {}
    for pid, proc in after.procs.items():
        if pid == me:
            continue
        if pid in after.server or pid in before.server:
            parties["server"] += used(pid)
            server_system += used(pid, "system")
        elif pid in after.backends:
            parties["postgres_backends"] += used(pid)
        elif proc.name == "postgres" and postmaster in (pid, proc.ppid):
            parties["postgres_other"] += used(pid)  # walwriter, checkpointer, autovacuum, ...
        elif (seconds := used(pid)) > 0:
            name = proc.name.split("/", 1)[0] if proc.name.startswith("kworker") else proc.name
            name = "postgres (another cluster)" if name == "postgres" else name
            others[name] = others.get(name, 0.0) + seconds
    ticks = {k: (after.machine[k] - before.machine[k]) / CLK_TCK / wall for k in MACHINE_FIELDS}
    busy = sum(ticks.values()) - ticks["idle"] - ticks["iowait"]
    split: dict[str, Any] = {k: round(v, 3) for k, v in parties.items()}
    split["server_system"] = round(server_system, 3)
    split["postgres"] = round(parties["postgres_backends"] + parties["postgres_other"], 3)
    split["other_processes"] = round(sum(others.values()), 3)
    split["profiler"] = round(others.get("py-spy", 0.0), 3)
    top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
    split["top_other_processes"] = {k: round(v, 3) for k, v in top}
    split["machine_busy"] = round(busy, 3)
    split["machine_cores"] = round(sum(ticks.values()), 3)
    split["machine"] = {k: round(v, 3) for k, v in ticks.items() if k not in ("nice", "steal")}
    # Kernel work charged to no process (softirqs of the loopback network, kernel threads' time is above).
    split["unattributed"] = round(busy - sum(parties.values()) - split["other_processes"], 3)
    return split


def cpu_line(split: dict[str, Any]) -> str:
    m = split["machine"]
    top = ", ".join(f"{k} {v:.2f}" for k, v in split["top_other_processes"].items()) or "-"
    foreign = split["other_processes"] - split["profiler"] + max(0.0, split["unattributed"])
    noisy = f"\n  WARNING: other jobs took {foreign:.2f} cores during this phase" if foreign > 0.15 else ""
    return (
        f"  cpu (cores): server {split['server']:.2f} (kernel {split['server_system']:.2f})"
        f" | postgres {split['postgres']:.2f}"
        f" (backends {split['postgres_backends']:.2f}, other {split['postgres_other']:.2f})"
        f" | bench client {split['bench_client']:.2f}"
        f" | other processes {split['other_processes']:.2f} ({top})"
        f" | unattributed {split['unattributed']:.2f}\n"
        f"  machine: busy {split['machine_busy']:.2f} of {split['machine_cores']:.1f} cores"
        f" (user {m['user']:.2f}, system {m['system']:.2f}, softirq {m['softirq']:.2f},"
        f" iowait {m['iowait']:.2f}, idle {m['idle']:.2f})" + noisy
    )


# --- database ---------------------------------------------------------------------------------------------


def bench_url(base: str) -> str:
    parts = urlsplit(libpq_dsn(base))
    return urlunsplit(parts._replace(path="/" + BENCH_DB))


def create_database(base: str) -> None:
    with psycopg.connect(libpq_dsn(base), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def drop_database(base: str) -> None:
    with psycopg.connect(libpq_dsn(base), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def create_projects(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await projects.create_project(conn, "bench"), await projects.create_project(
                conn, "bench-raw"
            )

    return asyncio.run(run())


def reset_table(url: str) -> None:
    """Every measured phase starts from an empty table and a fresh checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE profiles, profile_tombstones, ingestion_warnings")
        conn.execute("CHECKPOINT")


def table_state(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE properties ? 'plan'),"
            " pg_total_relation_size('profiles') FROM profiles"
        ).fetchone()
        assert row is not None
        return {"rows": row[0], "rows_with_plan": row[1], "table_bytes": row[2]}


# --- the service ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`profilestore serve` as a child process in its own session (so its workers go with it)."""

    def __init__(self, url: str, port: int, workers: int) -> None:
        exe = Path(sys.executable).parent / "profilestore"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "profilestore.cli"]
        fd, name = tempfile.mkstemp(prefix="profilestore-bench-", suffix=".log")
        self.log = Path(name)
        env = dict(os.environ, DATABASE_URL=url, PROFILESTORE_WORKERS=str(workers))
        self.base = f"http://127.0.0.1:{port}"
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.base + "/healthz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /healthz in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.unlink(missing_ok=True)


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


# --- py-spy -----------------------------------------------------------------------------------------------


def py_spy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    exe = str(found) if found.exists() else shutil.which("py-spy")
    if not exe:
        raise SystemExit("--profile needs py-spy: /work/venv/bin/pip install py-spy")
    return exe


def start_profile(
    pid: int, seconds: float, workers: int, out: Path, rate: int, native: bool
) -> Callable[[], dict[str, Any]]:
    """py-spy record (collapsed stacks) on the server for `seconds`; returns a function that waits for it
    and summarises where the samples fell."""
    # --gil: only samples where a thread holds the GIL, i.e. Python (and C extensions) at work; without it,
    # the anyio threadpool's idle workers (FastAPI runs sync dependencies there) show up as busy.
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    command += ["--rate", str(rate), "--format", "raw", "--nolineno", "--gil", "--threads"]
    # --native (C frames: the garbage collector, uvloop, ...) needs py-spy to pause the server per sample.
    command += ["--native"] if native else ["--nonblocking"]
    command += ["--output", str(out)]
    if workers > 1:
        command.append("--subprocesses")
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish() -> dict[str, Any]:
        try:
            _, err = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if spy.returncode != 0 or not out.exists():
            print(f"py-spy failed ({spy.returncode}): {err.strip()[-500:]}")
            return {"error": err.strip()[-500:]}
        return summarise_profile(out, seconds * rate * max(1, workers))

    return finish


# Where a sample's time goes: walking its stack from the leaf up, the first of these frames decides
# (function name, "" = any, "x*" = prefix; a substring of its file) -> category.  Mutually exclusive, so the
# shares add up to 100 %.  Native frames (--native) put the garbage collector's time where it belongs
# instead of on whichever Python line happened to allocate.
CATEGORIES: list[tuple[str, str, str]] = [
    ("gc_collect*", "libpython", "cyclic garbage collector (gc_collect_main)"),
    ("read_wire_request", "ingest/wire.py", "decode body (wire.read_wire_request: orjson.loads)"),
    ("validate_updates", "ingest/records.py", "validate records (records.validate_updates)"),
    ("resolve", "profilestore/projects.py", "token lookup (TokenCache.resolve)"),
    ("build_batch", "ingest/sql.py", "group updates (sql.build_batch)"),
    ("_params", "ingest/sql.py", "serialise batch (sql._params: orjson.dumps)"),
    ("apply_batch", "ingest/sql.py", "send the statement (sql.apply_batch: psycopg)"),
    ("ingest_response", "ingest/responses.py", "render response"),
    ("engage", "ingest/routes.py", "engage(), rest"),
    ("WorkerThread.run", "anyio/_backends/_asyncio.py", "threadpool hops (FastAPI's sync dependencies)"),
    ("run_sync", "anyio/to_thread.py", "threadpool hops (FastAPI's sync dependencies)"),
    ("run_asgi", "uvicorn/protocols/http/httptools_impl.py", "framework (uvicorn/starlette/fastapi, rest)"),
    ("connection", "psycopg_pool/pool_async.py", "connection pool (psycopg_pool)"),
    ("", "httptools/parser", "HTTP parsing (httptools)"),
    ("", "loop.c", "event loop and socket calls (uvloop)"),
    ("", "uvloop/", "event loop and socket calls (uvloop)"),
]
OTHER = "other (asyncio/uvloop glue, libc, ...)"
# Functions of the request path whose inclusive share is worth a line each.
KEY_FRAMES = [(n, f) for n, f, _ in CATEGORIES[:9]] + [
    ("_parse_json", "ingest/wire.py"),
    ("_normalise", "ingest/records.py"),
    ("_check_value", "ingest/records.py"),
    ("validate_python", "pydantic/type_adapter.py"),
    ("ingest_profiles", "ingest/service.py"),
    ("solve_dependencies", "fastapi/dependencies/utils.py"),
]


def _frame_parts(frame: str) -> tuple[str, str]:
    name, _, rest = frame.partition(" (")
    return name, rest.rstrip(")")


def _package(path: str) -> str:
    if "profilestore/" in path or path.startswith("profilestore"):
        return "profilestore/" + path.rsplit("profilestore/", 1)[-1].split("/")[0].removesuffix(".py")
    head = path.split("/", 1)[0].removesuffix(".py")
    return head or path


def _matches(frame: str, name: str, in_path: str) -> bool:
    fn, path = _frame_parts(frame)
    named = fn.startswith(name[:-1]) if name.endswith("*") else not name or fn == name
    return named and in_path in path


def summarise_profile(out: Path, expected: float) -> dict[str, Any]:
    """`expected`: samples one thread holding the GIL all the time would give."""
    samples = 0
    threads: Counter[str] = Counter()
    category: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    key: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = "?"
        frames = []
        for part in parts:
            if part.startswith("thread ("):
                # "thread (tid): name"; anyio's pool threads get one name each: group them.
                thread = part.split(": ", 1)[-1]
                thread = "anyio worker threads" if "AnyIO worker" in thread else thread
            elif not part.startswith("process "):
                frames.append(part)
        if not frames:
            continue
        samples += count
        threads[thread] += count
        leaf = frames[-1]
        self_fn[leaf] += count
        self_pkg[_package(_frame_parts(leaf)[1])] += count
        for frame in reversed(frames):
            found = next((c for n, f, c in CATEGORIES if _matches(frame, n, f)), None)
            if found:
                category[found] += count
                break
        else:
            category[OTHER] += count
        seen = set(frames)
        for name, suffix in KEY_FRAMES:
            if any(_matches(f, name, suffix) for f in seen):
                key[f"{name} ({suffix})"] += count

    def share(n: int) -> float:
        return round(100 * n / samples, 1) if samples else 0.0

    summary: dict[str, Any] = {
        "file": str(out),
        "samples": samples,
        "gil_held_fraction": round(samples / expected, 3) if expected else None,
        "threads_pct": {k: share(v) for k, v in threads.most_common(5)},
        "breakdown_pct": {k: share(v) for k, v in category.most_common()},
        "key_functions_inclusive_pct": {k: share(v) for k, v in key.most_common()},
        "packages_self_pct": {k: share(v) for k, v in self_pkg.most_common(10)},
        "functions_self_pct": {k: share(v) for k, v in self_fn.most_common(15)},
    }
    tables: list[tuple[str, dict[str, float]]] = [
        ("where the GIL-holding samples fall (exclusive, leaf-up), %", summary["breakdown_pct"]),
        ("by thread, %", summary["threads_pct"]),
        ("request-path functions, inclusive %", summary["key_functions_inclusive_pct"]),
        ("self time by package/module, %", summary["packages_self_pct"]),
        ("top functions by self time, %", summary["functions_self_pct"]),
    ]
    lines = [
        f"py-spy: {samples} samples with the GIL held, i.e. the GIL was busy"
        f" {summary['gil_held_fraction']:.0%} of the wall time (Python + C extensions, not syscalls)"
    ]
    for title, table in tables:
        lines.append(f"  {title}:")
        lines.extend(f"    {v:5.1f}  {k}" for k, v in table.items())
    report = out.with_suffix(".summary.txt")
    report.write_text("\n".join(lines) + "\n")
    summary["summary_file"] = str(report)
    summary["text"] = lines
    return summary


# --- main -------------------------------------------------------------------------------------------------


def postgres_version(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('shared_buffers', 'synchronous_commit', 'fsync', 'max_wal_size', 'wal_level')"
        ).fetchall()
    assert row is not None
    return f"{row[0]} ({', '.join(f'{k}={v}' for k, v in settings)})"


def code_version() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty src" if dirty else "")


def background_load(seconds: float = 1.0) -> dict[str, Any]:
    """How busy the machine is before the bench starts (other jobs skew every figure on 2 cores)."""
    before = cpu_snapshot(None)
    time.sleep(seconds)
    split = cpu_split(before, cpu_snapshot(None))
    return {"busy_cores": split["machine_busy"], "top": split["top_other_processes"]}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def machine_facts() -> dict[str, Any]:
    """What every bench reports about the machine, taken before it creates its database."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "postgres": "?",
        "code": code_version(),
        "background_load": background_load(),
    }


def announce_machine(machine: dict[str, Any], url: str) -> None:
    """Adds the Postgres version to `machine`, prints the machine line, and warns when it was already busy."""
    machine["postgres"] = postgres_version(url)
    print(
        f"machine: nproc={machine['nproc']} cpu={machine['cpu']!r} python={machine['python']}"
        f" postgres={machine['postgres']} code={machine['code']}"
    )
    load = machine["background_load"]
    if load["busy_cores"] > 0.2:
        print(
            f"WARNING: the machine was already busy before the bench: {load['busy_cores']:.2f} cores"
            f" ({load['top']}); every figure below is skewed by it"
        )


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
