"""The profile limits (2,000 properties, 1 MB of JSONB: docs/ingest.md section 3) as revision 0007 applies
them: an operation is merged into the profile as a whole when the result is within the limits, else property
by property, each refused with a warning when it would break one -- in work linear in the sizes involved
(before 0007, every property of an operation rewrote the whole profile: a `$set` of 10,000 names took 2.9 s,
and a record of 55,000 about a minute)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from support import LiveServer, make_settings, new_project

Row = dict[str, Any]
DB = psycopg.Connection[Row]
T0 = 1_700_000_000
MAX_BYTES = 20_000


def update(project: Row, t: int, **ops: Any) -> Row:
    return {
        "$token": project["token"],
        "$distinct_id": "u1",
        "$time": T0 + t,
        **{f"${k}": v for k, v in ops.items()},
    }


def post(client: httpx.Client, records: list[Row]) -> float:
    started = time.monotonic()
    response = client.post("/engage", params={"verbose": "2"}, json=records)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def stored(db: DB, project: Row) -> Row:
    row = db.execute(
        "SELECT properties, pg_column_size(properties || '{}') AS size FROM profiles"
        " WHERE project_id = %s AND distinct_id = 'u1'",
        (project["id"],),
    ).fetchone()
    assert row is not None
    return row


def warnings_of(db: DB, project: Row) -> list[Row]:
    return db.execute(
        "SELECT operation, property, reason FROM ingestion_warnings WHERE project_id = %s ORDER BY id",
        (project["id"],),
    ).fetchall()


def test_a_set_of_55000_names_is_linear(client: httpx.Client, project: Row, db: DB) -> None:
    names = {f"k{i:05}": i for i in range(55_000)}  # 880 KB: one record
    elapsed = post(client, [update(project, 0, set={"a": 1}), update(project, 1, set=names)])
    properties = stored(db, project)["properties"]
    assert len(properties) == 2_000 and properties["a"] == 1 and properties["k01998"] == 1998
    found = warnings_of(db, project)
    assert len(found) == 101  # 53,001 refused: 100 recorded, and the summary
    assert found[0]["reason"] == "the profile would have 2001 properties, over the limit of 2000"
    assert elapsed < 2.0, f"took {elapsed:.1f} s"


def test_the_property_limit_is_exact(client: httpx.Client, project: Row, db: DB) -> None:
    post(client, [update(project, 0, set={f"old{i:04}": i for i in range(1_990)})])
    new = {f"new{i:04}": i for i in range(20)}
    replaced = {f"old{i:04}": -i for i in range(5)}
    post(client, [update(project, 1, set={**new, **replaced}, union={"zzz": [1]})])
    properties = stored(db, project)["properties"]
    assert len(properties) == 2_000
    assert [properties[f"new{i:04}"] for i in range(10)] == list(range(10))
    assert all(properties[k] == v for k, v in replaced.items())
    assert [(w["operation"], w["property"]) for w in warnings_of(db, project)] == [
        ("$set", f"new{i:04}") for i in range(10, 20)
    ] + [("$union", "zzz")]


@pytest.fixture(scope="module")
def small_profiles(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url, make_settings(max_profile_bytes=MAX_BYTES)) as live:
        yield live


def test_the_byte_limit_is_never_passed(small_profiles: LiveServer, database_url: str, db: DB) -> None:
    project = new_project(database_url)
    with httpx.Client(base_url=small_profiles.url, timeout=30) as client:
        post(client, [update(project, 0, set={"fill": "x" * (MAX_BYTES - 500)})])
        # Within the limit as a whole (close to it): applied as a whole.
        post(client, [update(project, 1, set={"a": "y" * 200, "n": 1.5, "l": [1, 2]})])
        assert stored(db, project)["properties"]["a"] == "y" * 200
        assert warnings_of(db, project) == []
        # Over it as a whole: what fits still applies, in key order; the rest is refused.
        room = MAX_BYTES - stored(db, project)["size"]
        assert room > 100
        big = "z" * (room + 50)  # over the limit even alone
        ops = {"set": {"b": big, "c": 7, "m": [3]}, "add": {"n": 1, "q": 2}, "union": {"l": [9] * 50}}
        post(client, [update(project, 2, **ops)])
        row = stored(db, project)
    properties = row["properties"]
    assert row["size"] <= MAX_BYTES
    assert "b" not in properties and properties["c"] == 7 and properties["m"] == [3]
    assert properties["n"] == 2.5 and properties["q"] == 2 and properties["l"] == [1, 2, 9]
    reasons = {(w["operation"], w["property"]): w["reason"] for w in warnings_of(db, project)}
    assert reasons == {("$set", "b"): f"the profile would be over the limit of {MAX_BYTES} bytes"}


def test_a_full_profile_refuses_every_growth(small_profiles: LiveServer, database_url: str, db: DB) -> None:
    project = new_project(database_url)
    with httpx.Client(base_url=small_profiles.url, timeout=30) as client:
        post(client, [update(project, 0, set={"fill": "x" * (MAX_BYTES - 60), "l": []})])
        growth = [update(project, 1 + i, append={"l": "w" * 20}, set={"s": "v" * 30}) for i in range(20)]
        post(client, growth)
        row = stored(db, project)
    assert row["size"] <= MAX_BYTES
    assert len(warnings_of(db, project)) > 0


@pytest.fixture(scope="module")
def few_properties(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url, make_settings(max_profile_properties=100)) as live:
        yield live


def test_the_times_of_unset_names_are_bounded(few_properties: LiveServer, database_url: str, db: DB) -> None:
    """$unset of ever new names leaves a tombstone time each: a profile keeps the times of at most twice as
    many names as it may have properties, forgetting the oldest tombstones, so its times (and the work of each
    update) stay bounded."""
    project = new_project(database_url)
    names = [f"name-{i:04}" for i in range(1_000)]
    with httpx.Client(base_url=few_properties.url, timeout=30) as client:
        post(client, [update(project, 0, set={"a": 1})])
        post(client, [update(project, 10 + i, unset=names[i * 200 : (i + 1) * 200]) for i in range(5)])
        row = db.execute(
            "SELECT prop_times FROM profiles WHERE project_id = %s AND distinct_id = 'u1'", (project["id"],)
        ).fetchone()
        assert row is not None
        times = row["prop_times"]
        assert len(times) <= 200 and names[-1] in times and names[0] not in times and "a" in times
        # Older than both unsets: the newest is remembered and drops it, the oldest was forgotten.
        post(client, [update(project, 5, set={names[-1]: "late", names[0]: "early"})])
    assert stored(db, project)["properties"] == {"a": 1, names[0]: "early"}
