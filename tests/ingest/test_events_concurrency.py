"""Concurrent /track and /import requests about the same users, and retries of the same events, lose
nothing, duplicate nothing and never deadlock."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx
import psycopg

from support import LiveServer

CLIENTS = 8
REQUESTS = 8
USERS = [f"user-{i}" for i in range(40)]


def test_concurrent_event_batches(
    server: LiveServer, project: dict[str, Any], db: psycopg.Connection[dict[str, Any]]
) -> None:
    now = int(time.time())
    # Every client sends every event twice (a retry), in its own random order, so clients collide both on
    # users_seen rows and on the dedupe index.
    events = [
        {
            "event": "Viewed",
            "properties": {
                "distinct_id": random.Random(i).choice(USERS),
                "time": now - i,
                "$insert_id": f"ev-{i}",
                "n": i,
            },
        }
        for i in range(400)
    ]
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for r in range(REQUESTS):
                batch = rng.sample(events, 100)
                if r % 2:
                    response = http.post("/import", json=batch, auth=(project["api_secret"], ""))
                else:
                    tracked = [
                        {**e, "properties": {**e["properties"], "token": project["token"]}} for e in batch
                    ]
                    response = http.post("/track", params={"verbose": "2"}, json=tracked)
                if response.status_code != 200 or response.json().get("num_records_imported") != 100:
                    failures.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert failures == []
    rows = db.execute(
        "SELECT insert_id, count(*) AS copies FROM events WHERE project_id = %s GROUP BY 1", (project["id"],)
    ).fetchall()
    assert all(r["copies"] == 1 for r in rows)
    sent = {e["properties"]["$insert_id"] for e in events}
    assert {r["insert_id"] for r in rows} <= sent and len(rows) > 300
    seen = db.execute(
        "SELECT count(*) AS n FROM users_seen WHERE project_id = %s", (project["id"],)
    ).fetchone()
    assert seen["n"] == len(
        {
            e["properties"]["distinct_id"]
            for e in events
            if e["properties"]["$insert_id"] in {r["insert_id"] for r in rows}
        }
    )
    # The daily rollup (event_days, through its pending changes) counted each stored event once, retries
    # included.
    db.execute("SELECT profilestore_event_days_compact()")
    grouped = db.execute(
        "SELECT (time AT TIME ZONE 'UTC')::date AS day, event, distinct_id, count(*) AS events FROM events"
        " WHERE project_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        (project["id"],),
    ).fetchall()
    rollup = db.execute(
        "SELECT r.day, k.name AS event, u.distinct_id, r.events FROM event_days AS r"
        " JOIN event_names AS k ON k.id = r.event_id JOIN event_users AS u ON u.id = r.user_id"
        " WHERE r.project_id = %s ORDER BY 1, 2, 3",
        (project["id"],),
    ).fetchall()
    assert rollup == grouped
