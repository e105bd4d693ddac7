"""The rules of /engage and /groups update records (docs/ingest.md sections 3 and 4): pydantic for the shape
(`record_adapter`, `field_error`), then `normalise`: one record of the right shape -> an `Update` (valid,
normalised: what the SQL batch carries) or a `RecordError` (field path, rule in plain words).  The loop over
a request's records is the pipeline's (ingest/pipeline.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from profilestore.ingest.pipeline import id_text, nests_deeper, parse_time
from profilestore.ingest.responses import RecordError
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
record_adapter: TypeAdapter[EngageRecord] = TypeAdapter(EngageRecord)

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
    group_key: str | None = None  # set for group profiles (/groups)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, property, reason)


def field_error(error: ErrorDetails) -> tuple[str, str]:
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


_CONTAINERS = (dict, list)
# The earliest $time taken: 0001-01-01T00:00:00Z (earlier ones could only be shown with an era).
MIN_TIME = -62_135_596_800.0


def _check_container(value: dict[str, Any] | list[Any], settings: Settings, check_size: bool) -> str | None:
    """The limits on one list or object value (scalars have none: orjson never yields NaN or infinity).
    `check_size` is False when the whole body is smaller than the limit (so no value can be over it)."""
    flat = type(value) is list and not any(type(v) in _CONTAINERS for v in value)
    if not flat and nests_deeper(value, settings.max_value_depth):
        return f"values nest at most {settings.max_value_depth} levels"
    if check_size and len(orjson.dumps(value)) > settings.max_value_bytes:
        return f"a list or object value is at most {settings.max_value_bytes} bytes"
    return None


def normalise(
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
    if t < MIN_TIME:
        return fail("$time", "must not be before year 1 (0001-01-01T00:00:00Z)")

    body: dict[str, Any] = {"t": t}
    if rec.get("$ignore_time"):
        body["it"] = True
    update = Update(index, rec["$token"], distinct, body, group_key=group_key)
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
