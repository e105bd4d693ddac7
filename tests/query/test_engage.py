"""/api/2.0/engage over real HTTP: parameters in every form, the response shape, auth, pagination sessions."""

from __future__ import annotations

import base64
import concurrent.futures
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from support import new_project


def basic(text: str, *, encode: bool = True) -> dict[str, str]:
    value = base64.b64encode(text.encode()).decode() if encode else text
    return {"Authorization": f"Basic {value}"}


def load(client: httpx.Client, token: str, updates: list[dict[str, Any]]) -> None:
    for start in range(0, len(updates), 2000):
        batch = [{"$token": token, **u} for u in updates[start : start + 2000]]
        response = client.post("/engage", params={"verbose": 1}, content=orjson.dumps(batch))
        assert response.json()["status"] == 1, response.text


def people(n: int) -> list[dict[str, Any]]:
    return [
        {
            "$distinct_id": f"u{i:03d}",
            "$set": {"n": i, "plan": "pro" if i % 3 == 0 else "free", "$email": f"u{i}@example.com"},
        }
        for i in range(n)
    ]


def engage(client: httpx.Client, secret: str, **params: Any) -> httpx.Response:
    return client.get("/api/2.0/engage", params=params, headers=basic(f"{secret}:"))


@pytest.fixture
def loaded(client: httpx.Client, project: dict[str, Any]) -> dict[str, Any]:
    load(client, project["token"], people(25))
    return project


def ids(body: dict[str, Any]) -> list[str]:
    return [r["$distinct_id"] for r in body["results"]]


def test_shape_and_last_seen(client: httpx.Client, loaded: dict[str, Any]) -> None:
    response = engage(client, loaded["api_secret"], where='properties["n"] == 3')
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"page", "page_size", "session_id", "status", "total", "results"}
    assert (body["page"], body["page_size"], body["status"], body["total"]) == (0, 1000, "ok", 1)
    [row] = body["results"]
    assert row["$distinct_id"] == "u003"
    props = row["$properties"]
    assert props["n"] == 3 and props["plan"] == "pro"
    assert len(props["$last_seen"]) == 19 and props["$last_seen"][10] == "T"  # YYYY-MM-DDTHH:MM:SS


def test_parameters_from_query_form_and_json_body(client: httpx.Client, loaded: dict[str, Any]) -> None:
    auth = basic(f"{loaded['api_secret']}:")
    where = 'properties["plan"] == "pro"'
    expected = [f"u{i:03d}" for i in range(0, 25, 3)]
    for path in ("/api/2.0/engage", "/api/2.0/engage/", "/api/query/engage", "/api/query/engage/"):
        assert ids(client.get(path, params={"where": where}, headers=auth).json()) == expected
        assert ids(client.post(path, data={"where": where}, headers=auth).json()) == expected
        assert ids(client.post(path, json={"where": where}, headers=auth).json()) == expected
    # selector is where's alias; the body wins over the query string
    assert ids(client.get("/api/2.0/engage", params={"selector": where}, headers=auth).json()) == expected
    body_wins = client.post(
        "/api/2.0/engage", params={"where": 'properties["n"] == 1'}, data={"where": where}, headers=auth
    )
    assert ids(body_wins.json()) == expected


def test_distinct_ids_and_output_properties(client: httpx.Client, loaded: dict[str, Any]) -> None:
    secret = loaded["api_secret"]
    body = engage(client, secret, distinct_ids='["u001", "u004", "nobody"]').json()
    assert ids(body) == ["u001", "u004"] and body["total"] == 2
    assert ids(engage(client, secret, distinct_id="u002").json()) == ["u002"]
    body = engage(client, secret, distinct_id="u002", output_properties='["plan", "$last_seen", "x"]').json()
    assert set(body["results"][0]["$properties"]) == {"plan", "$last_seen"}
    # JSON body: lists may arrive as JSON values
    auth = basic(f"{secret}:")
    body = client.post("/api/2.0/engage", json={"distinct_ids": ["u003"]}, headers=auth).json()
    assert ids(body) == ["u003"]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"distinct_ids": "[u1"}, "distinct_ids"),
        ({"distinct_ids": '{"a": 1}'}, "distinct_ids"),
        ({"distinct_ids": '["a"]', "distinct_id": "b"}, "distinct_id"),
        ({"output_properties": "plan"}, "output_properties"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "10001"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"page": "2"}, "session_id"),
        ({"page": "-1", "session_id": "x"}, "page"),
        ({"where": 'properties["a"] =='}, "where"),
        ({"where": "nosuchfunction(1)"}, "where"),
        ({"sort_order": "sideways"}, "sort_order"),
        ({"include_all_users": "maybe"}, "include_all_users"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: httpx.Client, project: dict[str, Any], params: dict[str, str], names: str
) -> None:
    response = engage(client, project["api_secret"], **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"} and names in body["error"]


FUNCTIONS = (
    "defined, boolean, number, string, datetime, now, floor, ceil, round, length, lower, upper, has_prefix"
)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"where": 'properties["a" =='}, 'where: syntax error at column 16: expected "]"'),
        ({"where": "(" * 70 + "1" + ")" * 70}, "where: nested deeper than 64 levels"),
        (
            {"sort_key": "foo(1)"},
            f"sort_key: at column 1: unknown function 'foo'; expected one of {FUNCTIONS}, has_suffix",
        ),
    ],
)
def test_expression_errors_name_the_parameter_once(
    client: httpx.Client, project: dict[str, Any], params: dict[str, str], message: str
) -> None:
    response = engage(client, project["api_secret"], **params)
    assert (response.status_code, response.json()) == (400, {"error": message})


