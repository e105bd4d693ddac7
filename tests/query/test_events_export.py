"""GET/POST /api/2.0/export (Mixpanel raw export) over the fixed world of events_world.py: the lines and their
order, `event`, `where` (event and `user[...]` properties), `limit`, `time_in_ms`, `join_profiles`, gzip,
empty ranges, parameter errors and auth; and Mixpanel's own export tool, mixpanel-utils, reading them.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from events_world import FROM, TO, basic, load, stored, ts
from mixpanel_utils import MixpanelUtils

from support import LiveServer, new_project

Row = dict[str, Any]
IN_RANGE = [e for e in stored() if ts(FROM + "T00:00:00") <= e["time"] < ts("2025-04-01T00:00:00")]
PROFILED = {f"u{i:02d}" for i in range(24)}


@pytest.fixture(scope="module")
def world(server: LiveServer, database_url: str) -> Iterator[Row]:
    project = new_project(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        load(client, project)
    yield project


def export(client: httpx.Client, project: Row, *, status: int = 200, **params: Any) -> httpx.Response:
    params = {"from_date": FROM, "to_date": TO, **params}
    response = client.get("/api/2.0/export", params=params, headers=basic(project["api_secret"]))
    assert response.status_code == status, response.text
    return response


def lines(response: httpx.Response) -> list[Row]:
    return [json.loads(line) for line in response.text.splitlines()]


def shape(events: list[Row], *, ms: bool = False) -> list[Row]:
    """What the export must answer for these stored events."""
    out = []
    for e in events:
        t = math.floor(e["time"] * 1000) if ms else math.floor(e["time"])
        properties = {**e["properties"], "time": t, "distinct_id": e["distinct_id"]}
        out.append({"event": e["event"], "properties": properties})
    return out


def test_every_event_of_the_range_in_time_order(client: httpx.Client, world: Row) -> None:
    response = export(client, world)
    assert response.headers["content-type"].startswith("text/plain")
    got = lines(response)
    assert len(got) == len(IN_RANGE) == 491
    assert got == shape(IN_RANGE)
    times = [g["properties"]["time"] for g in got]
    assert times == sorted(times)
    assert times[0] == ts("2025-01-01T00:00:00") and times[-1] == ts("2025-03-31T23:59:59")
    # the columns' values, whatever the client sent: ISO text and milliseconds become epoch seconds
    by_id = {g["properties"]["$insert_id"]: g for g in got}
    assert by_id["x7"]["properties"]["time"] == ts("2025-03-01T00:00:00")
    assert by_id["x6"]["properties"]["time"] == ts("2025-02-28T23:59:59")
    assert by_id["x10"]["properties"]["distinct_id"] == ""
    assert "token" not in by_id["b1"]["properties"]


def test_time_in_ms(client: httpx.Client, world: Row) -> None:
    got = lines(export(client, world, time_in_ms="true", event='["Edge"]'))
    assert got == shape([e for e in IN_RANGE if e["event"] == "Edge"], ms=True)
    by_id = {g["properties"]["$insert_id"]: g["properties"]["time"] for g in got}
    assert by_id["x6"] == ts("2025-02-28T23:59:59") * 1000 + 500


def test_event_names(client: httpx.Client, world: Row) -> None:
    got = lines(export(client, world, event='["Edge", "Purchase"]'))
    assert got == shape([e for e in IN_RANGE if e["event"] in ("Edge", "Purchase")])
    assert len(got) == 11 + 158
    assert lines(export(client, world, event='["Nope"]')) == []


def test_day_edges(client: httpx.Client, world: Row) -> None:
    got = lines(export(client, world, from_date="2025-02-01", to_date="2025-02-01", event='["Edge"]'))
    assert [g["properties"]["$insert_id"] for g in got] == ["x4", "x5"]
    got = lines(export(client, world, from_date="2024-12-31", to_date="2025-01-01", event='["Edge"]'))
    assert [g["properties"]["$insert_id"] for g in got] == ["x1", "x2"]
    got = lines(export(client, world, from_date="2025-03-31", to_date="2025-04-01", event='["Edge"]'))
    assert [g["properties"]["$insert_id"] for g in got] == ["x8", "x9"]


def test_where_on_event_and_user_properties(client: httpx.Client, world: Row) -> None:
    got = lines(export(client, world, where='properties["amount"] >= 30'))
    assert got == shape([e for e in IN_RANGE if e["properties"].get("amount", -1) >= 30])
    assert len(got) == 63
    pro = {f"u{i:02d}" for i in range(0, 21, 3)}
    got = lines(export(client, world, where='user["plan"] == "pro" and properties["color"] == "red"'))
    want = [e for e in IN_RANGE if e["distinct_id"] in pro and e["properties"].get("color") == "red"]
    assert got == shape(want) and len(want) == 76
    got = lines(export(client, world, where='not defined(user["country"])', event='["Edge"]'))
    assert [g["properties"]["$insert_id"] for g in got] == ["x10", "x8"]  # no user; a user without a profile
    got = lines(
        export(client, world, where='properties["distinct_id"] == "u05" and properties["time"] < 1736000000')
    )
    assert got == shape([e for e in IN_RANGE if e["distinct_id"] == "u05" and e["time"] < 1736000000])


def test_join_profiles(client: httpx.Client, world: Row) -> None:
    got = lines(export(client, world, join_profiles="true"))
    assert [{"event": g["event"], "properties": g["properties"]} for g in got] == shape(IN_RANGE)
    for g in got:
        user = g["user"]
        if g["properties"]["distinct_id"] in PROFILED:
            assert user["$last_seen"] == "2024-12-22T00:00:00"
            assert user["age"] == 20 + int(g["properties"]["distinct_id"][1:])
        else:
            assert user is None
    assert sum(g["user"] is None for g in got) == 491 - 385
    assert "user" not in lines(export(client, world, limit=1))[0]


def test_limit(client: httpx.Client, world: Row) -> None:
    assert lines(export(client, world, limit=5)) == shape(IN_RANGE[:5])
    assert len(lines(export(client, world, limit=100_000))) == 491
    for bad in (0, 100_001, "x"):
        assert export(client, world, status=400, limit=bad).json()["error"].startswith("limit:")


def test_gzip(client: httpx.Client, world: Row) -> None:
    plain = export(client, world).content
    headers = {**basic(world["api_secret"]), "Accept-Encoding": "gzip"}
    params = {"from_date": FROM, "to_date": TO}
    with client.stream("GET", "/api/2.0/export", params=params, headers=headers) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join(response.iter_raw())
    assert gzip.decompress(raw) == plain


def test_empty_ranges(client: httpx.Client, world: Row) -> None:
    for day in ("2025-04-02", "2026-01-01", "1999-01-01"):
        response = export(client, world, from_date=day, to_date=day)
        assert response.content == b""
    headers = {**basic(world["api_secret"]), "Accept-Encoding": "gzip"}
    response = client.get(
        "/api/2.0/export", params={"from_date": "2026-01-01", "to_date": "2026-01-01"}, headers=headers
    )
    assert (response.status_code, response.text) == (200, "")


def test_post_form_and_json(client: httpx.Client, world: Row) -> None:
    want = shape([e for e in IN_RANGE if e["event"] == "Edge"])
    form = {"from_date": FROM, "to_date": TO, "event": '["Edge"]'}
    response = client.post("/api/2.0/export/", data=form, headers=basic(world["api_secret"]))
    assert response.status_code == 200 and lines(response) == want
    body = {"from_date": FROM, "to_date": TO, "event": ["Edge"]}
    response = client.post("/api/2.0/export", json=body, headers=basic(world["api_secret"]))
    assert response.status_code == 200 and lines(response) == want


@pytest.mark.parametrize(
    ("params", "starts"),
    [
        ({"from_date": ""}, "from_date:"),
        ({"to_date": "2025-02-30"}, "to_date:"),
        ({"from_date": "2025-03-01", "to_date": "2025-02-01"}, "to_date:"),
        ({"event": "[Edge"}, "event:"),
        ({"event": '{"a": 1}'}, "event:"),
        ({"where": 'properties["a" =='}, "where:"),
        ({"time_in_ms": "maybe"}, "time_in_ms:"),
    ],
)
def test_bad_parameters(client: httpx.Client, world: Row, params: Row, starts: str) -> None:
    answer = export(client, world, status=400, **params).json()
    assert set(answer) == {"error"} and answer["error"].startswith(starts), answer


def test_missing_dates(client: httpx.Client, world: Row) -> None:
    response = client.get("/api/2.0/export", params={"to_date": TO}, headers=basic(world["api_secret"]))
    assert response.status_code == 400 and response.json()["error"].startswith("from_date:")


def test_auth(client: httpx.Client, world: Row, database_url: str) -> None:
    params = {"from_date": FROM, "to_date": TO}
    response = client.get("/api/2.0/export", params=params)
    assert response.status_code == 401 and "www-authenticate" not in response.headers
    assert set(response.json()) == {"error"}
    assert client.get("/api/2.0/export", params=params, headers=basic("nope")).status_code == 401
    other = new_project(database_url)
    response = client.get(
        "/api/2.0/export", params={**params, "project_id": other["id"]}, headers=basic(world["api_secret"])
    )
    assert response.status_code == 403
    response = client.get("/api/2.0/export", params=params, headers=basic(other["api_secret"]))
    assert (response.status_code, response.content) == (200, b"")


# --- mixpanel-utils -----------------------------------------------------------------------------------------


def tool(server: LiveServer, project: Row, *, service_account: bool = False) -> MixpanelUtils:
    """MixpanelUtils with its raw-export host (`raw_api`, data.mixpanel.com/api) pointed at the server: it
    then asks `GET <server>/api/2.0/export?from_date=...&to_date=...` as it asks Mixpanel."""
    if service_account:
        mp = MixpanelUtils(
            project["api_secret"],
            service_account_username="profilestore-test.sa",
            project_id=project["id"],
            timeout=60,
            max_retries=1,
        )
    else:
        mp = MixpanelUtils(project["api_secret"], timeout=60, max_retries=1)
    mp.raw_api = f"{server.url}/api"
    return mp


@pytest.mark.parametrize("service_account", [False, True], ids=["api-secret", "service-account"])
@pytest.mark.parametrize("add_gzip_header", [False, True], ids=["plain", "gzip"])
def test_mixpanel_utils_query_export(
    server: LiveServer, world: Row, service_account: bool, add_gzip_header: bool
) -> None:
    mp = tool(server, world, service_account=service_account)
    events = mp.query_export({"from_date": FROM, "to_date": TO}, add_gzip_header=add_gzip_header)
    assert events == shape(IN_RANGE)
    edges = mp.query_export(
        {
            "from_date": FROM,
            "to_date": TO,
            "event": json.dumps(["Edge"]),
            "where": 'properties["distinct_id"] == "u02"',
        }
    )
    assert [e["properties"]["$insert_id"] for e in edges] == ["x3", "x4"]


def test_mixpanel_utils_export_events(server: LiveServer, world: Row, tmp_path: Path) -> None:
    mp = tool(server, world)
    out = tmp_path / "events.json"
    mp.export_events(str(out), {"from_date": FROM, "to_date": TO}, request_per_day=False)
    assert json.loads(out.read_text()) == shape(IN_RANGE)
    # one request (and file) per day, as the tool can do
    mp.export_events(
        str(tmp_path / "day.json"),
        {"from_date": "2025-02-01", "to_date": "2025-02-02", "event": '["Edge"]'},
        request_per_day=True,
    )
    assert [
        e["properties"]["$insert_id"] for e in json.loads((tmp_path / "day_2025-02-01.json").read_text())
    ] == ["x4", "x5"]
    assert json.loads((tmp_path / "day_2025-02-02.json").read_text()) == []
    # raw streaming to a file, gzip-encoded on the wire
    mp.export_events(
        str(tmp_path / "raw.json"), {"from_date": FROM, "to_date": TO}, add_gzip_header=True, raw_stream=True
    )
    raw = gzip.decompress((tmp_path / "raw.json.gz").read_bytes()).decode()
    assert [json.loads(line) for line in raw.splitlines()] == shape(IN_RANGE)
