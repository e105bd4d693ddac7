"""The rules of /track and /import events (docs/ingest.md section 5): pydantic for the shape
(`record_adapter`, `field_error`), then `normalise`: one record of the right shape -> an `Event` (valid,
normalised: what the SQL statement carries) or a `RecordError` (field path, rule in plain words).  The loop
over a request's records is the pipeline's (ingest/pipeline.py).

Decisions where the contract (docs/) leaves room:
* an empty or missing `distinct_id` is stored as '' (no user; never in users_seen);
* an event without `$insert_id` (allowed on /track only) gets none: insert_id is NULL and it is never
  deduplicated (NULLs are distinct in the unique index); nothing is derived from its content;
* `properties` are stored whole minus `token` (distinct_id, time and $insert_id stay in them as sent, and
  are also the columns);
* two events of one request with the same key: the later copy is kept (`dedupe`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from profilestore.ingest.pipeline import id_text, nests_deeper, parse_time
from profilestore.ingest.responses import RecordError
from profilestore.settings import Settings

EVENT_MIN_TIME = 31_536_000.0  # 1971-01-01T00:00:00Z: earlier times are invalid
MAX_EVENT_PROPERTIES = 255
# How deep lists and objects may nest in one property value ([1] is 1 level): far more than any event
# needs, far less than what would exhaust a JSON writer's or reader's stack.
MAX_VALUE_DEPTH = 64
_CONTAINERS = frozenset({dict, list})

# Ids that clients send by mistake (unset variables, stringified empties): invalid, case-insensitively.
PLACEHOLDER_IDS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "<nil>",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
        "[object object]",
        "nan",
    }
)
_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}", re.ASCII)


class EventRecord(TypedDict, total=False):
    event: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    properties: dict[str, Any]


record_adapter: TypeAdapter[EventRecord] = TypeAdapter(EventRecord)

_MESSAGES = {
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most 255 characters",
}
_Id = StrictStr | StrictInt | StrictFloat


@dataclass(slots=True)
class Event:
    """One valid event, normalised: what the SQL statement carries for it."""

    index: int
    token: str | None  # properties.token (/track); None on /import, whose project comes from its credentials
    event: str
    distinct_id: str  # '' when the event has no user
    time: datetime  # UTC, microseconds
    insert_id: str | None
    properties: dict[str, Any]  # minus token


def error_id(record: Any, id_field: str) -> str | None:
    """The raw record's `$distinct_id` (properties.distinct_id) or `$insert_id`, for error reports."""
    props = record.get("properties") if isinstance(record, dict) else None
    if not isinstance(props, dict):
        return None
    value = props.get("distinct_id" if id_field == "$distinct_id" else "$insert_id")
    return None if value is None else id_text(value)


def field_error(error: ErrorDetails) -> tuple[str, str]:
    """A pydantic error -> (field path, message)."""
    path = ".".join(str(p) for p in error["loc"] if p != "[key]")
    return path, _MESSAGES.get(error["type"], str(error["msg"]))


def normalise(
    index: int, rec: EventRecord, *, now: float, importing: bool, id_field: str, settings: Settings
) -> Event | RecordError:
    props = rec.get("properties", {})

    def fail(path: str, message: str) -> RecordError:
        return RecordError(index, id_field, error_id({"properties": props}, id_field), path, message)

    if "event" not in rec:
        return fail("event", "is required")
    if len(props) - ("token" in props) > MAX_EVENT_PROPERTIES:
        return fail("properties", f"an event has at most {MAX_EVENT_PROPERTIES} properties")
    if not _CONTAINERS.isdisjoint(map(type, props.values())):
        for name, value in props.items():
            if type(value) in _CONTAINERS and nests_deeper(value, MAX_VALUE_DEPTH):
                return fail(f"properties.{name}", f"values nest at most {MAX_VALUE_DEPTH} levels")

    token = props.get("token")
    if not importing:
        if token is None:
            return fail("properties.token", "is required")
        if not isinstance(token, str):
            return fail("properties.token", "must be a string")

    raw_id = props.get("distinct_id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float))):
        return fail("properties.distinct_id", "must be a string or a number")
    distinct = "" if raw_id is None else id_text(raw_id)
    if distinct and not distinct.strip():
        return fail("properties.distinct_id", "must not be blank")
    if distinct.strip().lower() in PLACEHOLDER_IDS:
        return fail("properties.distinct_id", f"{distinct!r} is a placeholder, not an id")
    if len(distinct) > 255:
        return fail("properties.distinct_id", "must be at most 255 characters")

    raw_time = props.get("time")
    if raw_time is None:
        if importing:
            return fail("properties.time", "is required on /import")
        t = now
    else:
        if isinstance(raw_time, bool) or not isinstance(raw_time, (str, int, float)):
            return fail("properties.time", "must be epoch seconds or milliseconds, or an ISO 8601 date")
        try:
            t = parse_time(raw_time, now, math.inf)
        except (ValueError, OverflowError):
            return fail("properties.time", "must be epoch seconds or milliseconds, or an ISO 8601 date")
        if t < EVENT_MIN_TIME:
            return fail("properties.time", "must not be before 1971")
        if t > now + settings.future_clamp_seconds:
            return fail("properties.time", "must not be more than an hour in the future")

    insert_id = props.get("$insert_id")
    if insert_id is None:
        if importing:
            return fail("properties.$insert_id", "is required on /import")
    elif not isinstance(insert_id, str) or _INSERT_ID.fullmatch(insert_id) is None:
        return fail("properties.$insert_id", "must be 1 to 36 letters, digits or '-'")

    stored = {k: v for k, v in props.items() if k != "token"} if "token" in props else props
    stamp = datetime.fromtimestamp(t, UTC)
    return Event(index, token, rec["event"], distinct, stamp, insert_id, stored)


def dedupe(rows: list[tuple[int, Event]]) -> list[tuple[int, Event]]:
    """(project_id, event) pairs with the later copy of each (project, event, distinct_id, time, $insert_id)
    kept: ON CONFLICT DO UPDATE cannot touch one row twice in a statement.  Events without $insert_id
    are all kept."""
    kept: dict[tuple[Any, ...], tuple[int, Event]] = {}
    for n, (project_id, ev) in enumerate(rows):
        key: tuple[Any, ...] = (
            (project_id, ev.event, ev.distinct_id, ev.time, ev.insert_id)
            if ev.insert_id is not None
            else (n,)
        )
        kept[key] = (project_id, ev)
    return list(kept.values())
