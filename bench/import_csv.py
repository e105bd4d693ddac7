#!/usr/bin/env python
"""CSV profile import benchmark: `profilestore import-csv` (and optionally the HTTP API) against the floor of
raw Postgres, a COPY of the same file plus one INSERT ... SELECT ... ON CONFLICT.

    python bench/import_csv.py                     # ~5-10 min at 1,000,000 rows
    python bench/import_csv.py --rows 100000       # quicker
    python bench/import_csv.py --api               # + the same fresh import through POST /api/profiles/import
    python bench/import_csv.py --profile           # + py-spy on the command's fresh and update imports

Options: --rows (1,000,000), --database-url (default $DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test; the bench creates `profilestore_bench_import` on that server and
drops it at the end), --keep-database, --api, --profile, --profile-out, --seed, --tmp (where the CSV files
go).

What one run does:
1. writes two CSV files (seeded, so every run has the same bytes) into a temporary directory: `fresh.csv`,
   --rows rows of 10 columns (distinct_id (a UUID), Email, First Name, Last Name, plan, logins (integer),
   revenue (decimal), Created (`YYYY-MM-DD HH:MM:SS`), last_order (a date, empty for ~15%), tags (a JSON
   list)), and `updates.csv`: the same ids in the same order, every row with more logins, some with another
   plan, revenue, last order or tags (a nightly re-export);
2. creates the database, runs `profilestore migrate`, creates a project, and `floor_profiles`, a copy of
   `profiles` with the same indexes (`LIKE profiles INCLUDING ALL`: the primary key and both GIN indexes);
3. measures, each phase after a CHECKPOINT, the import command (a child process, default options: types
   inferred) and the floor in turn: fresh file (every profile created), update file (every profile updated),
   and the command on the update file again (every row unchanged: nothing written). For the command: wall
   time from start to exit, rows/s, its peak RSS (`ru_maxrss` from wait4), its CPU and the Postgres
   backends' CPU, and when its first chunk committed (the first pass, finding types, comes before it);
4. the floor: `COPY ... FROM STDIN (FORMAT csv, HEADER)` of the same file into a temporary table of text
   columns (temporary, as the service's staging table), then ONE `INSERT INTO floor_profiles ... SELECT ...
   ON CONFLICT (project_id, distinct_id) DO UPDATE SET properties = p.properties || excluded.properties`
   building the same typed jsonb (`jsonb_build_object` with `::numeric`, `::jsonb`, dates via `to_char`);
   after each pair the two tables are compared row by row (they must hold the same properties);
5. with --api: TRUNCATE profiles, start `profilestore serve`, POST the fresh file to /api/profiles/import
   (streamed), poll the status URL until `done`: the time from the upload's start, and the peak RSS of the
   server (VmHWM after a reset) and of the import process it starts (`profilestore import-job`; VmHWM polled);
6. prints a markdown table of each import beside the floor (ratio = import rate / floor rate), the targets
   (each import < 30 s, >= 0.5 of the floor's rate, < 300 MB resident), the machine line, and one JSON line.

CPU lines give CPU-seconds per party during the phase; on 2 cores, other jobs on the machine (a "WARNING"
line when they took more than 0.15 cores) slow every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from harness.db import bench_url, create_database, drop_database, use_database
from harness.machine import announce_machine, machine_facts
from harness.proc import CLK_TCK, MACHINE_FIELDS, RssSampler, cmdline, cpu_snapshot, machine_ticks
from harness.server import Server, basic, free_port
from profilestore import projects

BENCH_DB = "profilestore_bench_import"
# A client backend's title: "postgres: 15/main: USER DATABASE HOST(PORT) STATE" (or [local]).
CLIENT = re.compile(r"\(\d+\) |\[local\] ")
TARGET_SECONDS = 30.0
TARGET_RATIO = 0.5
TARGET_MB = 300.0
NOISE_CORES = 0.15

# ---- data -------------------------------------------------------------------------------------------------

HEADER = [
    "distinct_id",
    "Email",
    "First Name",
    "Last Name",
    "plan",
    "logins",
    "revenue",
    "Created",
    "last_order",
    "tags",
]
# fmt: off
FIRST = [
    "Ada", "Bo", "Chen", "Dana", "Emeka", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena", "María",
    "Noah", "Olga", "Priya", "Quinn", "Rafael", "Sofia", "Tariq", "Uma", "Viktor", "Wen", "Yusuf", "Zoë",
]
LAST = [
    "Smith", "Müller", "García", "Sato", "Okafor", "Dubois", "Rossi", "Nowak", "Silva", "Kim", "O'Brien",
    "Johansson", "Ivanova", "Chen", "Patel", "Nguyen", "Kowalski", "Hernández", "Brown", "Jones",
]
DOMAINS = [
    "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me",
    "example.com", "acme.io",
]
# fmt: on
PLANS = [("free", 0.60), ("starter", 0.75), ("pro", 0.90), ("team", 0.97), ("enterprise", 1.0)]
TAGS = ["beta", "mobile", "web", "vip", "churn-risk", "trial", "api", "eu", "us", "apac"]
EPOCH = datetime(2021, 1, 1)
TODAY = datetime(2026, 11, 1)


def _plan(r: float) -> str:
    return next(name for name, upto in PLANS if r < upto)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _tags(rng: random.Random) -> str:
    return json.dumps(rng.sample(TAGS, rng.choice((0, 1, 1, 2, 2, 3))))


def write_files(directory: Path, n: int, seed: int) -> tuple[Path, Path]:
    """fresh.csv and updates.csv (same ids, same order, changed values), the same bytes for the same seed."""
    rng, change = random.Random(seed), random.Random(seed + 1)
    fresh, updates = directory / "fresh.csv", directory / "updates.csv"
    span = int((TODAY - EPOCH).total_seconds())
    with fresh.open("w", newline="") as f1, updates.open("w", newline="") as f2:
        w1, w2 = csv.writer(f1), csv.writer(f2)
        w1.writerow(HEADER)
        w2.writerow(HEADER)
        for i in range(n):
            ident = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first.lower()}.{last.lower().replace(chr(39), '')}{i}@{rng.choice(DOMAINS)}"
            plan = _plan(rng.random())
            logins = int(rng.expovariate(1 / 40))
            cents = 0 if plan == "free" else int(rng.expovariate(1 / 20_000))
            created = EPOCH + timedelta(seconds=rng.randrange(span))
            ordered = created + timedelta(days=rng.randrange(max(1, (TODAY - created).days)))
            last_order = ordered.date().isoformat() if rng.random() < 0.85 else ""
            tags = _tags(rng)
            row = [ident, email, first, last, plan, logins, _money(cents), str(created), last_order, tags]
            w1.writerow(row)
            # The nightly re-export: more logins (so every row changes), sometimes more.
            logins += 1 + int(change.expovariate(1 / 10))
            if change.random() < 0.10:
                plan = _plan(change.random())
            if plan != "free" and change.random() < 0.5:
                cents += int(change.expovariate(1 / 5_000))
            if change.random() < 0.5:
                last_order = (TODAY - timedelta(days=change.randrange(30))).date().isoformat()
            if change.random() < 0.3:
                tags = _tags(change)
            row = [ident, email, first, last, plan, logins, _money(cents), str(created), last_order, tags]
            w2.writerow(row)
    return fresh, updates


# ---- processes: CPU per party and peak memory over a phase ------------------------------------------------


class Watch:
    """CPU-seconds per party and the peak memory (VmHWM) of the importing processes during one phase, from
    /proc every `interval` s: a process that ends during the phase counts up to its last sample."""

    def __init__(self, exclude: set[int], interval: float = 0.5) -> None:
        self.exclude = exclude  # the bench's own backends (its progress polling)
        self.interval = interval
        self.root: int | None = None
        self.labels: dict[int, str] = {}
        self.before = cpu_snapshot(None)
        self.ticks = machine_ticks()
        self.seen: dict[int, tuple[str, float]] = {}
        self.peak_kb: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def label(self, pid: int) -> str:
        """The server's import process (`python -m profilestore import-job ID`, or `profilestore.imports ID`;
        looked at until its exec shows): "job"; the rest of the tree: "root"."""
        if pid not in self.labels and pid != self.root and "import" in cmdline(pid):
            self.labels[pid] = "job"
        return self.labels.get(pid, "root")

    def postgres_party(self, pid: int) -> str:
        """A process of the cluster (checkpointer, WAL writer, ...), or a client of another database: another
        job on the machine.  A process that is exiting has no command line: it keeps its party."""
        args = cmdline(pid)
        if not args:
            return self.seen.get(pid, ("postgres_other",))[0]
        return "other" if CLIENT.search(args) else "postgres_other"

    def sample(self) -> None:
        snap = cpu_snapshot(self.root)
        me = os.getpid()
        for pid, proc in snap.procs.items():
            if pid in snap.server:
                party = self.label(pid)
                with contextlib.suppress(OSError, ValueError, IndexError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    hwm = int(status.split("VmHWM:", 1)[1].split()[0])
                    self.peak_kb[party] = max(self.peak_kb.get(party, 0), hwm)
            elif pid == me or pid in self.exclude:
                party = "bench"
            elif pid in snap.backends:
                party = "postgres_backends"
            elif proc.name == "postgres" and snap.postmaster in (pid, proc.ppid):
                party = self.postgres_party(pid)
            else:
                party = "other"
            # An exiting backend has no command line: once seen as the bench database's, it stays so.
            if self.seen.get(pid, ("",))[0] == "postgres_backends":
                party = "postgres_backends"
            self.seen[pid] = (party, proc.seconds)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join()
        self.sample()
        wall = time.perf_counter() - self.before.wall
        used: dict[str, float] = {}
        for pid, (party, seconds) in self.seen.items():
            old = self.before.procs.get(pid)
            used[party] = used.get(party, 0.0) + seconds - (old.seconds if old is not None else 0.0)
        ticks = machine_ticks()
        delta = {k: (ticks[k] - self.ticks[k]) / CLK_TCK for k in MACHINE_FIELDS}
        busy = sum(delta.values()) - delta["idle"] - delta["iowait"]
        return {
            "wall_s": round(wall, 2),
            "cpu_s": {k: round(v, 2) for k, v in sorted(used.items())},
            "machine_busy_cores": round(busy / wall, 2),
            "iowait_cores": round(delta["iowait"] / wall, 2),
            "other_cores": round(used.get("other", 0.0) / wall, 2),
            "peak_mb": {k: round(v / 1024, 1) for k, v in self.peak_kb.items()},
        }


def cpu_text(w: dict[str, Any], importer: str) -> str:
    cpu = w["cpu_s"]
    line = (
        f"  cpu-s: {importer} {cpu.get('root', 0.0) + cpu.get('job', 0.0):.1f}"
        + (f" (job {cpu['job']:.1f})" if "job" in cpu else "")
        + f" | postgres backends {cpu.get('postgres_backends', 0.0):.1f}"
        f" | postgres other {cpu.get('postgres_other', 0.0):.1f} | bench {cpu.get('bench', 0.0):.1f}"
        f" | other processes {cpu.get('other', 0.0):.1f}"
        f" | machine busy {w['machine_busy_cores']:.2f} cores, iowait {w['iowait_cores']:.2f}"
    )
    if w["other_cores"] > NOISE_CORES:
        line += f"\n  WARNING: other jobs took {w['other_cores']:.2f} cores during this phase"
    return line


# ---- the service ------------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rows: int
    seconds: float
    peak_mb: dict[str, float] = field(default_factory=dict)
    floor: str = ""  # the key of the floor it is compared with
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


class JobPoll:
    """The latest job's rows_done, polled from import_jobs: when the first chunk committed."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.pid = self.conn.info.backend_pid
        self.first_chunk: float | None = None
        self.last_job = self._latest() or 0
        self.stop = threading.Event()
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def _latest(self) -> int | None:
        row = self.conn.execute("SELECT max(id) FROM import_jobs").fetchone()
        return row[0] if row else None

    def run(self) -> None:
        while not self.stop.wait(0.25) and self.first_chunk is None:
            row = self.conn.execute(
                "SELECT rows_done FROM import_jobs WHERE id > %s ORDER BY id DESC LIMIT 1", (self.last_job,)
            ).fetchone()
            if row and row[0]:
                self.first_chunk = time.perf_counter() - self.started

    def finish(self) -> float | None:
        self.stop.set()
        self.thread.join()
        self.conn.close()
        return self.first_chunk


