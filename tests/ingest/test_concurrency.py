"""Many clients updating the same profiles at once lose nothing and never deadlock.

16 clients each send 200 `$add: {"n": 1}` to one hot profile, inside batches that also add to shared
profiles named in random order (the order that deadlocks naive multi-row upserts) and to random others.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import httpx
import psycopg

from support import LiveServer

CLIENTS = 16
ADDS_PER_CLIENT = 200
PER_REQUEST = 10  # adds to the hot profile per request
SHARED = [f"shared-{i}" for i in range(12)]


def test_concurrent_adds_add_up(
    server: LiveServer, project: dict[str, Any], db: psycopg.Connection[dict[str, Any]]
) -> None:
    token = project["token"]
    expected: Counter[str] = Counter()
    lock = threading.Lock()
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        mine: Counter[str] = Counter()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(ADDS_PER_CLIENT // PER_REQUEST):
                batch: list[dict[str, Any]] = []
                for _ in range(PER_REQUEST):
                    batch.append({"$token": token, "$distinct_id": "hot", "$add": {"n": 1}})
                shared = rng.sample(SHARED, 8)  # a random subset in a random order
                for distinct_id in shared:
                    batch.append({"$token": token, "$distinct_id": distinct_id, "$add": {"n": 1}})
                for _ in range(5):
                    batch.append({"$token": token, "$distinct_id": f"u{rng.randrange(50)}", "$add": {"n": 2}})
                rng.shuffle(batch)
                response = http.post("/engage", params={"verbose": "2"}, json=batch)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                    continue
                for record in batch:
                    mine[record["$distinct_id"]] += record["$add"]["n"]
        with lock:
            expected.update(mine)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures
    assert expected["hot"] == CLIENTS * ADDS_PER_CLIENT
    rows = db.execute(
        "SELECT distinct_id, properties->'n' AS n FROM profiles WHERE project_id = %s", (project["id"],)
    ).fetchall()
    assert {r["distinct_id"]: r["n"] for r in rows} == dict(expected)


def test_one_batch_names_a_profile_many_times(
    client: httpx.Client, project: dict[str, Any], db: psycopg.Connection[dict[str, Any]]
) -> None:
    """Within one request, updates to one distinct_id apply in array order, as if sent one by one."""
    token = project["token"]
    batch = [
        {"$token": token, "$distinct_id": "a", "$set": {"x": 1}},
        {"$token": token, "$distinct_id": "b", "$set": {"x": 1}},
        {"$token": token, "$distinct_id": "a", "$add": {"x": 5}},
        {"$token": token, "$distinct_id": "a", "$append": {"l": "first"}},
        {"$token": token, "$distinct_id": "a", "$append": {"l": "second"}},
        {"$token": token, "$distinct_id": "b", "$unset": ["x"]},
    ]
    assert client.post("/engage", json=batch).text == "1"
    rows = db.execute(
        "SELECT distinct_id, properties FROM profiles WHERE project_id = %s ORDER BY 1", (project["id"],)
    ).fetchall()
    assert [(r["distinct_id"], r["properties"]) for r in rows] == [
        ("a", {"x": 6, "l": ["first", "second"]}),
        ("b", {}),
    ]
