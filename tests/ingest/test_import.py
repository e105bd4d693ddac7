"""/import end to end (credentials, strict answers, gzip, NDJSON), the Python SDK's `track` and `import_data`,
and the monthly partitions of `events`."""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import time
from typing import Any

import httpx
import psycopg
import pytest
from events_support import event, events_of, seen_of
from mixpanel import BufferedConsumer, Consumer, Mixpanel, MixpanelException

from support import LiveServer

Row = dict[str, Any]
T0 = 1_732_300_000


def batch(n: int = 3, token: str | None = None) -> list[Row]:
    return [
        event(token, "Imported", distinct_id=f"u{i}", time=T0 + i, **{"$insert_id": f"imp-{i}"})
        for i in range(n)
    ]


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


OK3 = {"code": 200, "status": "OK", "num_records_imported": 3}


def test_gzip_ndjson_with_the_secret(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    body = gzip.compress("\n".join(json.dumps(r) for r in batch()).encode())
    headers = {
        **basic(project["api_secret"]),
        "content-type": "application/x-ndjson",
        "content-encoding": "gzip",
    }
    response = client.post("/import", content=body, headers=headers)
    assert (response.status_code, response.json()) == (200, OK3)
    assert [r["insert_id"] for r in events_of(db, project["id"])] == ["imp-0", "imp-1", "imp-2"]


def test_gzip_json_trailing_slash(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    body = gzip.compress(json.dumps(batch()).encode())
    headers = {**basic(project["api_secret"]), "content-type": "application/json", "content-encoding": "gzip"}
    response = client.post("/import/", content=body, headers=headers)
    assert (response.status_code, response.json()) == (200, OK3)
    assert len(events_of(db, project["id"])) == 3


def test_token_as_user_name(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    response = client.post("/import", json=batch(), headers=basic(project["token"]))
    assert (response.status_code, response.json()) == (200, OK3)
    assert len(events_of(db, project["id"])) == 3


def test_service_account_with_project_id(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    headers = basic("sa-user", project["api_secret"])
    response = client.post("/import", params={"project_id": project["id"]}, json=batch(), headers=headers)
    assert (response.status_code, response.json()) == (200, OK3)
    assert len(events_of(db, project["id"])) == 3


def test_legacy_api_key_field(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    response = client.post("/import", data={"data": json.dumps(batch()), "api_key": project["api_secret"]})
    assert (response.status_code, response.json()) == (200, OK3)
    assert len(events_of(db, project["id"])) == 3


@pytest.mark.parametrize(
    "credentials",
    [
        "missing",
        "wrong secret",
        "secret as password without project_id",
        "service account of another project",
    ],
)
def test_bad_credentials(
    credentials: str, client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    params: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if credentials == "wrong secret":
        headers = basic("not-the-secret")
    elif credentials == "secret as password without project_id":
        headers = basic("someone", "not-the-secret")
    elif credentials == "service account of another project":
        headers = basic("sa-user", project["api_secret"])
        params = {"project_id": project["id"] + 1_000_000}
    response = client.post("/import", params=params, json=batch(), headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert (body["code"], body["status"]) == (401, "Unauthorized")
    assert body["error"]
    assert events_of(db, project["id"]) == []


def test_import_requires_time_and_insert_id(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    recs = [
        event(None, distinct_id="u1", time=T0, **{"$insert_id": "ok-1"}),
        event(None, distinct_id="u2", **{"$insert_id": "no-time"}),
        event(None, distinct_id="u3", time=T0),
    ]
    response = client.post("/import", json=recs, headers=basic(project["api_secret"]))
    assert response.status_code == 400
    body = response.json()
    assert body["num_records_imported"] == 1
    assert body["failed_records"] == [
        {
            "index": 1,
            "$insert_id": "no-time",
            "field": "properties.time",
            "message": "is required on /import",
        },
        {
            "index": 2,
            "$insert_id": None,
            "field": "properties.$insert_id",
            "message": "is required on /import",
        },
    ]
    assert [r["insert_id"] for r in events_of(db, project["id"])] == ["ok-1"]


def test_import_non_strict_on_request(client: httpx.Client, project: Row) -> None:
    response = client.post(
        "/import", params={"strict": "0"}, json=batch(), headers=basic(project["api_secret"])
    )
    assert (response.status_code, response.text) == (200, "1")


def test_old_events_land_in_the_default_partition(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    """1980 has no partition: the event is stored (DEFAULT), and creating that month's partition afterwards is
    skipped rather than failing."""
    old = 315_532_800  # 1980-01-01
    recs = [event(None, "Old", distinct_id="u1", time=old + 60, **{"$insert_id": "old-1"})]
    response = client.post("/import", json=recs, headers=basic(project["api_secret"]))
    assert response.status_code == 200, response.text
    assert [r["partition"] for r in events_of(db, project["id"])] == ["events_default"]
    created = db.execute(
        "SELECT profilestore_ensure_event_partitions(to_timestamp(%s), 1) AS n", (old,)
    ).fetchone()
    assert created == {"n": 0}
    assert [r["partition"] for r in events_of(db, project["id"])] == ["events_default"]


def test_partitions_exist_ahead(server: LiveServer, db: psycopg.Connection[Row]) -> None:
    """The migration and the app's start-up made this month's partition and the next three."""
    month = datetime.datetime.now(datetime.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    names = []
    for _ in range(4):
        names.append(f"events_{month:%Y_%m}")
        month = (month + datetime.timedelta(days=32)).replace(day=1)
    deadline = time.monotonic() + 10
    while True:
        rows = db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass"
        ).fetchall()
        if set(names) <= {r["relname"] for r in rows} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(names) <= {r["relname"] for r in rows}
    assert "events_default" in {r["relname"] for r in rows}


def test_current_event_lands_in_its_month(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    now = time.time()
    assert client.post("/track", json=[event(project["token"], distinct_id="u1", time=now)]).text == "1"
    expected = f"events_{datetime.datetime.fromtimestamp(now, datetime.UTC):%Y_%m}"
    assert [r["partition"] for r in events_of(db, project["id"])] == [expected]


# --- the Python SDK -----------------------------------------------------------------------------------------


def sdk(server: LiveServer, token: str, *, buffered: bool = False) -> Mixpanel:
    urls = {"events_url": f"{server.url}/track", "import_url": f"{server.url}/import", "retry_limit": 0}
    consumer: Any = BufferedConsumer(max_size=50, **urls) if buffered else Consumer(**urls)
    return Mixpanel(token, consumer=consumer)


@pytest.mark.parametrize("buffered", [False, True], ids=["Consumer", "BufferedConsumer"])
def test_python_sdk_track_and_import(
    buffered: bool, server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    mp = sdk(server, project["token"], buffered=buffered)
    mp.track("u1", "Viewed", {"page": "/home"})
    mp.track("u1", "Clicked", {"button": "buy"})
    mp.import_data(None, "u2", "Backfilled", T0, {"source": "crm"}, api_secret=project["api_secret"])
    if buffered:
        mp._consumer.flush()
    rows = events_of(db, project["id"])
    assert [(r["event"], r["distinct_id"]) for r in rows] == [
        ("Backfilled", "u2"),
        ("Viewed", "u1"),
        ("Clicked", "u1"),
    ]
    assert rows[0]["time"] == T0
    assert rows[0]["properties"]["source"] == "crm"
    assert "token" not in rows[1]["properties"]
    assert rows[1]["properties"]["mp_lib"] == "python"
    assert set(seen_of(db, project["id"])) == {"u1", "u2"}


def test_python_sdk_retry_is_deduplicated(
    server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """The SDK's own retry resends the same message: same $insert_id and time, one stored event."""
    consumer = Consumer(events_url=f"{server.url}/track", retry_limit=0)
    message = json.dumps(
        event(project["token"], "E", distinct_id="u1", time=T0 + 0.5, **{"$insert_id": "r1"})
    )
    consumer.send("events", message)
    consumer.send("events", message)
    assert len(events_of(db, project["id"])) == 1


def test_python_sdk_import_with_a_wrong_secret_raises(server: LiveServer, project: Row) -> None:
    mp = sdk(server, project["token"])
    with pytest.raises(MixpanelException):
        mp.import_data(None, "u2", "Backfilled", T0, api_secret="wrong")
