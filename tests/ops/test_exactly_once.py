"""Exactly once through crashes and restarts: 8 writers send 100,000 profile updates (`$add` counters and
`$append` of unique tokens over 1,000 hot profiles), each request with its own Idempotency-Key, retrying every
request that did not get a 200 (as the SDKs' retrying consumers do), while the test kills the server with
SIGKILL three times, stops it once with SIGTERM (a rolling restart: every request it took in is answered
before it exits, within its grace), starting a new one each time, and
restarts Postgres (an embedded cluster the test owns) once.  At the end every update is in the profiles
exactly once: the counters add up, no token is missing or doubled.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from profilestore.db.engine import connect
from served import Served
from support import OwnedPostgres, new_project, owned_postgres

Row = dict[str, Any]
WRITERS = 8
UPDATES = 100_000
PER_REQUEST = 50
PROFILES = 1_000
GRACE_SECONDS = 10


class Fleet:
    """The server now running (a new one after each stop), and what the writers saw."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.env = {"PROFILESTORE_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}
        self.server = Served(database_url, **self.env).__enter__()
        self.lock = threading.Lock()
        self.sent = 0  # requests answered 200
        self.retries = 0
        self.replays = 0
        self.unexpected: list[str] = []

    @property
    def url(self) -> str:
        with self.lock:
            return self.server.url

    def restart(self, how: signal.Signals) -> float:
        """Stops the server (SIGKILL or SIGTERM to its process group), starts a new one; returns how long the
        old one took to exit."""
        old = self.server
        began = time.monotonic()
        os.killpg(old.proc.pid, how)
        old.proc.wait(GRACE_SECONDS + 20)
        exited = time.monotonic() - began
        if how == signal.SIGTERM:
            # Every request the stopped server took in was answered before it exited: its request log has no
            # request left without an answer (499) and no failure (500).
            lines = [orjson.loads(line) for line in old.log_lines() if line.startswith("{")]
            statuses = {line["status"] for line in lines if line.get("message") == "request"}
            assert statuses and statuses <= {200, 409, 429, 503}, statuses
        new = Served(self.database_url, **self.env).__enter__()
        with self.lock:
            self.server = new
        old.__exit__(None, None, None)
        return exited


def writer(fleet: Fleet, project: Row, number: int, requests: list[list[Row]]) -> None:
    with httpx.Client(timeout=30) as client:
        for r, batch in enumerate(requests):
            key = f"w{number}-r{r}"
            while True:
                try:
                    response = client.post(
                        fleet.url + "/engage", json=batch, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    status = 0  # the server went away: the request may or may not have been applied
                else:
                    status = response.status_code
                if status == 200:
                    with fleet.lock:
                        fleet.sent += 1
                        fleet.replays += response.headers.get("idempotent-replayed") == "true"
                    break
                if status not in (0, 409, 429, 503):
                    with fleet.lock:
                        fleet.unexpected.append(f"{status} {response.text[:200]}")
                    return
                with fleet.lock:
                    fleet.retries += 1
                time.sleep(0.05)


@pytest.mark.slow
def test_every_update_exactly_once_through_kills_and_restarts() -> None:
    with owned_postgres("profilestore-exactly-once-") as pg:
        run(pg)


def run(pg: OwnedPostgres) -> None:
    database_url = pg.url
    project = new_project(database_url)
    rng = random.Random(5)
    updates = [
        {
            "$token": project["token"],
            "$distinct_id": f"hot-{rng.randrange(PROFILES)}",
            "$add": {"n": 1},
            "$append": {"tokens": f"t{i}"},
        }
        for i in range(UPDATES)
    ]
    batches = [updates[i : i + PER_REQUEST] for i in range(0, UPDATES, PER_REQUEST)]
    per_writer = [batches[w::WRITERS] for w in range(WRITERS)]
    fleet = Fleet(database_url)
    threads = [
        threading.Thread(target=writer, args=(fleet, project, w, per_writer[w])) for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    exits: dict[str, float] = {}
    try:
        steps = (signal.SIGKILL, signal.SIGKILL, "postgres", signal.SIGTERM, signal.SIGKILL)
        for n, how in enumerate(steps):
            target = len(batches) * (n + 1) // (len(steps) + 1)
            deadline = time.monotonic() + 120
            while fleet.sent < target and time.monotonic() < deadline and any(t.is_alive() for t in threads):
                time.sleep(0.05)
            if how == "postgres":
                pg.stop()
                time.sleep(1.0)
                pg.start()
                continue
            assert isinstance(how, signal.Signals)
            exits[f"{how.name} {n}"] = fleet.restart(how)
        for t in threads:
            t.join(300)
    finally:
        fleet.server.__exit__(None, None, None)
    assert fleet.unexpected == []
    assert fleet.sent == len(batches)
    assert exits[f"{signal.SIGTERM.name} 3"] < GRACE_SECONDS + 5  # a graceful stop ends within its grace
    tokens = (
        "FROM profiles AS q, jsonb_array_elements_text(q.properties -> 'tokens') AS t"
        " WHERE q.project_id = %(p)s"
    )
    with connect(database_url) as db:
        row = db.execute(
            "SELECT coalesce(sum((properties ->> 'n')::int), 0) AS n,"
            f" (SELECT count(*) {tokens}) AS tokens, (SELECT count(DISTINCT t) {tokens}) AS distinct_tokens"
            " FROM profiles WHERE project_id = %(p)s",
            {"p": project["id"]},
        ).fetchone()
    assert row == {"n": UPDATES, "tokens": UPDATES, "distinct_tokens": UPDATES}
    seen = f"{fleet.retries} retries, {fleet.replays} replays"
    print(f"\nexactly once: {UPDATES:,} updates, {seen}; seconds to exit {exits}")
