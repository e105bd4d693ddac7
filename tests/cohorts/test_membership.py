"""Cohort membership on the fixed world (world.py): each expectation is derived by hand from the world's
rules, not from the events; both SQL forms (property filters inline and as subqueries) must agree."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from cohort_support import load_world, members_by_subquery, members_of, with_conn
from cohort_world import DAY, EVERYONE, NOW, PROFILED, events, logins_since, profiles, u

from profilestore.cohorts.schemas import CohortCreate
from profilestore.cohorts.service import create_cohort
from support import new_project

Row = dict[str, Any]
T = NOW.timestamp()
PROFILE_IDS = {u(i) for i in PROFILED} | {"n30", "n31"}


def ids(*numbers: int) -> set[str]:
    return {u(i) for i in numbers}


def where(text: str, negate: bool = False) -> dict[str, Any]:
    return {"type": "property", "where": text, "negate": negate}


def did(event: str, op: str = ">=", value: int = 1, **extra: Any) -> dict[str, Any]:
    return {"type": "event", "event": event, "count": {"op": op, "value": value}, **extra}


def group(op: str, *filters: dict[str, Any], negate: bool = False) -> dict[str, Any]:
    return {"op": op, "filters": list(filters), "negate": negate}


LAST30 = {"last": 30, "unit": "day"}
PRO = where('properties["plan"] == "pro"')
PRO_IDS = {u(i) for i in PROFILED if i % 3 == 0} | {"n30"}
BUYS30 = {i: i % 5 for i in range(30)}  # purchases in the last 30 days
EVER_BOUGHT = {u(i) for i in range(30) if i % 5 or i % 2 == 0}
NO_EVENTS = {"n30", "n31"}


@pytest.fixture(scope="module")
def world(database_url: str, db: psycopg.Connection[Row]) -> dict[str, Any]:
    project = new_project(database_url)
    pid = project["id"]
    load_world(db, pid, profiles(), events())

    async def saved(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
        async def make(body: dict[str, Any]) -> int:
            return (await create_cohort(conn, pid, CohortCreate(**body))).id

        a = await make({"name": "pro", "definition": group("and", PRO)})
        b = await make(
            {
                "name": "pro and active",
                "definition": group("and", {"type": "cohort", "id": a}, did("Login", ">=", 8, window=LAST30)),
            }
        )
        c = await make(
            {
                "name": "not b, us",
                "definition": group(
                    "and", {"type": "cohort", "id": b, "negate": True}, where('properties["country"] == "US"')
                ),
            }
        )
        s = await make({"name": "static", "distinct_ids": ["u01", "u02", "u25", "nobody"]})
        return {"a": a, "b": b, "c": c, "s": s}

    return {"project_id": pid, **with_conn(database_url, saved)}


def members(database_url: str, world: dict[str, Any], spec: Any, *, all_users: bool = True) -> set[str]:
    pid = world["project_id"]

    async def work(conn: psycopg.AsyncConnection[Any]) -> set[str]:
        found = await members_of(conn, pid, spec, now=T, all_users=all_users)
        if all_users:
            assert found == await members_by_subquery(conn, pid, spec, now=T)
        return found

    return with_conn(database_url, work)


def raw(definition: dict[str, Any]) -> dict[str, Any]:
    return {"raw_cohort": definition}


def login_ids(op: str, value: int, start: dt.datetime) -> set[str]:
    counts = {u(i): logins_since(i, start) for i in range(30)} | {"n30": 0, "n31": 0}
    check = {">=": lambda c: c >= value, "<=": lambda c: c <= value, "==": lambda c: c == value}[op]
    return {d for d, c in counts.items() if check(c)}


EDGE_ANY = ids(*range(1, 12))
CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("property ==", group("and", PRO), PRO_IDS),
    ("property >=", group("and", where('properties["age"] >= 40')), ids(20, 21, 22, 23, 24) | {"n30", "n31"}),
    (
        "property negated: no profile passes",
        group("and", where('properties["plan"] == "pro"', True)),
        EVERYONE - PRO_IDS,
    ),
    ("property defined", group("and", where('defined(properties["vip"])')), ids(0, 5, 10)),
    ("did, all time", group("and", did("Purchase")), EVER_BOUGHT),
    (
        ">= 3 in 30 days",
        group("and", did("Purchase", ">=", 3, window=LAST30)),
        {u(i) for i, n in BUYS30.items() if n >= 3},
    ),
    (
        "<= 1 in 30 days, with no events",
        group("and", did("Purchase", "<=", 1, window=LAST30)),
        {u(i) for i, n in BUYS30.items() if n <= 1} | NO_EVENTS,
    ),
    (
        "== 2 in 30 days",
        group("and", did("Purchase", "==", 2, window=LAST30)),
        {u(i) for i, n in BUYS30.items() if n == 2},
    ),
    (
        "== 0 in 30 days",
        group("and", did("Purchase", "==", 0, window=LAST30)),
        {u(i) for i, n in BUYS30.items() if n == 0} | NO_EVENTS,
    ),
    ("== 0 ever", group("and", did("Purchase", "==", 0)), ids(5, 15, 25) | NO_EVENTS),
    (">= 0 is everyone", group("and", did("Purchase", ">=", 0)), EVERYONE),
    (
        "event where",
        group("and", did("Purchase", where='properties["amount"] >= 30', window=LAST30)),
        {u(i) for i, n in BUYS30.items() if n >= 3},
    ),
    (
        "event where, all time",
        group("and", did("Purchase", where='properties["amount"] == 100')),
        {u(i) for i in range(0, 30, 2)},
    ),
    (
        "event where reaching the profile",
        group("and", did("Purchase", where='user["plan"] == "pro"')),
        EVER_BOUGHT & PRO_IDS,
    ),
    (
        "login >= 8, 30 days",
        group("and", did("Login", ">=", 8, window=LAST30)),
        login_ids(">=", 8, NOW - 30 * DAY),
    ),
    (
        "login >= 3, 2 weeks",
        group("and", did("Login", ">=", 3, window={"last": 2, "unit": "week"})),
        login_ids(">=", 3, NOW - 14 * DAY),
    ),
    (
        "login <= 5, 1 month",
        group("and", did("Login", "<=", 5, window={"last": 1, "unit": "month"})),
        login_ids("<=", 5, dt.datetime(2026, 5, 15, 12, tzinfo=dt.UTC)),
    ),
    (
        "from/to",
        group("and", did("Signup", window={"from": "2026-03-20", "to": "2026-03-25"})),
        ids(2, 3, 4, 5, 6, 7),
    ),
    ("edge: last 30 days", group("and", did("Edge", window=LAST30)), ids(1, 5, 6, 10, 11)),
    (
        "edge: from/to inclusive days",
        group("and", did("Edge", window={"from": "2026-05-01", "to": "2026-05-31"})),
        ids(1, 2, 3, 5, 7, 8),
    ),
    (
        "edge: last month",
        group("and", did("Edge", window={"last": 1, "unit": "month"})),
        ids(1, 2, 5, 6, 7, 10, 11),
    ),
    ("edge: last 2 weeks", group("and", did("Edge", window={"last": 2, "unit": "week"})), ids(10)),
    ("edge: all time, future included", group("and", did("Edge")), EDGE_ANY),
    ("and", group("and", PRO, did("Purchase", ">=", 3, window=LAST30)), ids(3, 9, 18, 24)),
    (
        "or",
        group("or", where('properties["vip"] == true'), did("Purchase", "==", 2, window=LAST30)),
        ids(0, 5, 10) | {u(i) for i, n in BUYS30.items() if n == 2},
    ),
    (
        "nested",
        group(
            "and",
            where('properties["country"] == "US"'),
            group("or", did("Purchase", ">=", 3, window=LAST30), where('properties["age"] < 23')),
        ),
        ids(0, 4, 8, 24),  # US: 0 4 8 12 16 20 24; bought >= 3: i % 5 >= 3; age < 23: 0 1 2
    ),
    (
        "negated group",
        group("and", group("or", PRO, did("Purchase"), negate=True)),
        (EVERYONE - PRO_IDS) - EVER_BOUGHT,
    ),
    ("empty and: everyone", group("and"), EVERYONE),
    ("empty or: nobody", group("or"), set()),
    ("negated root", group("or", PRO, negate=True), EVERYONE - PRO_IDS),
]


@pytest.mark.parametrize(("definition", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_definition(
    database_url: str, world: dict[str, Any], definition: dict[str, Any], expected: set[str]
) -> None:
    assert members(database_url, world, raw(definition)) == expected


def test_include_all_users_false_keeps_only_profiles(database_url: str, world: dict[str, Any]) -> None:
    definition = group("and", did("Purchase", "==", 0, window=LAST30))
    found = members(database_url, world, raw(definition), all_users=False)
    assert found == ({u(i) for i, n in BUYS30.items() if n == 0} | NO_EVENTS) & PROFILE_IDS


def test_saved_cohort_references(database_url: str, world: dict[str, Any]) -> None:
    active = login_ids(">=", 8, NOW - 30 * DAY)
    b_ids = PRO_IDS & active
    us = {u(i) for i in PROFILED if i % 4 == 0} | {"n30"}
    assert members(database_url, world, {"id": world["a"]}) == PRO_IDS
    assert members(database_url, world, world["b"]) == b_ids
    assert members(database_url, world, {"id": world["c"]}) == us - b_ids  # cohort in cohort in cohort
    referenced = group(
        "and", {"type": "cohort", "id": world["a"], "negate": True}, did("Purchase", ">=", 4, window=LAST30)
    )
    assert (
        members(database_url, world, raw(referenced)) == {u(i) for i, n in BUYS30.items() if n >= 4} - PRO_IDS
    )


def test_static_cohort(database_url: str, world: dict[str, Any]) -> None:
    assert members(database_url, world, {"id": world["s"]}) == ids(1, 2, 25)  # "nobody" is no user
    assert members(database_url, world, {"id": world["s"]}, all_users=False) == ids(1, 2)
    mixed = group("or", {"type": "cohort", "id": world["s"]}, where('properties["age"] == 30'))
    assert members(database_url, world, raw(mixed)) == ids(1, 2, 10, 25)


def test_legacy_web_form(database_url: str, world: dict[str, Any]) -> None:
    legacy = {
        "selector": {
            "operator": "and",
            "children": [
                {"property": "behaviors", "value": "bhvr_0", "operator": ">", "operand": 2},
                {"property": "user", "value": "plan", "operator": "==", "operand": "pro", "type": "string"},
            ],
        },
        "behaviors": {
            "bhvr_0": {
                "count": {"event_selector": {"event": "Purchase", "selector": None}, "type": "absolute"},
                "window": {"unit": "day", "value": 30},
            }
        },
    }
    assert members(database_url, world, raw(legacy)) == ids(3, 9, 18, 24)
    legacy["selector"] = {
        "operator": "or",
        "children": [
            {"property": "behaviors", "value": "bhvr_0", "operator": "==", "operand": 0},
            {"property": "cohort", "value": world["a"], "operator": "in"},
        ],
    }
    legacy["behaviors"]["bhvr_0"]["count"]["event_selector"]["selector"] = {
        "operator": "and",
        "children": [{"property": "event", "value": "amount", "operator": ">=", "operand": 30}],
    }
    expected = {u(i) for i, n in BUYS30.items() if n < 3} | NO_EVENTS | PRO_IDS
    assert members(database_url, world, raw(legacy)) == expected


def test_legacy_engage_form(database_url: str, world: dict[str, Any]) -> None:
    legacy = {
        "selector": 'behaviors["bought"] >= 3 and not behaviors["signed"] and properties["plan"] == "pro"',
        "behaviors": [
            {"name": "bought", "window": "30d", "event_selectors": [{"event": "Purchase"}]},
            {
                "name": "signed",
                "window": {"from_date": "2026-03-18", "to_date": "2026-03-30"},
                "event_selectors": [{"event": "Signup", "selector": None}],
            },
        ],
    }
    # Signups of u00..u12 fall in 2026-03-18..30
    assert members(database_url, world, raw(legacy)) == ids(18, 24)
