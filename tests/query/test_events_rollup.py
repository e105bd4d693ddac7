"""The daily rollup `event_days` (query/events/rollup.py, db/sql/0011_event_days.sql): once compacted it
equals the events grouped by (project, UTC day, event, distinct_id), whoever writes them, and the events
query answers the same from it as from the events themselves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
from typing import Any

import httpx
import psycopg
import pytest

from profilestore.db.engine import libpq_dsn, make_pool
from profilestore.query.events import query as events_query
from profilestore.query.events.query import EventsQueryRequest, query_events
from profilestore.settings import Settings
from support import LiveServer, new_project

Row = dict[str, Any]
DAY0 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)

ROLLUP = (
    "SELECT r.day, k.name AS event, coalesce(u.distinct_id, '') AS distinct_id, r.events FROM event_days AS r"
    " JOIN event_names AS k ON k.id = r.event_id LEFT JOIN event_users AS u ON u.id = r.user_id"
    " WHERE r.project_id = %(p)s ORDER BY 1, 2, 3"
)
GROUPED = (
    "SELECT (time AT TIME ZONE 'UTC')::date AS day, event, distinct_id, count(*) AS events FROM events"
    " WHERE project_id = %(p)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)


def assert_rollup_exact(db: psycopg.Connection[Row], project_id: int) -> list[Row]:
    db.execute("SELECT profilestore_event_days_compact()")
    pending = "SELECT count(*) AS n FROM event_days_pending WHERE project_id = %s"
    assert db.execute(pending, (project_id,)).fetchone() == {"n": 0}
    rollup = db.execute(ROLLUP, {"p": project_id}).fetchall()
    assert rollup == db.execute(GROUPED, {"p": project_id}).fetchall()
    return rollup


def imported(project: Row, name: str, user: str, when: dt.datetime, insert_id: str) -> Row:
    return {
        "event": name,
        "properties": {"distinct_id": user, "time": int(when.timestamp() * 1000), "$insert_id": insert_id},
    }


def test_retries_day_edges_and_users_without_an_id(client: httpx.Client, project: Row, db: Any) -> None:
    midnight = DAY0 + dt.timedelta(days=1)
    batch = [
        imported(project, "Viewed", "u1", midnight - dt.timedelta(milliseconds=1), "a"),
        imported(project, "Viewed", "u1", midnight, "b"),
        imported(project, "Viewed", "u1", midnight + dt.timedelta(hours=3), "c"),
        imported(project, "Viewed", "", midnight, "d"),
        imported(project, "Viewed", "", midnight, "e"),
        imported(project, "Purchase", "u2", midnight, "f"),
    ]
    auth = (project["api_secret"], "")
    assert client.post("/import", json=batch, auth=auth).status_code == 200
    assert client.post("/import", json=batch[:3], auth=auth).status_code == 200  # a retry: no new events
    rollup = assert_rollup_exact(db, project["id"])
    assert [(str(r["day"]), r["event"], r["distinct_id"], r["events"]) for r in rollup] == [
        ("2025-06-01", "Viewed", "u1", 1),
        ("2025-06-02", "Purchase", "u2", 1),
        ("2025-06-02", "Viewed", "", 2),
        ("2025-06-02", "Viewed", "u1", 2),
    ]


def test_updates_and_deletes_by_sql_keep_it_exact(client: httpx.Client, project: Row, db: Any) -> None:
    rng = random.Random(7)
    batch = [
        imported(
            project,
            rng.choice(["A", "B"]),
            rng.choice(["u1", "u2", "u3", ""]),
            DAY0 + dt.timedelta(seconds=rng.randrange(5 * 86400)),
            f"i{n}",
        )
        for n in range(300)
    ]
    assert client.post("/import", json=batch, auth=(project["api_secret"], "")).status_code == 200
    assert_rollup_exact(db, project["id"])
    p = {"p": project["id"]}
    db.execute("UPDATE events SET distinct_id = 'u9' WHERE project_id = %(p)s AND distinct_id = 'u1'", p)
    db.execute("UPDATE events SET time = time + interval '1 day' WHERE project_id = %(p)s AND event = 'A'", p)
    db.execute("UPDATE events SET properties = '{}' WHERE project_id = %(p)s", p)  # no key changes
    assert_rollup_exact(db, project["id"])
    db.execute("DELETE FROM events WHERE project_id = %(p)s AND distinct_id IN ('u2', '')", p)
    rollup = assert_rollup_exact(db, project["id"])
    assert {r["distinct_id"] for r in rollup} == {"u3", "u9"}
    db.execute("DELETE FROM events WHERE project_id = %(p)s", p)
    assert assert_rollup_exact(db, project["id"]) == []


def test_concurrent_writers_about_one_user_and_day(server: LiveServer, project: Row, db: Any) -> None:
    """Many requests counting into the same few rollup rows at once: nothing lost, no deadlock."""
    failures: list[str] = []

    def writer(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for r in range(10):
                batch = [
                    {
                        "event": ["Viewed", "Added"][(k + i) % 2],
                        "properties": {
                            "token": project["token"],
                            "distinct_id": ["u1", "u2"][i % 2],
                            "time": int(DAY0.timestamp()) + k * 1000 + r * 50 + i,
                            "$insert_id": f"{k}-{r}-{i}",
                        },
                    }
                    for i in range(20)
                ]
                response = http.post("/track", params={"verbose": "1"}, json=batch)
                if response.status_code != 200 or response.json().get("status") != 1:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    rollup = assert_rollup_exact(db, project["id"])
    assert sum(r["events"] for r in rollup) == 8 * 10 * 20


N_OVER_2 = 'properties["n"] > 2'
# Questions the rollup answers (nothing of the event read but its name, day and user).
NARROW: list[Row] = [
    {},
    {"group_by": [{"type": "event"}]},
    {"group_by": [{"type": "time", "unit": "day"}, {"type": "event"}]},
    {"group_by": [{"type": "event"}, {"type": "time", "unit": "week"}]},
    {"group_by": [{"type": "time", "unit": "month"}]},
    {"group_by": [{"type": "time", "unit": "day"}, {"type": "user", "name": "plan"}]},
    {"group_by": [{"type": "user", "name": "plan"}, {"type": "event"}], "events": ["B", "C"]},
    {
        "group_by": [
            {"type": "user", "name": "plan"},
            {"type": "time", "unit": "day"},
            {"type": "user", "name": "n"},
            {"type": "event"},
        ],
        "where": 'user["n"] != 3',
    },
    {"where": 'user["plan"] == "pro"', "group_by": [{"type": "time", "unit": "day"}]},
    {"where": 'not defined(user["plan"])'},
    {
        "cohort": {
            "raw_cohort": {"op": "and", "filters": [{"type": "property", "where": 'properties["n"] > 2'}]}
        },
        "group_by": [{"type": "event"}, {"type": "time", "unit": "day"}],
    },
    {"group_by": [{"type": "event"}], "limit": 2},
]


@pytest.fixture(scope="module")
def world(database_url: str) -> Row:
    project = new_project(database_url)
    rng = random.Random(11)
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO profiles (project_id, distinct_id, properties)"
            " SELECT %s, 'u' || g, jsonb_build_object('plan', (ARRAY['pro', 'free'])[1 + g %% 2],"
            " 'n', g %% 5) FROM generate_series(0, 29) AS g",
            (project["id"],),
        )
        rows = [
            (
                project["id"],
                rng.choice("ABCD"),
                rng.choice([f"u{i}" for i in range(40)] + [""]),
                DAY0 + dt.timedelta(seconds=rng.randrange(70 * 86400)),
                f"i{n}",
            )
            for n in range(3000)
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties)"
                " VALUES (%s, %s, %s, %s, %s, '{}')",
                rows,
            )
    return project


@pytest.mark.parametrize("question", NARROW, ids=[str(i) for i in range(len(NARROW))])
def test_the_rollup_answers_as_the_events_do(
    question: Row, world: Row, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = EventsQueryRequest.model_validate(
        {"from_date": "2025-06-03", "to_date": "2025-07-28", **question}
    )
    assert events_query.narrow(request, events_query.where_param("where", request.where))

    async def ask(*, second_connection: bool = False) -> Any:
        settings = Settings()
        pool = make_pool(database_url, settings, min_size=2, max_size=2)
        await pool.open(wait=True)
        given_back = pool.putconn

        async def putconn(conn: Any) -> None:  # every connection given back: the query's, and a second one
            given.append(conn)
            await given_back(conn)

        if second_connection:
            pool.putconn = putconn  # type: ignore[method-assign]
        try:
            async with pool.connection() as conn:
                return await query_events(
                    conn,
                    world["id"],
                    request,
                    now=DAY0.timestamp(),
                    settings=settings,
                    pool=pool if second_connection else None,
                )
        finally:
            await pool.close()

    given: list[Any] = []
    narrow = asyncio.run(ask())
    both_at_once = asyncio.run(ask(second_connection=True))  # groups and totals on two connections
    assert len({id(c) for c in given}) == (2 if question.get("group_by") else 1)
    monkeypatch.setattr(events_query, "narrow", lambda *_: False)
    wide = asyncio.run(ask())
    assert narrow == wide == both_at_once
    assert narrow.total.count > 0
