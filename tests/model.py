"""A plain-Python reference model of `/engage` profile updates (docs/ingest.md, section 3).

This is the test oracle: slow, in memory, written to be read next to docs/ingest.md rather than to be fast.
It takes
already-valid update records in Mixpanel wire form, one at a time in arrival order, and keeps per profile

- the properties,
- per property, the time and kind of the last `$set`, `$set_once` or `$unset` that took effect (`$unset`
  leaves a tombstone time),
- `last_seen`: the greatest `$time` of the updates without `$ignore_time` applied since the profile was
  (re)created,

and per distinct_id the time of the newest `$delete` (the profile tombstone, which never expires here).

Decisions where the contract (docs/) leaves room, so that a disagreement with the service can be traced to
one of them:
- An update that reaches an existing profile counts for `last_seen` even when all its operations lose on
  time or conflict: it is one of the profile's updates. Updates dropped by a profile tombstone, and
  `$remove`/`$unset` updates that find no profile, do not count.
- "Older than the newest deletion" is strict: an update with the same `$time` as the deletion is applied.
- A `$delete` always deletes, even one older than a deletion already seen; the tombstone keeps the newest
  time. A `$delete` of an absent profile still leaves a tombstone.
- `$union` of `[]` on an absent property stores `[]` ("absent counts as []").
- A client's `$set` (and `$set_once`) of `$last_seen` is ignored with a warning; the record still counts as
  a `$set` (it creates the profile).
- `$set_once` replaces a value that came from a `$set_once` with a later `$time`, even if `$add`, `$union`,
  ... changed it since: those operations do not change the property's time or kind.

Numbers: int + int stays int; any float involved gives a float computed through `decimal.Decimal(str(x))`,
which is exact for the short decimals the tests use (0.1 + 0.2 == 0.3), as the service's `numeric` storage is
(a float of integer form, `1e+16`, plus an int gives that int, as `numeric` does).  A sum is held to the rule
of numbers sent directly (ingest/decode.py): an integer from -2^63 to 2^64 - 1, or the shortest decimal of a
double; any other sum leaves the property as it was, with a warning.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "OPERATION_ORDER",
    "ModelWarning",
    "Num",
    "ProfileModel",
    "format_last_seen",
    "is_number",
    "json_equal",
    "normalize",
]

#: The order in which several operations of one record are applied.
OPERATION_ORDER: tuple[str, ...] = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset")
#: Operations that create the profile when it is absent (`$remove` and `$unset` never do).
CREATING_OPERATIONS: frozenset[str] = frozenset({"$set", "$set_once", "$add", "$union", "$append"})
#: Properties the service maintains itself; a client cannot write them.
MAINTAINED_PROPERTIES: frozenset[str] = frozenset({"$last_seen"})

TimedKind = Literal["$set", "$set_once", "$unset"]


# --- JSON values --------------------------------------------------------------------------------------------


def is_number(value: object) -> bool:
    """A JSON number: int, float or Decimal, but never a bool (which Python counts as an int)."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _decimal(number: int | float | Decimal) -> Decimal:
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"not a JSON number: {number!r}")
    return number if isinstance(number, Decimal) else Decimal(str(number))