def profilestore_exe() -> list[str]:
    exe = Path(sys.executable).parent / "profilestore"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "profilestore"]


def run_cli(url: str, token: str, path: Path, rows: int, name: str, profile: Path | None) -> Result:
    poll = JobPoll(url)
    watch = Watch({poll.pid})
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below)
    env = dict(os.environ, DATABASE_URL=url)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*profilestore_exe(), "import-csv", str(path), "--token", token], env=env, stdout=log, stderr=log
    )
    watch.root = proc.pid
    spy = start_spy(proc.pid, profile) if profile else None
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    first_chunk = poll.finish()
    w = watch.finish()
    log.seek(0)
    output = log.read()
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"import-csv exited {proc.returncode}:\n{output[-3000:]}")
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT summary FROM import_jobs ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    summary = row[0]
    w["cpu_s"]["root"] = round(usage.ru_utime + usage.ru_stime, 2)  # exact, from the kernel
    peak = round(usage.ru_maxrss / 1024, 1)
    result = Result(name, rows, seconds, {"cli": peak}, details={"cpu": w, "summary": summary})
    result.details["first_chunk_committed_s"] = round(first_chunk, 2) if first_chunk else None
    counts = {k: summary[k] for k in ("rows", "created", "updated", "unchanged", "skipped")}
    print(
        f"{name:<40} {seconds:7.1f} s {rows / seconds:>9,.0f} rows/s  peak RSS {peak:,.0f} MB"
        f"  (import's own {summary['seconds']:.1f} s; first chunk committed at"
        f" {first_chunk or float('nan'):.1f} s) {counts}",
        flush=True,
    )
    print(cpu_text(w, "import-csv"), flush=True)
    if spy is not None:
        result.details["profile"] = finish_spy(spy, profile)
    return result


