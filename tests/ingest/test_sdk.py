"""The official Python SDK (`mixpanel` on PyPI) against the service, with only the URL changed.

The SDK posts `data=<raw JSON>&verbose=1&ip=0` as a form and raises MixpanelException unless the answer is
`{"status": 1, ...}`, so every call below succeeding is itself part of the check.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import psycopg
import pytest
from mixpanel import BufferedConsumer, Consumer, Mixpanel, MixpanelException

from support import LiveServer, profiles_of

Row = dict[str, Any]


@pytest.fixture
def mp(server: LiveServer, project: Row) -> Mixpanel:
    return Mixpanel(project["token"], consumer=Consumer(people_url=f"{server.url}/engage", retry_limit=0))


def props(db: psycopg.Connection[Row], project: Row, distinct_id: str) -> Row | None:
    profile = profiles_of(db, project["id"]).get(distinct_id)
    return None if profile is None else profile["properties"]


def test_every_people_call(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    mp.people_set("u1", {"name": "Ada", "plan": "free", "tags": ["a"], "score": 1})
    assert props(db, project, "u1") == {"name": "Ada", "plan": "free", "tags": ["a"], "score": 1}

    mp.people_set("u1", {"plan": "pro"})
    mp.people_set_once("u1", {"plan": "enterprise", "first_seen_via": "ads"})
    mp.people_increment("u1", {"score": 2, "visits": 1})
    mp.people_increment("u1", {"score": -0.5})
    mp.people_append("u1", {"tags": "b", "log": "x"})
    mp.people_append("u1", {"tags": "b"})
    mp.people_union("u1", {"tags": ["a", "c"], "langs": ["en"]})
    mp.people_remove("u1", {"tags": "b"})
    mp.people_unset("u1", ["name", "missing"])
    assert props(db, project, "u1") == {
        "plan": "pro",
        "first_seen_via": "ads",
        "score": 2.5,
        "visits": 1,
        "tags": ["a", "c"],
        "log": ["x"],
        "langs": ["en"],
    }

    mp.people_delete("u1")
    assert props(db, project, "u1") is None


def test_increment_keeps_integers(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    mp.people_increment("u1", {"n": 1})
    mp.people_increment("u1", {"n": 41})
    mp.people_increment("u1", {"f": 0.1})
    mp.people_increment("u1", {"f": 0.2})
    stored = props(db, project, "u1")
    assert stored is not None
    assert stored["n"] == 42 and isinstance(stored["n"], int)
    assert str(stored["f"]) == "0.3"


def test_track_charge_and_clear_charges(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    mp.people_set("buyer", {"name": "Bo"})
    mp.people_track_charge("buyer", 9.99, {"$time": "2024-11-22T10:00:00", "sku": "A1"})
    mp.people_track_charge("buyer", 20)
    assert props(db, project, "buyer") == {
        "name": "Bo",
        "$transactions": [{"$time": "2024-11-22T10:00:00", "sku": "A1", "$amount": 9.99}, {"$amount": 20}],
    }
    mp.people_clear_charges("buyer")
    assert props(db, project, "buyer") == {"name": "Bo"}


def test_datetime_values(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    """The SDK's serializer sends datetimes as `YYYY-MM-DDTHH:MM:SS` strings; they are stored as sent."""
    mp.people_set("u1", {"signed_up": datetime.datetime(2024, 11, 22, 10, 30, 5)})
    assert props(db, project, "u1") == {"signed_up": "2024-11-22T10:30:05"}


