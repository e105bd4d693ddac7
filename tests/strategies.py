"""Hypothesis strategies for `/engage` update sequences, and the validity rules they keep to (docs/ingest.md).

The pools are deliberately small so that generated updates collide: few distinct_ids (a batch names each of
them many times), few property names (operations meet on the same property), few values (equal, JSON-equal
and bool-versus-number pairs are common) and a narrow band of integer `$time`s (ties and out-of-order
delivery are the rule, not the exception). Every record carries `"$token": TOKEN`, a placeholder for the
test to replace.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

__all__ = [
    "BASE_TIME",
    "DISTINCT_IDS",
    "PROPERTY_NAMES",
    "TOKEN",
    "assert_valid_update",
    "update_records",
    "update_sequences",
]

TOKEN = "TOKEN"
BASE_TIME = 1_000_000
TIME_SPREAD = 12

DISTINCT_IDS: tuple[str, ...] = ("u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7")
PROPERTY_NAMES: tuple[str, ...] = ("a", "b", "n", "tags", "$email", "Plan name", "città", "p" * 255)

NUMBERS: tuple[int | float, ...] = (0, 1, -2, 3, 1.0, 0.5, -2.5, 0.1, 0.2)
SCALARS: tuple[Any, ...] = (*NUMBERS, "1", "x", "", True, False, None)
SMALL_LISTS: tuple[list[Any], ...] = ([], [1], ["x", 1], [True, 1.0], [None])
NESTED_OBJECT: dict[str, Any] = {"a": 1, "b": [1, "x"]}

OPERATIONS: tuple[str, ...] = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset")
MAX_NAME_LENGTH = 255
MAX_NESTING = 3


names: SearchStrategy[str] = st.sampled_from(PROPERTY_NAMES)
numbers: SearchStrategy[int | float] = st.sampled_from(NUMBERS)
scalars: SearchStrategy[Any] = st.sampled_from(SCALARS)
# Mutable constants are copied on every draw, so that records never share a list or object.
small_lists: SearchStrategy[list[Any]] = st.sampled_from(SMALL_LISTS).map(copy.deepcopy)
#: Any stored value: scalars, small lists, one nested object.
values: SearchStrategy[Any] = st.one_of(scalars, small_lists, st.just(NESTED_OBJECT).map(copy.deepcopy))
#: Elements compared by `$union` and `$remove`: scalars and small lists.
elements: SearchStrategy[Any] = st.one_of(scalars, small_lists)


def _objects(of: SearchStrategy[Any]) -> SearchStrategy[dict[str, Any]]:
    return st.dictionaries(names, of, min_size=1, max_size=3)


OPERANDS: dict[str, SearchStrategy[Any]] = {
    "$set": _objects(values),
    "$set_once": _objects(values),
    "$add": _objects(numbers),
    # A list of elements, or a scalar taken as a one-element list (null and objects are left out: whether
    # they count as scalars is not written down).
    "$union": _objects(st.one_of(st.lists(elements, max_size=3), scalars.filter(lambda v: v is not None))),
    "$append": _objects(values),
    "$remove": _objects(elements),
    "$unset": st.one_of(names, st.lists(names, min_size=1, max_size=3, unique=True)),
}


@st.composite
def update_records(draw: st.DrawFn, distinct_ids: SearchStrategy[str] | None = None) -> dict[str, Any]:
    """One valid update record: 1 to 3 operations in random key order, or (rarely) a lone `$delete`."""
    record: dict[str, Any] = {
        "$token": TOKEN,
        "$distinct_id": draw(st.sampled_from(DISTINCT_IDS[:4]) if distinct_ids is None else distinct_ids),
        "$time": draw(st.integers(BASE_TIME, BASE_TIME + TIME_SPREAD)),
    }
    if draw(st.integers(0, 9)) == 0:
        record["$delete"] = ""
        if draw(st.booleans()):
            record["$ignore_alias"] = draw(st.booleans())
        return record
    for op in draw(st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=3, unique=True)):
        record[op] = draw(OPERANDS[op])
    ignore_time = draw(st.sampled_from((None, None, None, False, True)))
    if ignore_time is not None:
        record["$ignore_time"] = ignore_time
    return record


def update_sequences(max_ids: int = 4, max_len: int = 40) -> SearchStrategy[list[dict[str, Any]]]:
    """Sequences (arrival order) of valid update records over `max_ids` distinct_ids."""
    if not 1 <= max_ids <= len(DISTINCT_IDS):
        raise ValueError(f"max_ids must be between 1 and {len(DISTINCT_IDS)}")
    ids = st.sampled_from(DISTINCT_IDS[:max_ids])
    return st.lists(update_records(ids), min_size=1, max_size=max_len)


# --- Validity, as docs/ingest.md states it, to keep the strategies honest -----------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_name(where: str, name: Any) -> None:
    assert isinstance(name, str) and 1 <= len(name) <= MAX_NAME_LENGTH, f"{where}: property name {name!r}"


def assert_valid_update(record: Mapping[str, Any]) -> None:
    """Fail with the broken rule if `record` is not a valid `/engage` update (size limits aside)."""
    assert isinstance(record.get("$token"), str) and record["$token"], "$token: required"
    distinct_id = record.get("$distinct_id")
    assert isinstance(distinct_id, str) and 1 <= len(distinct_id) <= MAX_NAME_LENGTH, "$distinct_id"
    assert _is_number(record.get("$time")), "$time: epoch seconds"
    assert isinstance(record.get("$ignore_time", False), bool), "$ignore_time: a boolean"
    ops = [op for op in (*OPERATIONS, "$delete") if op in record]
    assert ops, "at least one operation"
    if "$delete" in record:
        assert ops == ["$delete"], "$delete must stand alone"
        return
    for op in ops:
        operand = record[op]
        if op == "$unset":
            for name in [operand] if isinstance(operand, str) else operand:
                _check_name(op, name)
            continue
        assert isinstance(operand, Mapping) and operand, f"{op}: a non-empty object"
        for name, value in operand.items():
            _check_name(op, name)
            assert _depth(value) <= MAX_NESTING, f"{op}.{name}: nests deeper than {MAX_NESTING}"
            if op in ("$set", "$set_once"):
                assert name != "$last_seen", f"{op}.$last_seen: maintained by the service"
            if op == "$add":
                assert _is_number(value), f"$add.{name}: must be a number"