def test_auth(client: httpx.Client, loaded: dict[str, Any], database_url: str) -> None:
    secret, pid = loaded["api_secret"], loaded["id"]
    url = "/api/2.0/engage"
    assert client.get(url, headers=basic(f"{secret}:")).json()["total"] == 25
    assert client.get(url, headers=basic(f"{secret}:", encode=False)).json()["total"] == 25
    service = client.get(url, params={"project_id": pid}, headers=basic(f"svc:{secret}"))
    assert service.json()["total"] == 25
    for headers in ({}, basic("wrong:"), basic("Zm9v", encode=False)):
        response = client.get(url, headers=headers)
        assert response.status_code == 401
        assert "www-authenticate" not in response.headers  # no browser prompt (issue 10)
        assert set(response.json()) == {"error"}
    other = new_project(database_url)
    forbidden = client.get(url, params={"project_id": other["id"]}, headers=basic(f"svc:{secret}"))
    assert forbidden.status_code == 403 and set(forbidden.json()) == {"error"}
    # another project's secret sees only its own (empty) project
    assert client.get(url, headers=basic(f"{other['api_secret']}:")).json()["total"] == 0


def test_pages_in_any_order_and_concurrently(client: httpx.Client, loaded: dict[str, Any]) -> None:
    secret = loaded["api_secret"]
    first = engage(client, secret, page_size=10).json()
    assert first["total"] == 25 and len(first["results"]) == 10
    sid = first["session_id"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(lambda p: engage(client, secret, session_id=sid, page=p).json(), [3, 2, 1, 0]))
    assert [p["page"] for p in pages] == [3, 2, 1, 0]
    assert all(p["total"] == 25 and p["page_size"] == 10 and p["session_id"] == sid for p in pages)
    assert pages[0]["results"] == []
    seen = ids(pages[3]) + ids(pages[2]) + ids(pages[1])
    assert seen == [f"u{i:03d}" for i in range(25)]
    assert ids(pages[3]) == ids(first)


def test_a_session_pins_its_set_and_order(client: httpx.Client, loaded: dict[str, Any]) -> None:
    secret, token = loaded["api_secret"], loaded["token"]
    first = engage(client, secret, where='properties["plan"] == "pro"', page_size=4).json()
    assert first["total"] == 9
    # afterwards: a new match sorting first, a match that stops matching, a deletion
    load(
        client,
        token,
        [
            {"$distinct_id": "a-new", "$set": {"plan": "pro"}},
            {"$distinct_id": "u006", "$set": {"plan": "free"}},
            {"$distinct_id": "u009", "$delete": ""},
        ],
    )
    sid = first["session_id"]
    later = [engage(client, secret, session_id=sid, page=p).json() for p in (0, 1, 2)]
    assert [p["total"] for p in later] == [9, 9, 9]
    assert ids(first) == ["u000", "u003", "u006", "u009"]
    pinned = ids(later[0]) + ids(later[1]) + ids(later[2])
    # the set of the first request, in its order; u006's row shows its current properties; u009 is gone
    assert pinned == ["u000", "u003", "u006", "u012", "u015", "u018", "u021", "u024"]
    assert later[0]["results"][2]["$properties"]["plan"] == "free"
    fresh = engage(client, secret, where='properties["plan"] == "pro"', page_size=4).json()
    assert fresh["total"] == 8 and ids(fresh)[0] == "a-new"


def test_expired_and_unknown_sessions(
    client: httpx.Client, loaded: dict[str, Any], db: psycopg.Connection[dict[str, Any]], database_url: str
) -> None:
    secret = loaded["api_secret"]
    first = engage(client, secret, page_size=10).json()
    expected = {"error": "session expired; start again without page"}
    unknown = engage(client, secret, session_id="no-such-session", page=1)
    assert (unknown.status_code, unknown.json()) == (400, expected)
    other = new_project(database_url)  # a session is its project's only
    foreign = engage(client, other["api_secret"], session_id=first["session_id"], page=1)
    assert (foreign.status_code, foreign.json()) == (400, expected)
    db.execute(
        "UPDATE query_sessions SET touched_at = now() - interval '2 hours' WHERE id = %s",
        (first["session_id"],),
    )
    expired = engage(client, secret, session_id=first["session_id"], page=1)
    assert (expired.status_code, expired.json()) == (400, expected)


def test_sort_key_and_order(client: httpx.Client, loaded: dict[str, Any]) -> None:
    secret = loaded["api_secret"]
    body = engage(client, secret, sort_key='properties["n"]', sort_order="descending", page_size=3).json()
    assert ids(body) == ["u024", "u023", "u022"]
    body = engage(client, secret, sort_key='properties["n"]', sort_order="ascending", page_size=3).json()
    assert ids(body) == ["u000", "u001", "u002"]


def test_group_profiles(client: httpx.Client, project: dict[str, Any]) -> None:
    groups = [
        {"$token": project["token"], "$group_key": "company", "$group_id": f"c{i}", "$set": {"size": i}}
        for i in range(5)
    ]
    assert client.post("/groups", content=orjson.dumps(groups)).json() == 1
    body = engage(
        client, project["api_secret"], data_group_id="company", where='properties["size"] >= 3'
    ).json()
    assert ids(body) == ["c3", "c4"] and body["results"][0]["$properties"]["size"] == 3
    sid = body["session_id"]
    page = engage(client, project["api_secret"], session_id=sid, page=0).json()
    assert ids(page) == ["c3", "c4"]
    assert engage(client, project["api_secret"], data_group_id="other").json()["total"] == 0
