"""Validation of /engage update records: pydantic for the shape, then the limits of docs/ingest.md section 3.

`validate_updates` turns the decoded records of one request into `Update`s (valid, normalised) and
`RecordError`s (index, field path, rule in plain words).  A bad record never costs the good ones beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from profilestore.ingest.responses import RecordError
from profilestore.ingest.wire import InexactNumber
from profilestore.settings import Settings

Number = StrictInt | StrictFloat
Name = Annotated[StrictStr, Field(min_length=1, max_length=255)]

# The operations in the order they apply within one record, and their short names in the SQL batch.
OPERATIONS = {
    "$set": "set",
    "$set_once": "once",
    "$add": "add",
    "$union": "union",
    "$append": "append",
    "$remove": "remove",
    "$unset": "unset",
}

EngageRecord = TypedDict(
    "EngageRecord",
    {
        "$token": StrictStr,
        "$distinct_id": StrictStr | StrictInt | StrictFloat,
        "$group_key": Name,
        "$group_id": StrictStr | StrictInt | StrictFloat,
        "$time": StrictInt | StrictFloat | StrictStr,
        "$ignore_time": StrictBool | StrictInt,
        "$ip": Any,
        "$set": dict[Name, Any],
        "$set_once": dict[Name, Any],
        "$add": dict[Name, Number],
        "$union": dict[Name, Any],
        "$append": dict[Name, Any],
        "$remove": dict[Name, Any],
        "$unset": list[Name] | Name,
        "$delete": Any,
    },
    total=False,
)
_record_adapter: TypeAdapter[EngageRecord] = TypeAdapter(EngageRecord)

_MESSAGES = {
    "int_type": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most 255 characters",
}


@dataclass(slots=True)
class Update:
    """One valid update record, normalised: what the SQL batch carries for it."""

    index: int
    project_token: str
    distinct_id: str  # the group id for a group profile
    body: dict[str, Any]  # {"t": T, "it"?: true, "set": {...}, ..., "del"?: true}
    ip: str | None = None  # the record's $ip, for geolocation (geo.py); never stored
    group_key: str | None = None  # set for group profiles (/groups)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, property, reason)


def _field_error(error: Any) -> tuple[str, str]:
    """A pydantic error -> (field path, message).  Union branches add type names to loc: drop them."""
    loc = [str(part) for part in error["loc"] if part not in ("str", "int", "float", "bool", "list[...]")]
    loc = [p for p in loc if p != "[key]" and not p.startswith(("constrained-str", "list[", "function-"))]
    kind = error["type"]
    if kind.endswith("_type") and len(loc) >= 1 and loc[0] in ("$distinct_id", "$group_id", "$time"):
        message = {
            "$distinct_id": "must be a string or a number",
            "$group_id": "must be a string or a number",
            "$time": "must be a number or an ISO 8601 date",
        }[loc[0]]
    elif kind.startswith("string_too") and loc == ["$group_key"]:
        message = "must be 1 to 255 characters"
    elif kind == "string_too_long" and len(loc) >= 2:
        message = "property names must be at most 255 characters"
    elif kind == "string_too_short" and len(loc) >= 2:
        message = "property names must not be empty"
    else:
        message = _MESSAGES.get(kind, str(error["msg"]))
    return ".".join(loc), message


def id_text(raw: Any) -> str:
    """An id as text: strings as they are, a whole float as an integer, anything else as its JSON."""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return raw if isinstance(raw, str) else orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS).decode()


def record_id(record: Any, id_field: str = "$distinct_id") -> str | None:
    """The `$distinct_id` (or `$group_id`) of a raw record as text, for error reports; None without one."""
    if isinstance(record, dict) and record.get(id_field) is not None:
        return id_text(record[id_field])
    return None


def parse_time(value: int | float | str | None, now: float, future_clamp: float) -> float:
    """$time -> epoch seconds: seconds or milliseconds (below 1e11 is seconds) or ISO 8601; clamped."""
    if value is None:
        return now
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_time(float(text), now, future_clamp)  # epoch seconds or ms sent as text
        except ValueError:
            pass
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        t = stamp.timestamp()
    else:
        t = float(value)
        if not math.isfinite(t):
            raise ValueError("not finite")
        if abs(t) >= 1e11:
            t /= 1000.0
    return now if t > now + future_clamp else t


_CONTAINERS = (dict, list)


def _depth(value: Any) -> int:
    """How deep lists and objects nest: a scalar is 0, [1] is 1, [[1]] is 2."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _check_container(value: dict[str, Any] | list[Any], settings: Settings, check_size: bool) -> str | None:
    """The limits on one list or object value (scalars have none: orjson never yields NaN or infinity).
    `check_size` is False when the whole body is smaller than the limit (so no value can be over it)."""
    flat = type(value) is list and not any(type(v) in _CONTAINERS for v in value)
    if not flat and _depth(value) > settings.max_value_depth:
        return f"values nest at most {settings.max_value_depth} levels"
    if check_size and len(orjson.dumps(value)) > settings.max_value_bytes:
        return f"a list or object value is at most {settings.max_value_bytes} bytes"
    return None


