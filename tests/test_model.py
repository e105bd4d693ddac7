"""The reference model of `/engage` (tests/model.py) against the worked examples of the update rules
(tests/data/engage_vectors.json) and its edge cases."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from model import ProfileModel, format_last_seen, json_equal, normalize
from strategies import assert_valid_update, update_sequences
from support import engage_vectors

VECTORS = engage_vectors()

T0 = 1_000_000


def run(*updates: dict[str, Any]) -> dict[str, dict[str, Any]]:
    model = ProfileModel()
    for update in updates:
        model.apply(update)
    return model.profiles()


def u(t: int, **ops: Any) -> dict[str, Any]:
    """An update of profile u1 at T0 + t; operations as keyword arguments without the `$` (`set_once=...`)."""
    return {"$distinct_id": "u1", "$time": T0 + t, **{f"${op}": operand for op, operand in ops.items()}}


def props(profiles: dict[str, dict[str, Any]], distinct_id: str = "u1") -> dict[str, Any]:
    properties: dict[str, Any] = profiles[distinct_id]["properties"]
    return properties


def same_json(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (so an int result may not come back as a float)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return bool(a == b)


# --- The worked examples (tests/data) ------------------------------------------------------------------


def test_vectors_are_loaded() -> None:
    assert len(VECTORS) >= 16


@pytest.mark.parametrize("vector", VECTORS, ids=[v["title"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    profiles = run(*vector["updates"])
    distinct_ids = {update["$distinct_id"] for update in vector["updates"]}
    assert len(distinct_ids) == 1
    (distinct_id,) = distinct_ids
    expected = vector["expected"]
    if expected is None:
        assert distinct_id not in profiles
        return
    got = profiles[distinct_id]
    assert same_json(got["properties"], expected["properties"]), got["properties"]
    assert got["last_seen"] == expected["last_seen"]


# --- json_equal and normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (0.3, Decimal("0.3")),
        (2.0, Decimal("2.00")),
        (-0.5, -0.5),
        (True, True),
        (None, None),
        ("", ""),
        ([1, [True, "x"]], [1.0, [True, "x"]]),
        ({"a": 1, "b": [None]}, {"b": [None], "a": 1.0}),
    ],
)
def test_json_equal(a: Any, b: Any) -> None:
    assert json_equal(a, b)
    assert json_equal(b, a)
    assert normalize({"k": a}) == normalize({"k": b})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (False, 0),
        (True, 1.0),
        (False, None),
        (0, None),
        ("", None),
        (1, "1"),
        ("true", True),
        ([1, 2], [2, 1]),
        ([1], [1, 1]),
        ([1], 1),
        ([True], [1]),
        ({"a": 1}, {"a": True}),
        ({"a": 1}, {"a": 1, "b": 1}),
        ({"a": None}, {}),
        ([], {}),
        (0.1 + 0.2, 0.3),
    ],
)
def test_json_not_equal(a: Any, b: Any) -> None:
    assert not json_equal(a, b)
    assert not json_equal(b, a)
    assert normalize({"k": a}) != normalize({"k": b})


def test_json_equal_rejects_non_json() -> None:
    with pytest.raises(TypeError):
        json_equal((1,), (1,))


def test_normalize_drops_maintained_properties_and_shows_numbers_plainly() -> None:
    service = {"n": 3.0, "f": 1.5, "$last_seen": "1970-01-12T13:46:40"}
    assert normalize(service) == normalize({"n": 3, "f": Decimal("1.50")})
    assert repr(normalize({"n": 3})) == "{'n': 3}"
    assert "$last_seen" in normalize(service, drop=())


def test_format_last_seen() -> None:
    assert format_last_seen(None) is None
    assert format_last_seen(T0 + 0.9) == "1970-01-12T13:46:40"


# --- Operations ---------------------------------------------------------------------------------------------


def test_union_and_remove_tell_booleans_from_numbers() -> None:
    profiles = run(
        u(1, set={"l": [1]}),
        u(2, union={"l": [True, 1.0, "1", False, 0]}),
    )
    assert same_json(props(profiles)["l"], [1, True, "1", False, 0])
    profiles = run(
        u(1, set={"l": [True, 1, 1.0, "1", [1], [True]]}),
        u(2, remove={"l": 1}),
        u(3, remove={"l": [True]}),
    )
    assert same_json(props(profiles)["l"], [True, "1", [1]])
    profiles = run(u(1, set={"l": [True, 1, False, None]}), u(2, remove={"l": True}))
    assert same_json(props(profiles)["l"], [1, False, None])


def test_union_with_objects_and_lists_compares_by_content() -> None:
    profiles = run(u(1, union={"l": [{"a": 1}, [1, 2]]}), u(2, union={"l": [{"a": 1.0}, [1, 2], [2, 1]]}))
    assert props(profiles)["l"] == [{"a": 1}, [1, 2], [2, 1]]


def test_union_of_empty_list_on_absent_property_stores_an_empty_list() -> None:
    assert props(run(u(1, union={"l": []}))) == {"l": []}


def test_append_of_a_list_adds_it_as_one_element() -> None:
    assert props(run(u(1, append={"l": [1, 2]}), u(2, append={"l": [1, 2]}))) == {"l": [[1, 2], [1, 2]]}


def test_list_operations_on_a_non_list_conflict() -> None:
    model = ProfileModel()
    model.apply(u(1, set={"s": "text", "b": True}))
    model.apply(u(2, union={"s": ["x"]}, append={"b": 1}, remove={"s": "t"}, add={"b": 1, "n": 0.5}))
    assert same_json(model.profiles()["u1"]["properties"], {"s": "text", "b": True, "n": 0.5})
    assert {(w.operation, w.property) for w in model.warnings} == {
        ("$union", "s"),
        ("$append", "b"),
        ("$remove", "s"),
        ("$add", "b"),
    }


def test_add_is_exact_and_keeps_integers() -> None:
    profiles = run(
        u(1, add={"f": 0.1}),
        u(2, add={"f": 0.2}),
        u(3, add={"i": 2, "g": 1.0}),
        u(4, add={"i": -2, "g": 1}),
    )
    assert same_json(props(profiles), {"f": 0.3, "i": 0, "g": 2.0})


@pytest.mark.parametrize(
    ("stored", "operand", "expected"),
    [
        (1e308, 1e308, None),  # past the largest double
        (2**64 - 1, 1, None),  # past the integers /engage reads as integers
        (-(2**63), -1, None),
        (2**53, 1.0, None),  # 9007199254740993.0: no double holds it
        (0.1, 1e-17, None),  # 0.10000000000000001: more digits than a double holds
        (2**63 - 1, 1, 2**63),
        (1e16, 1, 10**16 + 1),  # of integer form: an integer, as numeric keeps it
        (1e300, 1e300, 2e300),
        (5e-324, 5e-324, 1e-323),
    ],
)
def test_add_results_follow_the_rule_of_numbers_sent(stored: Any, operand: Any, expected: Any) -> None:
    model = ProfileModel()
    model.apply(u(1, set={"n": stored}))
    model.apply(u(2, add={"n": operand, "m": 1}))
    got = props(model.profiles())
    if expected is None:
        assert got == {"n": stored, "m": 1}
        [warning] = model.warnings
        assert (warning.operation, warning.property) == ("$add", "n")
    else:
        assert same_json(got, {"n": expected, "m": 1}), got
        assert model.warnings == []


def test_remove_on_absent_property_does_nothing() -> None:
    assert props(run(u(1, set={"a": 1}), u(2, remove={"l": 1}))) == {"a": 1}


def test_unset_takes_a_single_name() -> None:
    assert props(run(u(1, set={"a": 1, "b": 2}), u(2, unset="a"))) == {"b": 2}


def test_operation_order_ignores_key_order() -> None:
    record = {"$distinct_id": "u1", "$time": T0, "$unset": ["a"], "$remove": {"l": 1}, "$append": {"l": 1}}
    record |= {"$union": {"l": [1]}, "$add": {"n": 1}, "$set_once": {"n": 5}, "$set": {"a": 1, "l": [1]}}
    assert same_json(props(run(record)), {"l": [], "n": 6})


def test_set_of_last_seen_is_ignored_with_a_warning() -> None:
    model = ProfileModel()
    model.apply(u(1, set={"$last_seen": "2020-01-01T00:00:00", "a": 1}))
    assert model.profiles()["u1"] == {"properties": {"a": 1}, "last_seen": T0 + 1}
    assert [(w.operation, w.property) for w in model.warnings] == [("$set", "$last_seen")]


def test_model_keeps_its_own_copies() -> None:
    model = ProfileModel()
    value = [1]
    record = u(1, set={"l": value})
    model.apply(record)
    value.append(2)
    model.profiles()["u1"]["properties"]["l"].append(3)
    assert model.profiles()["u1"]["properties"] == {"l": [1]}


# --- Ordering by $time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("once_at", "expected"),
    [(20, {}), (30, {"a": "once"}), (40, {"a": "once"})],
)
def test_set_once_after_unset_respects_the_tombstone(once_at: int, expected: dict[str, Any]) -> None:
    profiles = run(u(10, set={"a": 1}), u(30, unset=["a"]), u(once_at, set_once={"a": "once"}))
    assert props(profiles) == expected


def test_set_once_with_earlier_time_replaces_a_later_set_once_but_not_an_equal_one() -> None:
    assert props(run(u(30, set_once={"a": "late"}), u(20, set_once={"a": "early"}))) == {"a": "early"}
    assert props(run(u(30, set_once={"a": "first"}), u(30, set_once={"a": "second"}))) == {"a": "first"}


def test_set_once_replacement_follows_the_literal_rule_even_after_add() -> None:
    profiles = run(u(30, set_once={"n": 1}), u(31, add={"n": 5}), u(20, set_once={"n": 100}))
    assert props(profiles) == {"n": 100}


def test_set_beats_set_once_only_when_not_older() -> None:
    assert props(run(u(30, set_once={"a": "once"}), u(20, set={"a": "set"}))) == {"a": "once"}
    assert props(run(u(30, set_once={"a": "once"}), u(30, set={"a": "set"}))) == {"a": "set"}
    assert props(run(u(30, set={"a": "set"}), u(40, set_once={"a": "once"}))) == {"a": "set"}


def test_unset_older_than_the_set_is_ignored_equal_applies() -> None:
    assert props(run(u(30, set={"a": 1}), u(20, unset=["a"]))) == {"a": 1}
    assert props(run(u(30, set={"a": 1}), u(30, unset=["a"]))) == {}


def test_unset_of_an_untimed_property_leaves_a_tombstone() -> None:
    profiles = run(u(10, add={"n": 1}), u(30, unset="n"), u(20, set={"n": 7}), u(40, append={"l": 1}))
    assert props(profiles) == {"l": [1]}


def test_untimed_operations_ignore_times() -> None:
    profiles = run(u(30, set={"n": 1, "l": ["a"]}), u(10, add={"n": 1}), u(5, append={"l": "b"}))
    assert props(profiles) == {"n": 2, "l": ["a", "b"]}
    assert profiles["u1"]["last_seen"] == T0 + 30


def test_an_update_that_loses_on_time_still_counts_for_last_seen() -> None:
    profiles = run(u(30, set={"a": 1}), u(40, unset=["a"]), u(35, set={"a": 2}))
    assert profiles["u1"] == {"properties": {}, "last_seen": T0 + 40}
    profiles = run(u(30, set={"a": 1}), u(40, set={"a": 2}), u(50, set={"a": 3}, ignore_time=True))
    assert profiles["u1"] == {"properties": {"a": 3}, "last_seen": T0 + 40}


def test_ignore_time_only_updates_give_no_last_seen() -> None:
    assert run(u(10, set={"a": 1}, ignore_time=True))["u1"] == {"properties": {"a": 1}, "last_seen": None}


def test_times_in_milliseconds_and_iso_strings() -> None:
    now = 1_732_300_000  # below 1e11 is seconds, so milliseconds need a realistic time
    profiles = run(
        {"$distinct_id": "u1", "$time": (now + 20) * 1000, "$set": {"a": "ms"}},
        {"$distinct_id": "u1", "$time": "2024-11-22T18:26:50Z", "$set": {"a": "iso, 10 s older"}},
        {"$distinct_id": "u1", "$time": now + 20.5, "$set": {"b": "s"}},
    )
    assert profiles["u1"] == {"properties": {"a": "ms", "b": "s"}, "last_seen": now + 20.5}


# --- $delete ------------------------------------------------------------------------------------------------


def test_delete_then_equal_time_update_creates_a_fresh_profile() -> None:
    profiles = run(u(10, set={"a": 1}), u(30, delete=""), u(30, set={"b": 2}))
    assert profiles["u1"] == {"properties": {"b": 2}, "last_seen": T0 + 30}


def test_delete_drops_older_updates_even_after_a_fresh_profile() -> None:
    profiles = run(u(30, delete=""), u(40, set={"a": 1}), u(29, add={"n": 1}), u(20, set={"b": 1}))
    assert profiles["u1"] == {"properties": {"a": 1}, "last_seen": T0 + 40}


def test_delete_forgets_property_times() -> None:
    profiles = run(u(50, set={"a": "old"}), u(30, delete=""), u(40, set={"a": "new"}))
    assert props(profiles) == {"a": "new"}


def test_delete_of_an_absent_profile_leaves_a_tombstone() -> None:
    assert run(u(30, delete=""), u(20, set={"a": 1})) == {}


def test_an_older_delete_still_deletes() -> None:
    profiles = run(u(30, delete=""), u(40, set={"a": 1}), u(10, delete=""), u(35, set={"b": 1}))
    assert profiles["u1"] == {"properties": {"b": 1}, "last_seen": T0 + 35}


def test_remove_and_unset_after_delete_do_not_recreate() -> None:
    assert run(u(10, set={"l": [1]}), u(20, delete=""), u(30, remove={"l": 1}), u(31, unset="l")) == {}


def test_profiles_are_independent() -> None:
    profiles = run(u(10, set={"a": 1}), {"$distinct_id": "u2", "$time": T0, "$delete": ""})
    assert profiles == {"u1": {"properties": {"a": 1}, "last_seen": T0 + 10}}


# --- Generated sequences ------------------------------------------------------------------------------------


def expected_last_seen(records: list[dict[str, Any]], distinct_id: str) -> tuple[bool, float | None]:
    """Whether a profile exists, and its last_seen, from the ordering rules alone (no property logic)."""
    mine = [r for r in records if r["$distinct_id"] == distinct_id]
    deletes = [i for i, r in enumerate(mine) if "$delete" in r]
    newest_deletion = max((float(mine[i]["$time"]) for i in deletes), default=-math.inf)
    live = [r for r in mine[deletes[-1] + 1 if deletes else 0 :] if r["$time"] >= newest_deletion]
    creating = ("$set", "$set_once", "$add", "$union", "$append")
    first = next((i for i, r in enumerate(live) if any(op in r for op in creating)), None)
    if first is None:
        return False, None
    timed = [float(r["$time"]) for r in live[first:] if not r.get("$ignore_time", False)]
    return True, max(timed, default=None)


@settings(max_examples=50, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(update_sequences())
def test_model_runs_on_generated_sequences(records: list[dict[str, Any]]) -> None:
    model = ProfileModel()
    for record in records:
        assert_valid_update(record)
        assert record["$token"] == "TOKEN"
        model.apply(record)
    profiles = model.profiles()

    assert set(profiles) <= {r["$distinct_id"] for r in records}
    for distinct_id in {r["$distinct_id"] for r in records}:
        exists, last_seen = expected_last_seen(records, distinct_id)
        assert (distinct_id in profiles) == exists
        if exists:
            assert profiles[distinct_id]["last_seen"] == last_seen
    for profile in profiles.values():
        properties = profile["properties"]
        assert "$last_seen" not in properties
        assert json_equal(orjson.loads(orjson.dumps(properties)), properties)
        assert normalize(properties) == normalize(orjson.loads(orjson.dumps(properties)))