def json_equal(a: object, b: object) -> bool:
    """JSON equality: numbers by value (1 == 1.0), booleans only equal booleans, containers by content."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) or is_number(b):
        return is_number(a) and is_number(b) and _decimal(a) == _decimal(b)  # type: ignore[arg-type]
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return False
    raise TypeError(f"not JSON values: {a!r}, {b!r}")


@dataclass(frozen=True)
class Num:
    """A JSON number in `normalize`d form: equal by value, never equal to a bool, printed like the number."""

    value: Decimal

    def __repr__(self) -> str:
        return str(self.value)


def _normalize_value(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if is_number(value):
        return Num(_decimal(value))  # type: ignore[arg-type]
    if isinstance(value, list):
        return [_normalize_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalize_value(v) for k, v in value.items()}
    raise TypeError(f"not a JSON value: {value!r}")


def normalize(
    profile_props: Mapping[str, Any], *, drop: Iterable[str] = MAINTAINED_PROPERTIES
) -> dict[str, Any]:
    """Properties in a form where Python `==` is JSON equality, e.g. to compare the model with the service.

    Numbers become `Num` (so 3 == 3.0 and 1.5 == Decimal("1.5"), but True != 1); keys in `drop` (by default
    the service-maintained `$last_seen`, which the read API shows among the properties) are left out.
    """
    dropped = frozenset(drop)
    return {k: _normalize_value(v) for k, v in profile_props.items() if k not in dropped}


def format_last_seen(last_seen: float | None) -> str | None:
    """`last_seen` as the read API shows `$last_seen`: `YYYY-MM-DDTHH:MM:SS` in UTC (fractions cut off)."""
    if last_seen is None:
        return None
    return datetime.fromtimestamp(math.floor(last_seen), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


#: The integers /engage reads as integers (orjson's range): beyond them, a number is exact only as a double.
INTEGER_RANGE = (-(2**63), 2**64 - 1)


def _double_holds(number: Decimal) -> bool:
    """Whether `number` is the shortest decimal of a double (so /engage would store it as sent)."""
    as_float = float(number)
    return math.isfinite(as_float) and Decimal(repr(as_float)) == number


def _json_add(stored: int | float | Decimal, operand: int | float | Decimal) -> int | float | None:
    """The sum as the service stores it; None when neither a 64-bit integer nor a double holds it exactly."""
    low, high = INTEGER_RANGE
    if isinstance(stored, int) and isinstance(operand, int):
        total = stored + operand
        return total if low <= total <= high or _double_holds(Decimal(total)) else None
    exact = _decimal(stored) + _decimal(operand)
    exponent = exact.as_tuple().exponent  # a finite number's is an int
    if (
        isinstance(exponent, int) and exponent >= 0 and low <= exact <= high
    ):  # integer form: numeric's scale 0
        return int(exact)
    return float(exact) if _double_holds(exact) else None


def _contains(items: list[Any], value: object) -> bool:
    return any(json_equal(item, value) for item in items)


# --- The model ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelWarning:
    """What the service records as an ingestion warning: a conflict with stored state, or an ignored write."""

    distinct_id: str
    operation: str
    property: str
    reason: str
    time: float


@dataclass
class _Profile:
    properties: dict[str, Any] = field(default_factory=dict)
    times: dict[str, tuple[float, TimedKind]] = field(default_factory=dict)
    last_seen: float | None = None


def _seconds(raw: object) -> float:
    """`$time` as epoch seconds: a number (below 1e11 seconds, else milliseconds) or an ISO 8601 string."""
    if is_number(raw):
        seconds = float(raw)  # type: ignore[arg-type]
        return seconds if seconds < 1e11 else seconds / 1000
    if isinstance(raw, str):
        parsed = datetime.fromisoformat(raw)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"the model needs an explicit $time, got {raw!r}")


def _distinct_id(raw: object) -> str:
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    raise ValueError(f"not a valid $distinct_id: {raw!r}")


class ProfileModel:
    """Profiles after a sequence of update records, applied one by one in arrival order."""

    def __init__(self) -> None:
        self._profiles: dict[str, _Profile] = {}
        self._deleted_at: dict[str, float] = {}
        self.warnings: list[ModelWarning] = []

    def apply(self, record: Mapping[str, Any]) -> None:
        """Apply one valid update record (`$token` and other top-level `$`-keys are ignored)."""
        distinct_id = _distinct_id(record["$distinct_id"])
        t = _seconds(record.get("$time"))

        if "$delete" in record:
            self._profiles.pop(distinct_id, None)
            self._deleted_at[distinct_id] = max(t, self._deleted_at.get(distinct_id, t))
            return
        if t < self._deleted_at.get(distinct_id, -math.inf):
            return  # stale: older than the profile tombstone

        operations = [op for op in OPERATION_ORDER if op in record]
        if not operations:
            raise ValueError(f"no operation in {record!r}")
        profile = self._profiles.get(distinct_id)
        if profile is None:
            if not CREATING_OPERATIONS.intersection(operations):
                return
            profile = self._profiles[distinct_id] = _Profile()

        update = _Update(self, distinct_id, profile, t)
        for op in operations:
            update.apply(op, record[op])
        if record.get("$ignore_time") is not True:
            profile.last_seen = t if profile.last_seen is None else max(profile.last_seen, t)

    def profiles(self) -> dict[str, dict[str, Any]]:
        """distinct_id -> {"properties": {...}, "last_seen": float | None}; absent profiles are left out."""
        return {
            distinct_id: {"properties": copy.deepcopy(p.properties), "last_seen": p.last_seen}
            for distinct_id, p in self._profiles.items()
        }

    def _warn(self, distinct_id: str, operation: str, prop: str, reason: str, t: float) -> None:
        self.warnings.append(ModelWarning(distinct_id, operation, prop, reason, t))


@dataclass
class _Update:
    """The operations of one record against one existing profile, at time `t`."""

    model: ProfileModel
    distinct_id: str
    profile: _Profile
    t: float

    def apply(self, op: str, operand: Any) -> None:
        if op == "$unset":
            names = [operand] if isinstance(operand, str) else list(operand)
            for name in names:
                self._unset(name)
            return
        if not isinstance(operand, Mapping):
            raise ValueError(f"{op} needs an object operand, got {operand!r}")
        handler = {
            "$set": self._set,
            "$set_once": self._set_once,
            "$add": self._add,
            "$union": self._union,
            "$append": self._append,
            "$remove": self._remove,
        }[op]
        for name, value in operand.items():
            if op in ("$set", "$set_once") and name in MAINTAINED_PROPERTIES:
                self._warn(op, name, "maintained by the service; ignored")
                continue
            handler(name, copy.deepcopy(value))

    # Timed operations: the per-property time decides.

    def _time(self, name: str) -> tuple[float, TimedKind] | None:
        return self.profile.times.get(name)

    def _set(self, name: str, value: Any) -> None:
        current = self._time(name)
        if current is None or self.t >= current[0]:
            self.profile.properties[name] = value
            self.profile.times[name] = (self.t, "$set")

    def _set_once(self, name: str, value: Any) -> None:
        current = self._time(name)
        if name not in self.profile.properties:
            applies = current is None or self.t >= current[0]
        else:
            applies = current is not None and current[1] == "$set_once" and current[0] > self.t
        if applies:
            self.profile.properties[name] = value
            self.profile.times[name] = (self.t, "$set_once")

    def _unset(self, name: str) -> None:
        current = self._time(name)
        if current is None or self.t >= current[0]:
            self.profile.properties.pop(name, None)
            self.profile.times[name] = (self.t, "$unset")

    # Untimed operations: arrival order decides; a conflict leaves the property as it was.

    def _add(self, name: str, value: Any) -> None:
        if not is_number(value):
            raise ValueError(f"$add.{name} must be a number, got {value!r}")
        props = self.profile.properties
        if name not in props:
            props[name] = value  # absent counts as 0, and a number sent is exact
        elif not is_number(props[name]):
            self._warn("$add", name, "stored value is not a number")
        elif (total := _json_add(props[name], value)) is None:
            self._warn("$add", name, "the sum cannot be stored exactly")
        else:
            props[name] = total

    def _union(self, name: str, value: Any) -> None:
        stored = self._stored_list("$union", name)
        if stored is None:
            return
        for item in value if isinstance(value, list) else [value]:
            if not _contains(stored, item):
                stored.append(item)
        self.profile.properties[name] = stored

    def _append(self, name: str, value: Any) -> None:
        stored = self._stored_list("$append", name)
        if stored is None:
            return
        stored.append(value)
        self.profile.properties[name] = stored

    def _remove(self, name: str, value: Any) -> None:
        if name not in self.profile.properties:
            return
        stored = self._stored_list("$remove", name)
        if stored is None:
            return
        self.profile.properties[name] = [item for item in stored if not json_equal(item, value)]

    def _stored_list(self, op: str, name: str) -> list[Any] | None:
        """The stored list (absent counts as []), or None after recording a conflict."""
        stored = self.profile.properties.get(name, [])
        if not isinstance(stored, list):
            self._warn(op, name, "stored value is not a list")
            return None
        return stored

    def _warn(self, op: str, name: str, reason: str) -> None:
        self.model._warn(self.distinct_id, op, name, reason, self.t)