def _normalise(
    index: int, rec: EngageRecord, now: float, settings: Settings, check_size: bool, id_field: str
) -> Update | RecordError:
    def fail(path: str, message: str) -> RecordError:
        return RecordError(index, id_field, distinct, path, message)

    raw_id = rec.get(id_field)
    distinct = None if raw_id is None else (raw_id if isinstance(raw_id, str) else id_text(raw_id))
    if "$token" not in rec:
        return fail("$token", "is required")
    if raw_id is None:
        return fail(id_field, "is required")
    assert distinct is not None
    if not distinct or not distinct.strip():
        return fail(id_field, "must not be empty")
    if len(distinct) > 255:
        return fail(id_field, "must be at most 255 characters")
    group_key = rec.get("$group_key") if id_field == "$group_id" else None
    if id_field == "$group_id" and group_key is None:
        return fail("$group_key", "is required")
    try:
        t = parse_time(rec.get("$time"), now, settings.future_clamp_seconds)
    except (ValueError, OverflowError):
        return fail("$time", "must be epoch seconds or milliseconds, or an ISO 8601 date")

    body: dict[str, Any] = {"t": t}
    if rec.get("$ignore_time"):
        body["it"] = True
    raw_ip = rec.get("$ip")
    update = Update(
        index, rec["$token"], distinct, body, ip=None if raw_ip is None else str(raw_ip), group_key=group_key
    )
    ops = [op for op in OPERATIONS if op in rec]
    if "$delete" in rec:
        if ops:
            return fail("$delete", f"must stand alone (found {', '.join(ops)})")
        body["del"] = True
        return update
    if not ops:
        return fail("", "has no operation ($set, $set_once, $add, $union, $append, $remove, $unset, $delete)")
    for op in ops:
        operand: Any = rec[op]  # type: ignore[literal-required]
        if op == "$unset":
            body["unset"] = [operand] if isinstance(operand, str) else operand
            continue
        if op in ("$set", "$set_once") and "$last_seen" in operand:
            operand = {k: v for k, v in operand.items() if k != "$last_seen"}
            update.warnings.append((op, "$last_seen", "$last_seen is maintained by the service; ignored"))
        if op == "$union":
            operand = {k: v if isinstance(v, list) else [v] for k, v in operand.items()}
        for name, value in operand.items():
            if type(value) in _CONTAINERS:
                problem = _check_container(value, settings, check_size)
                if problem:
                    return fail(f"{op}.{name}", problem)
        if operand:
            body[OPERATIONS[op]] = operand
    if not any(k in body for k in OPERATIONS.values()):
        # Only empty operands (or only $last_seen): still a valid record, and like Mixpanel's empty $set it
        # creates the profile.
        body["set"] = {}
    return update


def precheck(
    index: int,
    record: Any,
    *,
    id_field: str,
    id_of: Callable[[Any, str], str | None],
    check_size: bool,
    max_bytes: int,
    noun: str = "record",
) -> RecordError | None:
    """What every ingested record is checked for before its shape (/engage, /groups, /track, /import): a
    number that would not be stored exactly, not being a JSON object, its size."""
    if isinstance(record, InexactNumber):
        message = f"the number {record.number} cannot be stored exactly; send it as a string"
        return RecordError(index, id_field, id_of(record.record, id_field), record.path, message)
    if not isinstance(record, dict):
        return RecordError(index, id_field, None, "", "must be a JSON object")
    if check_size and len(orjson.dumps(record)) > max_bytes:
        return RecordError(
            index, id_field, id_of(record, id_field), "", f"the {noun} is over {max_bytes} bytes"
        )
    return None


def validate_updates(
    records: list[Any], *, now: float, settings: Settings, body_bytes: int, id_field: str = "$distinct_id"
) -> tuple[list[Update], list[RecordError]]:
    """Valid updates (in request order) and the errors of the invalid records.  `id_field` is
    "$distinct_id" for /engage and "$group_id" for /groups (whose records also carry `$group_key`)."""
    updates: list[Update] = []
    errors: list[RecordError] = []
    check_size = body_bytes > settings.max_record_bytes
    for index, record in enumerate(records):
        problem = precheck(
            index,
            record,
            id_field=id_field,
            id_of=record_id,
            check_size=check_size,
            max_bytes=settings.max_record_bytes,
        )
        if problem:
            errors.append(problem)
            continue
        try:
            rec = _record_adapter.validate_python(record)
        except ValidationError as exc:
            path, message = _field_error(exc.errors()[0])
            errors.append(RecordError(index, id_field, record_id(record, id_field), path, message))
            continue
        result = _normalise(index, rec, now, settings, body_bytes > settings.max_value_bytes, id_field)
        if isinstance(result, RecordError):
            errors.append(result)
        else:
            updates.append(result)
    return updates, errors
