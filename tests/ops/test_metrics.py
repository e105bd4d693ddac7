"""`GET /metrics` (ops/metrics.py): every family the operations docs name, moving as requests come, parsed
with prometheus-client's own parser; the bearer token when one is set; the sum over `--workers 2`."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from served import Served
from support import LiveServer, make_settings

Row = dict[str, Any]
FAMILIES = {
    "profilestore_http_requests",
    "profilestore_http_request_duration_seconds",
    "profilestore_records",
    "profilestore_ingestion_warnings",
    "profilestore_batch_records",
    "profilestore_db_pool_connections",
    "profilestore_idempotent_replays",
}


def samples(client: httpx.Client, **kwargs: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_family_is_there_and_moves(client: httpx.Client, project: Row) -> None:
    client.get("/healthz")  # the HTTP families appear with their first answer
    before = samples(client)
    names = {name for name, _ in before}
    for family in FAMILIES:
        assert any(n.startswith(family) for n in names), family
    token = project["token"]
    batch = [
        {"$token": token, "$distinct_id": "a", "$set": {"plan": "pro", "$last_seen": "x"}},  # a warning
        {"$token": token, "$distinct_id": "b", "$add": {"n": "not a number"}},  # invalid
        {"$token": "no-such-token", "$distinct_id": "c", "$set": {"x": 1}},  # unknown token
    ]
    for _ in range(2):
        client.post("/engage", json=batch, headers={"Idempotency-Key": "m-1"})
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("profilestore_http_requests_total", route="/engage", status="200") == 2
    assert delta("profilestore_http_request_duration_seconds_count", route="/engage") == 2
    assert delta("profilestore_records_total", endpoint="/engage", outcome="accepted") == 1
    assert delta("profilestore_records_total", endpoint="/engage", outcome="rejected_invalid") == 1
    assert delta("profilestore_records_total", endpoint="/engage", outcome="rejected_unknown_token") == 1
    assert delta("profilestore_ingestion_warnings_total", kind="profile") == 1
    assert delta("profilestore_batch_records_count", endpoint="/engage") == 1  # the replay runs nothing
    assert delta("profilestore_batch_records_sum", endpoint="/engage") == 3
    assert delta("profilestore_idempotent_replays_total", endpoint="/engage") == 1
    assert value(after, "profilestore_db_pool_connections", pool="ingest", state="idle") >= 1
    assert delta("profilestore_http_requests_total", route="/metrics", status="200") == 1


def test_the_bearer_token(database_url: str) -> None:
    with (
        LiveServer(database_url, make_settings(metrics_token="s3cret")) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        samples(client, headers={"Authorization": "Bearer s3cret"})


def test_the_workers_add_up(database_url: str) -> None:
    """`serve --workers 2`: /metrics answers for both processes (multiprocess mode), whichever answers."""
    with (
        Served(database_url, PROFILESTORE_WORKERS="2") as served,
        httpx.Client(base_url=served.url) as client,
    ):
        for _ in range(40):  # a new connection each: the kernel spreads them over the two processes
            assert httpx.get(served.url + "/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while True:
            found = samples(client)
            total = value(found, "profilestore_http_requests_total", route="/healthz", status="200")
            if total >= 40 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert total >= 40