def test_numeric_distinct_id(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    mp.people_set(12345, {"a": 1})
    assert props(db, project, "12345") == {"a": 1}


def test_meta_time_orders_updates(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    """`meta={"$time": ...}` overrides the SDK's own time: an older $set arriving later loses."""
    now = time.time()
    mp.people_set("u1", {"plan": "pro"}, meta={"$time": now - 60})
    mp.people_set("u1", {"plan": "free", "extra": 1}, meta={"$time": now - 3600})
    profile = profiles_of(db, project["id"])["u1"]
    assert profile["properties"] == {"plan": "pro", "extra": 1}
    assert profile["last_seen"] == pytest.approx(now - 60, abs=0.01)

    mp.people_unset("u1", ["plan"], meta={"$time": now - 7200})  # older than the $set: no effect
    assert props(db, project, "u1") == {"plan": "pro", "extra": 1}
    mp.people_unset("u1", ["plan"], meta={"$time": now - 30})
    assert props(db, project, "u1") == {"extra": 1}


def test_meta_time_in_milliseconds(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    mp.people_set("u1", {"a": 1}, meta={"$time": 1732300000500})
    assert profiles_of(db, project["id"])["u1"]["last_seen"] == pytest.approx(1732300000.5)


def test_meta_ignore_time(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    """`$ignore_time` leaves $last_seen where it was; the update itself still applies."""
    mp.people_set("u1", {"a": 1}, meta={"$time": 1732300000})
    mp.people_set("u1", {"b": 2}, meta={"$ignore_time": True})
    mp.people_increment("u1", {"n": 1}, meta={"$ignore_time": True})
    profile = profiles_of(db, project["id"])["u1"]
    assert profile["properties"] == {"a": 1, "b": 2, "n": 1}
    assert profile["last_seen"] == pytest.approx(1732300000)


def test_delete_with_meta(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    mp.people_set("u1", {"a": 1})
    mp.people_delete("u1", meta={"$ignore_alias": True})
    assert props(db, project, "u1") is None
    # A later update with a newer time creates a fresh profile.
    mp.people_set("u1", {"b": 2}, meta={"$time": time.time() + 1})
    assert props(db, project, "u1") == {"b": 2}


def test_people_update_with_several_operations(
    mp: Mixpanel, project: Row, db: psycopg.Connection[Row]
) -> None:
    message = {"$distinct_id": "u1", "$set": {"a": 1}, "$add": {"n": 3}, "$union": {"l": [1, 1.0, "1"]}}
    mp.people_update(message)
    assert props(db, project, "u1") == {"a": 1, "n": 3, "l": [1, "1"]}


def test_sdk_raises_on_an_invalid_update(mp: Mixpanel, project: Row, db: psycopg.Connection[Row]) -> None:
    """The SDK reads `status`: an update the service rejects surfaces as an exception naming the problem."""
    with pytest.raises(MixpanelException, match=r"\$add\.n"):
        mp.people_increment("u1", {"n": "five"})
    assert props(db, project, "u1") is None


def test_sdk_raises_on_an_unknown_token(
    server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    mp = Mixpanel("no-such-token", consumer=Consumer(people_url=f"{server.url}/engage", retry_limit=0))
    with pytest.raises(MixpanelException, match="unknown project token"):
        mp.people_set("u1", {"a": 1})
    assert profiles_of(db, project["id"]) == {}


def test_trailing_slash_url(server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    mp = Mixpanel(project["token"], consumer=Consumer(people_url=f"{server.url}/engage/", retry_limit=0))
    mp.people_set("u1", {"a": 1})
    assert props(db, project, "u1") == {"a": 1}


# --- BufferedConsumer ---------------------------------------------------------------------------------------


def test_buffered_consumer(server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    consumer = BufferedConsumer(max_size=3, people_url=f"{server.url}/engage", retry_limit=0)
    mp = Mixpanel(project["token"], consumer=consumer)
    for i in range(7):
        mp.people_set(f"u{i}", {"i": i})
    # Two full batches of 3 went out on their own; the 7th waits for flush().
    assert sorted(profiles_of(db, project["id"])) == [f"u{i}" for i in range(6)]
    mp.people_increment("u0", {"n": 1})
    mp.people_increment("u0", {"n": 1})
    mp.people_delete("u1")
    consumer.flush()
    profiles = {d: p["properties"] for d, p in profiles_of(db, project["id"]).items()}
    assert profiles == {"u0": {"i": 0, "n": 2}, **{f"u{i}": {"i": i} for i in range(2, 7)}}


def test_buffered_consumer_one_profile_in_order(
    server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """A batch naming one profile many times behaves like the same calls sent one by one."""
    consumer = BufferedConsumer(max_size=50, people_url=f"{server.url}/engage", retry_limit=0)
    mp = Mixpanel(project["token"], consumer=consumer)
    mp.people_set("u1", {"plan": "free", "tags": []})
    mp.people_set_once("u1", {"plan": "x", "ref": "google"})
    mp.people_append("u1", {"tags": "a"})
    mp.people_union("u1", {"tags": ["a", "b"]})
    mp.people_remove("u1", {"tags": "a"})
    mp.people_increment("u1", {"n": 5})
    mp.people_set("u1", {"plan": "pro"})
    mp.people_unset("u1", ["ref"])
    mp.people_track_charge("u1", 5)
    assert props(db, project, "u1") is None
    consumer.flush()
    expected = {"plan": "pro", "tags": ["b"], "n": 5, "$transactions": [{"$amount": 5}]}
    assert props(db, project, "u1") == expected


def test_buffered_consumer_batch_with_an_invalid_record(
    server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    consumer = BufferedConsumer(max_size=50, people_url=f"{server.url}/engage", retry_limit=0)
    mp = Mixpanel(project["token"], consumer=consumer)
    mp.people_set("good", {"a": 1})
    mp.people_increment("bad", {"n": True})
    # verbose=1 with some records valid answers status 1: the SDK does not raise, the good record is stored.
    consumer.flush()
    assert props(db, project, "good") == {"a": 1}
    assert props(db, project, "bad") is None