def start_spy(pid: int, out: Path | None) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    command = [str(exe), "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--threads"]
    command += ["--idle", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish_spy(spy: subprocess.Popen[str], out: Path | None) -> dict[str, Any]:
    """Where the samples fell, per thread: the top leaf functions (idle included: a thread waiting on
    Postgres shows as its wait)."""
    spy.wait(60)
    assert out is not None
    if not out.exists():
        return {"error": (spy.stderr.read() if spy.stderr else "")[-500:]}
    per_thread: dict[str, dict[str, int]] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        thread = next((p.split(": ", 1)[-1] for p in parts if p.startswith("thread (")), "?")
        frames = [p for p in parts if not p.startswith(("thread (", "process "))]
        if not frames:
            continue
        leaf = frames[-1]
        # One level up from psycopg/Python internals: the import code that called them.
        caller = next((f for f in reversed(frames) if "profilestore/" in f), leaf)
        key = f"{leaf}  <-  {caller}" if caller != leaf else leaf
        per_thread.setdefault(thread, {})
        per_thread[thread][key] = per_thread[thread].get(key, 0) + int(count)
    summary: dict[str, Any] = {"file": str(out)}
    print(f"  py-spy ({out}), samples per thread, top leaves (<- the import's frame that called them):")
    for thread, counts in per_thread.items():
        total = sum(counts.values())
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
        summary[thread] = {"samples": total, "top": {k: round(100 * v / total, 1) for k, v in top}}
        print(f"    thread {thread}: {total} samples")
        for k, v in top:
            print(f"      {100 * v / total:5.1f}%  {k}")
    return summary


def run_api(url: str, project: dict[str, Any], path: Path, rows: int) -> Result:
    server = Server(url, free_port(), 1)
    try:
        server.wait_healthy()
        memory = RssSampler(server.pid)
        watch = Watch(set())
        watch.root = server.pid
        auth = {"Authorization": basic(project["api_secret"])}

        def body() -> Any:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    yield block

        start = time.perf_counter()
        with httpx.Client(base_url=server.base, headers=auth, timeout=600) as http:
            answer = http.post("/api/profiles/import", content=body(), headers={"Content-Type": "text/csv"})
            uploaded = time.perf_counter() - start
            if answer.status_code != 202:
                raise SystemExit(f"POST /api/profiles/import: {answer.status_code} {answer.text[:2000]}")
            status_url = answer.json()["status_url"]
            polls = 0
            while True:
                status = http.get(status_url).json()
                polls += 1
                if status["state"] not in ("queued", "running"):
                    break
                time.sleep(0.25)
        seconds = time.perf_counter() - start
        server_memory = memory.finish()
        w = watch.finish()
    finally:
        server.stop()
    if status["state"] != "done":
        raise SystemExit(f"the API import ended {status['state']}: {status.get('error')}")
    summary = status["summary"]
    peaks = {"server": server_memory["peak_rss_mb"], "job": w["peak_mb"].get("job", float("nan"))}
    result = Result("API import, fresh file", rows, seconds, peaks, "fresh", {"cpu": w, "summary": summary})
    result.details.update(upload_s=round(uploaded, 2), status_polls=polls, server_memory=server_memory)
    counts = {k: summary[k] for k in ("rows", "created", "updated", "unchanged", "skipped")}
    print(
        f"{result.name:<40} {seconds:7.1f} s {rows / seconds:>9,.0f} rows/s  peak RSS server"
        f" {peaks['server']:,.0f} MB (before {server_memory['rss_before_mb']:,.0f} MB), job"
        f" {peaks['job']:,.0f} MB  (upload {uploaded:.1f} s; job's own {summary['seconds']:.1f} s) {counts}",
        flush=True,
    )
    print(cpu_text(w, "server + job"), flush=True)
    return result


# ---- the floor: raw Postgres ------------------------------------------------------------------------------

RAW_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS raw_csv (
    distinct_id text, email text, first_name text, last_name text, plan text, logins text, revenue text,
    created text, last_order text, tags text
)
"""
RAW_COPY = "COPY raw_csv FROM STDIN (FORMAT csv, HEADER true)"
RAW_INSERT = """
INSERT INTO floor_profiles AS p (project_id, distinct_id, properties)
SELECT %(project_id)s, distinct_id, jsonb_strip_nulls(jsonb_build_object(
    '$email', email, '$first_name', first_name, '$last_name', last_name, 'plan', plan,
    'logins', logins::numeric, 'revenue', revenue::numeric,
    '$created', to_char(created::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS'),
    'last_order', to_char(nullif(last_order, '')::date, 'YYYY-MM-DD"T00:00:00"'),
    'tags', tags::jsonb))
FROM raw_csv
ON CONFLICT (project_id, distinct_id) DO UPDATE
SET properties = p.properties || excluded.properties, updated_at = now()
"""


def run_floor(url: str, project_id: int, path: Path, rows: int, name: str) -> Result:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
        conn.execute("TRUNCATE raw_csv")
        conn.execute("CHECKPOINT")
        watch = Watch(set())
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(RAW_COPY) as copy, path.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        copied = time.perf_counter() - start
        inserted = conn.execute(RAW_INSERT, {"project_id": project_id}).rowcount
        seconds = time.perf_counter() - start
        w = watch.finish()
        conn.execute("DROP TABLE raw_csv")
    result = Result(name, rows, seconds, details={"copy_s": round(copied, 2), "cpu": w, "rows": inserted})
    print(
        f"{name:<40} {seconds:7.1f} s {rows / seconds:>9,.0f} rows/s  (COPY {copied:.1f} s,"
        f" INSERT ... ON CONFLICT {seconds - copied:.1f} s, {inserted:,} rows)",
        flush=True,
    )
    print(cpu_text(w, "(none)"), flush=True)
    return result


COMPARE = """
SELECT count(*) FILTER (WHERE p.distinct_id IS NULL OR f.distinct_id IS NULL) AS missing,
       count(*) FILTER (WHERE p.properties <> f.properties) AS differ,
       count(*) AS total,
       min(coalesce(p.distinct_id, f.distinct_id)) FILTER (WHERE p.properties IS DISTINCT FROM f.properties)
           AS example
FROM (SELECT distinct_id, properties FROM profiles WHERE project_id = %(p)s) AS p
FULL JOIN floor_profiles AS f USING (distinct_id)
"""


def compare(url: str, project_id: int) -> dict[str, Any]:
    """The service's profiles against the floor's: the same ids and the same properties, all of them."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET work_mem = '256MB'")
        found = conn.execute(COMPARE, {"p": project_id}).fetchone()
        assert found is not None
        if found["example"] is not None:
            pair = conn.execute(
                "SELECT (SELECT properties FROM profiles WHERE project_id = %(p)s AND distinct_id = %(d)s)"
                " AS service, (SELECT properties FROM floor_profiles WHERE distinct_id = %(d)s) AS floor",
                {"p": project_id, "d": found["example"]},
            ).fetchone()
            found["example"] = {"distinct_id": found["example"], **(pair or {})}
    same = not found["missing"] and not found["differ"]
    print(
        f"  service and floor hold the same properties for all {found['total']:,} profiles"
        if same
        else f"  MISMATCH between service and floor: {found}",
        flush=True,
    )
    return {**found, "same": same}


# ---- setup, table, main -----------------------------------------------------------------------------------


def create_project(url: str, name: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await projects.create_project(conn, name)

    return asyncio.run(run())


def settle(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def table(results: list[Result], floors: dict[str, Result]) -> list[str]:
    head = ["measurement", "time", "rows/s", "floor (raw Postgres)", "floor rows/s", "rate / floor rate"]
    head += ["peak RSS", "targets", ""]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in results:
        floor = floors.get(r.floor)
        ratio = r.rate / floor.rate if floor else None
        peak = max(r.peak_mb.values()) if r.peak_mb else float("nan")
        ok = r.seconds < TARGET_SECONDS and peak < TARGET_MB
        targets = f"< {TARGET_SECONDS:.0f} s, < {TARGET_MB:.0f} MB"
        if floor and r.details.get("ratio_target", True):
            ok = ok and ratio is not None and ratio >= TARGET_RATIO
            targets += f", >= {TARGET_RATIO} of the floor"
        cells = [
            r.name,
            f"{r.seconds:,.1f} s",
            f"{r.rate:,.0f}",
            f"{floor.seconds:,.1f} s ({floor.name})" if floor else "",
            f"{floor.rate:,.0f}" if floor else "",
            f"{ratio:.2f}" if ratio is not None else "",
            ", ".join(f"{k} {v:,.0f} MB" for k, v in r.peak_mb.items()),
            targets,
            "ok" if ok else "MISSED",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of each CSV file")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help=f"a database on the server to use; the bench creates and drops {BENCH_DB} beside it",
    )
    p.add_argument("--keep-database", action="store_true", help=f"do not drop {BENCH_DB} at the end")
    p.add_argument("--api", action="store_true", help="also the fresh import through the HTTP API")
    p.add_argument("--profile", action="store_true", help="py-spy on the command's fresh and update imports")
    p.add_argument("--profile-out", default="/tmp/import-csv", help="prefix of py-spy's collapsed stacks")
    p.add_argument("--seed", type=int, default=42, help="the data's random seed")
    p.add_argument("--tmp", default=None, help="where the CSV files go (a temporary directory in it)")
    args = p.parse_args()
    if args.rows < 1:
        p.error("--rows must be positive")
    return args


def main() -> None:
    args = parse_args()
    use_database(BENCH_DB)
    url = bench_url(args.database_url)
    machine = machine_facts()
    directory = Path(tempfile.mkdtemp(prefix="profilestore-bench-import-", dir=args.tmp))
    results: list[Result] = []
    floors: dict[str, Result] = {}
    checks: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        fresh, updates = write_files(directory, args.rows, args.seed)
        print(
            f"wrote {args.rows:,} rows x {len(HEADER)} columns twice in {time.perf_counter() - start:.1f} s:"
            f" {fresh} ({fresh.stat().st_size / 2**20:,.1f} MiB), {updates.name}"
            f" ({updates.stat().st_size / 2**20:,.1f} MiB)",
            flush=True,
        )
        create_database(args.database_url)
        try:
            announce_machine(machine, url)
            migrated = subprocess.run(
                [*profilestore_exe(), "migrate"], env=dict(os.environ, DATABASE_URL=url), capture_output=True
            )
            if migrated.returncode != 0:
                raise SystemExit(f"profilestore migrate failed: {migrated.stderr.decode()[-2000:]}")
            project = create_project(url, "bench-import")
            settle(url, "CREATE TABLE floor_profiles (LIKE profiles INCLUDING ALL)")
            token, pid, n = project["token"], project["id"], args.rows
            spy = args.profile_out if args.profile else None
            print(f"\neach phase after a CHECKPOINT; {n:,} rows; the command's time includes its start-up")

            settle(url, "CHECKPOINT")
            results.append(
                run_cli(url, token, fresh, n, "import-csv, fresh file", spy and Path(spy + "-fresh.txt"))
            )
            results[-1].floor = "fresh"
            floors["fresh"] = run_floor(url, pid, fresh, n, "floor, fresh file")
            checks["fresh"] = compare(url, pid)
            settle(url, "VACUUM (ANALYZE) profiles", "VACUUM (ANALYZE) floor_profiles", "CHECKPOINT")
            results.append(
                run_cli(url, token, updates, n, "import-csv, update file", spy and Path(spy + "-update.txt"))
            )
            results[-1].floor = "update"
            floors["update"] = run_floor(url, pid, updates, n, "floor, update file")
            checks["update"] = compare(url, pid)

            settle(url, "VACUUM (ANALYZE) profiles", "CHECKPOINT")
            rerun = run_cli(url, token, updates, n, "import-csv, update file again", None)
            rerun.floor, rerun.details["ratio_target"] = "update", False
            results.append(rerun)

            if args.api:
                settle(url, "TRUNCATE profiles", "CHECKPOINT")
                results.append(run_api(url, project, fresh, n))
        finally:
            if not args.keep_database:
                drop_database(args.database_url)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print()
    for line in table(results, floors):
        print(line)
    print(
        "\nfloor: COPY of the file into a temporary table of text columns, then one INSERT ... SELECT ..."
        " ON CONFLICT into a copy of profiles (the same indexes); the re-run's floor is the update floor"
        " (which writes every row; the re-run writes none)"
    )
    print(
        f"machine: nproc={machine['nproc']}, postgres {machine['postgres'].split(' ', 1)[0]},"
        f" python {machine['python']}, code {machine['code']}; {args.rows:,} rows"
    )
    figures = {
        "machine": machine,
        "config": vars(args),
        "results": [{**r.__dict__, "rate": round(r.rate)} for r in results],
        "floors": {k: {**r.__dict__, "rate": round(r.rate)} for k, r in floors.items()},
        "checks": checks,
    }
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
