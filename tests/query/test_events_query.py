"""POST /api/events/query over the fixed world of events_world.py: totals vs uniques, breakdowns by event,
event property, profile property and time bucket at day, ISO week and month edges (UTC), filters; errors
and auth.

The figures below were worked out by hand for the small ("Edge") cases and by `events_world.expected` (plain
Python) for all: `test_the_figures_are_the_oracle_s` keeps the two in agreement.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from events_world import FROM, TO, basic, expected, iso_day, load, stored

from support import LiveServer, new_project

Row = dict[str, Any]

# (name, request over FROM..TO unless it says otherwise, [[keys, count, unique], ...] in key order, total)
CASES: list[tuple[str, Row, list[Any], list[int]]] = [
    ("total", {}, [[[], 491, 30]], [491, 30]),
    (
        "by_event",
        {"group_by": [{"type": "event"}]},
        [[["Added"], 161, 30], [["Edge"], 11, 7], [["Purchase"], 158, 30], [["Viewed"], 161, 30]],
        [491, 30],
    ),
    (
        "edge_by_month",
        {"events": ["Edge"], "group_by": [{"type": "time", "unit": "month"}]},
        [[["2025-01-01"], 4, 3], [["2025-02-01"], 4, 3], [["2025-03-01"], 3, 2]],
        [11, 7],
    ),
    (
        "edge_by_week",
        {"events": ["Edge"], "group_by": [{"type": "time", "unit": "week"}]},
        [
            [["2024-12-30"], 2, 2],
            [["2025-01-06"], 1, 1],
            [["2025-01-27"], 3, 2],
            [["2025-02-10"], 1, 1],
            [["2025-02-24"], 3, 2],
            [["2025-03-31"], 1, 1],
        ],
        [11, 7],
    ),
    (
        "edge_by_day",
        {
            "from_date": "2025-01-31",
            "to_date": "2025-02-01",
            "events": ["Edge"],
            "group_by": [{"type": "time", "unit": "day"}],
        },
        [[["2025-01-31"], 1, 1], [["2025-02-01"], 2, 2]],
        [3, 2],
    ),
    (
        "edge_last_day",
        {
            "from_date": "2025-03-31",
            "to_date": "2025-03-31",
            "events": ["Edge"],
            "group_by": [{"type": "user", "name": "plan"}],
        },
        [[[None], 1, 1]],
        [1, 1],
    ),
    (
        "by_month",
        {"group_by": [{"type": "time", "unit": "month"}]},
        [[["2025-01-01"], 169, 30], [["2025-02-01"], 154, 28], [["2025-03-01"], 168, 30]],
        [491, 30],
    ),
    (
        "by_plan",
        {"group_by": [{"type": "user", "name": "plan"}]},
        [[[None], 154, 9], [["free"], 111, 7], [["pro"], 112, 7], [["team"], 114, 7]],
        [491, 30],
    ),
    (
        "by_country_event",
        {
            "events": ["Purchase", "Viewed"],
            "group_by": [{"type": "user", "name": "country"}, {"type": "event"}],
        },
        [
            [[None, "Purchase"], 35, 6],
            [[None, "Viewed"], 35, 6],
            [["DE", "Purchase"], 63, 12],
            [["DE", "Viewed"], 65, 12],
            [["FR", "Purchase"], 60, 12],
            [["FR", "Viewed"], 61, 12],
        ],
        [319, 30],
    ),
    (
        "by_color",
        {"group_by": [{"type": "property", "name": "color"}]},
        [[[None], 131, 19], [["blue"], 120, 10], [["green"], 120, 10], [["red"], 120, 10]],
        [491, 30],
    ),
    (
        "purchase_by_amount",
        {"events": ["Purchase"], "group_by": [{"type": "property", "name": "amount"}]},
        [[[0], 32, 6], [[10], 32, 6], [[20], 31, 6], [[30], 31, 6], [[40], 32, 6]],
        [158, 30],
    ),
    (
        "big_pro_purchases_by_month",
        {
            "events": ["Purchase"],
            "where": 'properties["amount"] >= 30 and user["plan"] == "pro"',
            "group_by": [{"type": "time", "unit": "month"}],
        },
        [[["2025-01-01"], 4, 3], [["2025-02-01"], 5, 3], [["2025-03-01"], 4, 3]],
        [13, 3],
    ),
    (
        "no_plan_by_event",
        {"where": 'not defined(user["plan"])', "group_by": [{"type": "event"}]},
        [[["Added"], 51, 9], [["Edge"], 2, 1], [["Purchase"], 49, 9], [["Viewed"], 52, 9]],
        [154, 9],
    ),
    (
        "de_by_week_feb",
        {
            "from_date": "2025-02-01",
            "to_date": "2025-02-28",
            "where": 'user["country"] == "DE"',
            "group_by": [{"type": "time", "unit": "week"}],
        },
        [
            [["2025-01-27"], 1, 1],
            [["2025-02-03"], 16, 3],
            [["2025-02-10"], 16, 3],
            [["2025-02-17"], 11, 2],
            [["2025-02-24"], 16, 3],
        ],
        [60, 11],
    ),
    (
        "purchases_by_day_first_week",
        {
            "from_date": "2025-01-01",
            "to_date": "2025-01-07",
            "events": ["Purchase"],
            "group_by": [{"type": "time", "unit": "day"}],
        },
        [
            [["2025-01-01"], 1, 1],
            [["2025-01-02"], 1, 1],
            [["2025-01-03"], 3, 1],
            [["2025-01-04"], 2, 1],
            [["2025-01-05"], 1, 1],
            [["2025-01-06"], 2, 1],
            [["2025-01-07"], 2, 1],
        ],
        [12, 7],
    ),
    (
        "event_plan_month",
        {
            "events": ["Added"],
            "group_by": [
                {"type": "event"},
                {"type": "user", "name": "plan"},
                {"type": "time", "unit": "month"},
            ],
        },
        [
            [["Added", None, "2025-01-01"], 16, 8],
            [["Added", None, "2025-02-01"], 18, 9],
            [["Added", None, "2025-03-01"], 17, 9],
            [["Added", "free", "2025-01-01"], 16, 7],
            [["Added", "free", "2025-02-01"], 15, 7],
            [["Added", "free", "2025-03-01"], 16, 7],
            [["Added", "pro", "2025-01-01"], 11, 7],
            [["Added", "pro", "2025-02-01"], 9, 6],
            [["Added", "pro", "2025-03-01"], 11, 7],
            [["Added", "team", "2025-01-01"], 13, 7],
            [["Added", "team", "2025-02-01"], 9, 6],
            [["Added", "team", "2025-03-01"], 10, 7],
        ],
        [161, 30],
    ),
    (
        "one_user",
        {"where": 'properties["distinct_id"] == "u05"', "group_by": [{"type": "event"}]},
        [[["Added"], 4, 1], [["Purchase"], 7, 1], [["Viewed"], 5, 1]],
        [16, 1],
    ),
    (
        "since_march",
        {"where": 'properties["time"] >= 1740787200', "group_by": [{"type": "time", "unit": "month"}]},
        [[["2025-03-01"], 168, 30]],
        [168, 30],
    ),
    (
        "last_seen",
        {
            "where": 'user["$last_seen"] == "2024-12-22T00:00:00"',
            "group_by": [{"type": "user", "name": "$last_seen"}],
        },
        [[["2024-12-22T00:00:00"], 385, 24]],
        [385, 24],
    ),
    (
        "red_by_plan_in_march",
        {
            "from_date": "2025-03-01",
            "to_date": "2025-03-31",
            "where": 'properties["color"] == "red"',
            "group_by": [{"type": "user", "name": "plan"}],
        },
        [[[None], 14, 3], [["pro"], 24, 7]],
        [38, 10],
    ),
    (
        "empty_range",
        {"from_date": "2026-01-01", "to_date": "2026-01-31", "group_by": [{"type": "event"}]},
        [],
        [0, 0],
    ),
    ("unknown_event", {"events": ["Nope"]}, [], [0, 0]),
]


@pytest.fixture(scope="module")
def world(server: LiveServer, database_url: str) -> Iterator[Row]:
    project = new_project(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        load(client, project)
    yield project


def ask(client: httpx.Client, project: Row, body: Row, *, status: int = 200) -> Row:
    response = client.post("/api/events/query", json=body, headers=basic(project["api_secret"]))
    assert response.status_code == status, response.text
    result: Row = response.json()
    return result


@pytest.mark.parametrize("request_", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_the_figures_are_the_oracle_s(request_: Row) -> None:
    case = next(c for c in CASES if c[1] is request_)
    assert expected({"from_date": FROM, "to_date": TO, **request_}) == {"results": case[2], "total": case[3]}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_query(client: httpx.Client, world: Row, case: tuple[str, Row, list[Any], list[int]]) -> None:
    _, request_, results, total = case
    answer = ask(client, world, {"from_date": FROM, "to_date": TO, **request_})
    assert [[g["keys"], g["count"], g["unique"]] for g in answer["results"]] == results
    assert [answer["total"]["count"], answer["total"]["unique"]] == total
    assert answer["truncated"] is False
    assert len(answer["group_by"]) == len(request_.get("group_by", []))


def test_labels_and_limit(client: httpx.Client, world: Row) -> None:
    body = {
        "from_date": FROM,
        "to_date": TO,
        "group_by": [
            {"type": "event"},
            {"type": "property", "name": "color"},
            {"type": "user", "name": "plan"},
            {"type": "time", "unit": "week"},
        ],
        "limit": 3,
    }
    answer = ask(client, world, body)
    assert answer["group_by"] == ["event", "properties.color", "user.plan", "week"]
    assert len(answer["results"]) == 3 and answer["truncated"] is True
    assert answer["total"] == {"count": 491, "unique": 30}  # totals cover every group
    assert answer["results"][0]["keys"][:3] == ["Added", None, None]


def test_bad_requests(client: httpx.Client, world: Row) -> None:
    bad = [
        {"from_date": TO, "to_date": FROM},
        {"from_date": "2025-13-01", "to_date": TO},
        {"to_date": TO},
        {"from_date": FROM, "to_date": TO, "group_by": [{"type": "time", "unit": "year"}]},
        {"from_date": FROM, "to_date": TO, "group_by": [{"type": "colour"}]},
        {"from_date": FROM, "to_date": TO, "limit": 0},
        {"from_date": FROM, "to_date": TO, "unknown": 1},
    ]
    for body in bad:
        assert ask(client, world, body, status=400)["error"] == "ValidationError", body
    answer = ask(client, world, {"from_date": FROM, "to_date": TO, "where": 'properties["a" =='}, status=400)
    assert answer["error"] == "BadRequest" and answer["detail"].startswith("where:")


PRO = {"op": "and", "filters": [{"type": "property", "where": 'properties["plan"] == "pro"'}]}
BUYERS = {
    "op": "and",
    "filters": [
        {
            "type": "event",
            "event": "Purchase",
            "count": {"op": ">=", "value": 6},
            "window": {"from": FROM, "to": TO},
        }
    ],
}


def test_cohort_filter(client: httpx.Client, world: Row) -> None:
    base = {"from_date": FROM, "to_date": TO, "group_by": [{"type": "event"}]}
    # a property cohort selects what the same condition on user[...] selects
    by_cohort = ask(client, world, {**base, "cohort": {"raw_cohort": PRO}})
    by_where = ask(client, world, {**base, "where": 'user["plan"] == "pro"'})
    assert by_cohort == by_where and by_cohort["total"] == {"count": 112, "unique": 7}
    # a behavioural cohort: did Purchase at least 6 times in the range
    purchases = Counter(
        e["distinct_id"]
        for e in stored()
        if e["event"] == "Purchase" and e["distinct_id"] and FROM <= iso_day(e["time"]).isoformat() <= TO
    )
    members = {d for d, n in purchases.items() if n >= 6}
    assert 0 < len(members) < 30
    answer = ask(client, world, {**base, "cohort": {"raw_cohort": BUYERS}})
    want = expected({**base, "where": f'properties["distinct_id"] in {json.dumps(sorted(members))}'})
    assert [[g["keys"], g["count"], g["unique"]] for g in answer["results"]] == want["results"]
    assert answer["total"]["unique"] == len(members)
    # the same cohort saved, by id; with a breakdown by profile property and a where on the profile
    created = client.post(
        "/api/cohorts", json={"name": "buyers", "definition": BUYERS}, headers=basic(world["api_secret"])
    )
    assert created.status_code == 201, created.text
    saved = {"id": created.json()["id"]}
    assert ask(client, world, {**base, "cohort": saved}) == answer
    for extra in ({"group_by": [{"type": "user", "name": "plan"}]}, {"where": 'user["age"] >= 30'}):
        body = {**base, **extra}
        got = ask(client, world, {**body, "cohort": saved})
        members_where = f'properties["distinct_id"] in {json.dumps(sorted(members))}'
        where = f"({body['where']}) and {members_where}" if "where" in body else members_where
        want = expected({**body, "where": where})
        assert [[g["keys"], g["count"], g["unique"]] for g in got["results"]] == want["results"]
    bad = ask(client, world, {**base, "cohort": {"raw_cohort": {"op": "xor"}}}, status=400)
    assert bad["detail"].startswith("cohort:")
    assert ask(client, world, {**base, "cohort": {"id": 999_999}}, status=404)["error"] == "NotFound"


def test_auth(client: httpx.Client, world: Row, database_url: str) -> None:
    body = {"from_date": FROM, "to_date": TO}
    response = client.post("/api/events/query", json=body)
    assert response.status_code == 401 and "www-authenticate" not in response.headers
    response = client.post("/api/events/query", json=body, headers=basic("wrong"))
    assert response.status_code == 401
    other = new_project(database_url)
    response = client.post(
        "/api/events/query", params={"project_id": other["id"]}, json=body, headers=basic(world["api_secret"])
    )
    assert response.status_code == 403
    # another project's secret sees that project's (no) events
    assert ask(client, other, body)["total"] == {"count": 0, "unique": 0}
