"""Reads that survive the primary: a real hot standby (`pg_basebackup -R` of a primary the test builds with
the machine's Postgres binaries) as READ_DATABASE_URL.  The profile export, the event export and the events
query authenticate on the standby (deps.auth_pool_for) and read there, so they keep answering after the
primary is stopped, for a client seen before and for one never seen; what runs on the primary answers 503.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from profilestore.db import migrate
from profilestore.db.engine import libpq_dsn
from support import LiveServer, free_port, make_settings, new_project

BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BIN / "pg_basebackup").exists(), reason="needs the machine's Postgres 15 binaries"
    ),
]


def as_postgres(*command: str) -> list[str]:
    """Postgres refuses to run as root: as root, run its commands as the system user `postgres`."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def run(*command: str) -> None:
    subprocess.run(as_postgres(*command), check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def primary_and_standby() -> Iterator[tuple[str, str, Path]]:
    """(primary URL, standby URL, primary data directory), both servers on Unix sockets of their own."""
    base = Path(tempfile.mkdtemp(prefix="profilestore-replica-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    primary, standby = base / "primary", base / "standby"
    ports = free_port(), free_port()
    try:
        run(str(BIN / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres")
        options = f"-p {ports[0]} -k {base} -c listen_addresses='' -c wal_level=replica -c max_wal_senders=4"
        run(
            str(BIN / "pg_ctl"),
            "-D",
            str(primary),
            "-o",
            options,
            "-l",
            str(base / "primary.log"),
            "-w",
            "start",
        )
        run(
            str(BIN / "pg_basebackup"), "-h", str(base), "-p", str(ports[0]), "-U", "postgres",
            "-D", str(standby), "-R", "-X", "stream",
        )  # fmt: skip
        options = f"-p {ports[1]} -k {base} -c listen_addresses='' -c hot_standby=on"
        run(
            str(BIN / "pg_ctl"),
            "-D",
            str(standby),
            "-o",
            options,
            "-l",
            str(base / "standby.log"),
            "-w",
            "start",
        )
        urls = tuple(f"postgresql://postgres@/postgres?host={base}&port={port}" for port in ports)
        yield urls[0], urls[1], primary
    finally:
        for data in (standby, primary):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                run(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def replicated(standby_url: str, query: str, params: tuple[Any, ...]) -> None:
    """Waits until the standby has replayed what `query` looks for."""
    deadline = time.monotonic() + 30
    with psycopg.connect(libpq_dsn(standby_url), autocommit=True) as conn:
        while conn.execute(query, params).fetchone() is None:
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.1)


def test_replica_reads_keep_answering_with_the_primary_stopped() -> None:
    with primary_and_standby() as (primary_url, standby_url, primary_dir):
        migrate.upgrade(primary_url)
        seen, unseen = new_project(primary_url), new_project(primary_url)
        day = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        with psycopg.connect(libpq_dsn(primary_url), autocommit=True) as conn:
            conn.execute("SELECT profilestore_ensure_event_partitions(%s, 1)", (day,))
            for project in (seen, unseen):
                conn.execute(
                    "INSERT INTO profiles (project_id, distinct_id, properties)"
                    " VALUES (%s, 'u1', '{\"plan\": \"pro\"}')",
                    (project["id"],),
                )
                conn.execute(
                    "INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties)"
                    " VALUES (%s, 'Bought', 'u1', %s, 'i1', '{}')",
                    (project["id"], day),
                )
            conn.execute("SELECT profilestore_event_days_compact()")
        replicated(standby_url, "SELECT 1 FROM event_days WHERE project_id = %s", (unseen["id"],))

        settings = make_settings(read_database_url=standby_url, db_timeout_seconds=1.0)
        query = {
            "from_date": day.date().isoformat(),
            "to_date": day.date().isoformat(),
            "group_by": [{"type": "event"}],
        }
        export = {"from_date": day.date().isoformat(), "to_date": day.date().isoformat()}
        with (
            LiveServer(primary_url, settings) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):

            def reads(project: dict[str, Any]) -> list[httpx.Response]:
                auth = (project["api_secret"], "")
                return [
                    client.post("/api/events/query", json=query, auth=auth),
                    client.get("/api/2.0/export", params=export, auth=auth),
                    client.get("/api/profiles/export", params={"format": "jsonl"}, auth=auth),
                ]

            before = reads(seen)
            assert [r.status_code for r in before] == [200, 200, 200]
            run(str(BIN / "pg_ctl"), "-D", str(primary_dir), "-m", "fast", "-w", "stop")
            for project in (seen, unseen):  # a secret verified before, and one the standby checks now
                after = reads(project)
                assert [r.status_code for r in after] == [200, 200, 200], [r.text[:200] for r in after]
                assert after[0].json()["results"] == [{"keys": ["Bought"], "count": 1, "unique": 1}]
                assert '"event":"Bought"' in after[1].text.replace(" ", "")
                assert '"$distinct_id":"u1"' in after[2].text.replace(" ", "")
            on_primary = client.post("/api/2.0/engage", data={}, auth=(seen["api_secret"], ""))
            assert on_primary.status_code == 503
            assert client.get("/api/profiles/export", auth=("not-a-secret", "")).status_code == 401
