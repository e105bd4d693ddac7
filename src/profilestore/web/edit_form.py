"""The Add/Edit Profile form's values: the form as submitted (EditForm, Row), each value parsed by its type
and checked against Mixpanel's reserved properties, the problems found (Problems), and the one record a change
sends through the ingestion pipeline (record_text).  edit.py has the pages."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from profilestore.web.render import kind_of

# Mixpanel's reserved profile properties, offered first, with what each holds.
# fmt: off
RESERVED = {
    "$email": "Email address", "$first_name": "First name", "$last_name": "Last name", "$name": "Full name",
    "$phone": "Phone number, + and the country code first", "$avatar": "Picture: an https:// address",
    "$created": "When the user was created (a date)", "$city": "City", "$region": "Region",
    "$country_code": "Country (two letters)", "$timezone": "Time zone",
}
TYPES = {
    "text": "Text", "number": "Number", "boolean": "Boolean", "date": "Date", "list": "List (JSON)",
    "object": "Object (JSON)", "null": "Null",
}
# fmt: on
TEXT_ONLY = {"$email", "$first_name", "$last_name", "$name", "$phone", "$avatar"}
MAX_ROWS = 2500
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
PHONE = re.compile(r"\+[0-9][0-9 ().-]{3,30}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ROW_FIELD = re.compile(r"p-([0-9]{1,4})-name")
DATE_STORED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


@dataclass
class Row:
    """One property row of the form."""

    index: int
    name: str = ""
    type: str = "text"
    value: str = ""
    had: bool = False  # a stored property when the page was loaded: its name is fixed and it may be unset
    unset: bool = False


@dataclass
class EditForm:
    """The form's state: which profile, the mode, the rows; read from a request or from a stored profile."""

    kind: str = "user"  # or "group"
    group_key: str = ""
    profile_id: str = ""
    mode: str = "create"  # or "update"
    rows: list[Row] = field(default_factory=list)

    @property
    def key(self) -> str | None:
        return self.group_key if self.kind == "group" else None

    @property
    def storable(self) -> bool:
        """Whether the id and the key can be looked up (Postgres text holds no NUL; the pipeline says so)."""
        return "\x00" not in self.profile_id + self.group_key

    @property
    def id_field(self) -> str:
        return "$group_id" if self.kind == "group" else "$distinct_id"

    def target(self) -> dict[str, str]:
        """The profile as query parameters (for links and redirects)."""
        if self.kind == "group":
            return {"type": "group", "group_key": self.group_key, "group_id": self.profile_id}
        return {"distinct_id": self.profile_id}

    def blank(self) -> None:
        self.rows.append(Row(max((r.index for r in self.rows), default=-1) + 1))

    @classmethod
    def read(cls, form: FormData) -> EditForm:
        def text(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        indexes = sorted({int(m[1]) for k in form if (m := ROW_FIELD.fullmatch(k))})[:MAX_ROWS]
        rows = [
            Row(
                i,
                name=text(f"p-{i}-name") if text(f"p-{i}-had") else text(f"p-{i}-name").strip(),
                type=text(f"p-{i}-type") if text(f"p-{i}-type") in TYPES else "text",
                value=text(f"p-{i}-value"),
                had=bool(text(f"p-{i}-had")),
                unset=bool(text(f"p-{i}-unset")),
            )
            for i in indexes
        ]
        kind = "group" if text("type") == "group" else "user"
        mode = "update" if text("mode") == "update" else "create"
        return cls(kind, text("group_key").strip() if kind == "group" else "", text("id"), mode, rows)

    @classmethod
    def of(cls, kind: str, group_key: str, profile_id: str, stored: dict[str, Any] | None) -> EditForm:
        rows = [Row(i, k, *shown(v), had=True) for i, (k, v) in enumerate(sorted((stored or {}).items()))]
        form = cls(kind, group_key, profile_id, "update" if stored is not None else "create", rows)
        form.blank()
        return form


@dataclass
class Problems:
    """What the page says is wrong: messages, and the rows and fields they are about."""

    messages: list[str] = field(default_factory=list)
    rows: set[int] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)  # "id", "group_key", "confirm"
    applied: bool = False  # the change was applied all the same (only the profile's limits left values out)

    def add(self, message: str, row: int | None = None, field: str | None = None) -> None:
        self.messages.append(message)
        if row is not None:
            self.rows.add(row)
        if field is not None:
            self.fields.add(field)


def shown(value: Any) -> tuple[str, str]:
    """A stored value -> (type, text) as the form shows it; `parse` reads the text back to the same value."""
    kind = kind_of(value)
    if kind == "null":
        return "null", ""
    if kind == "boolean":
        return "boolean", "true" if value else "false"
    if kind == "number":
        return "number", json.dumps(value)
    if kind in ("list", "object"):
        return kind, json.dumps(value, ensure_ascii=False)
    return ("date" if DATE_STORED.fullmatch(value) else "text"), value


def parse(row: Row) -> tuple[Any, str]:
    """A row's value -> (the value, its JSON text for the record); ValueError says what is wrong."""
    text = row.value
    if row.type == "text":
        return text, json.dumps(text)
    if row.type == "null":
        return None, "null"
    if row.type == "boolean":
        if text.strip().lower() not in ("true", "false"):
            raise ValueError("must be true or false")
        flag = text.strip().lower() == "true"
        return flag, json.dumps(flag)
    if row.type == "number":
        text = text.strip()
        if not NUMBER.fullmatch(text):
            raise ValueError("must be a number, e.g. 42, -7 or 3.14")
        number: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        if number in (float("inf"), float("-inf")):
            raise ValueError("is too large a number")
        return number, text
    if row.type == "date":
        try:
            stamp = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError("must be a date, e.g. 2024-05-01 or 2024-05-01T09:30:00") from None
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        stored = f"{stamp.year:04d}-{stamp.strftime('%m-%dT%H:%M:%S')}"
        return stored, json.dumps(stored)
    expected, example = (list, '["a", "b"]') if row.type == "list" else (dict, '{"plan": "pro"}')
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, expected):
        raise ValueError(f"must be a JSON {row.type}, e.g. {example}")
    return value, text.strip()  # the text as typed: the pipeline's reader checks its numbers


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def reserved(name: str, row: Row, value: Any) -> str | None:
    """The rule a reserved property's value breaks, if any."""
    if name == "$last_seen":
        return "is kept by the service (the time of the profile's latest update); it cannot be set"
    if name in TEXT_ONLY and row.type != "text":
        return "must be text"
    if name == "$phone" and not PHONE.fullmatch(value):
        return "a + and the country code must precede the number, e.g. +14155550123"
    if name == "$email" and not EMAIL.fullmatch(value):
        return "must be an email address, e.g. ada@example.com"
    if name == "$avatar" and not value.startswith("https://"):
        return "must be an https:// address of an image"
    if name == "$created" and row.type not in ("date", "text"):
        return "must be a date"
    return None


def check(form: EditForm, problems: Problems) -> dict[str, tuple[Any, str]]:
    """The rows' values by name (unset rows left out), after the form's own rules; problems noted."""
    if not form.profile_id:
        problems.add(f"{form.id_field} is required", field="id")
    if form.kind == "group" and not form.group_key:
        problems.add("the group key is required for a group profile", field="group_key")
    values: dict[str, tuple[Any, str]] = {}
    for row in form.rows:
        if row.unset:
            continue
        if not row.name:
            if row.value.strip():
                problems.add(f"row {row.index + 1}: a value without a property name", row.index)
            continue
        if row.name in values:
            problems.add(f"{row.name}: named in two rows", row.index)
            continue
        try:
            values[row.name] = parse(row)
        except ValueError as exc:
            problems.add(f"{row.name}: {exc}", row.index)
            continue
        rule = reserved(row.name, row, values[row.name][0])
        if rule:
            problems.add(f"{row.name}: {rule}", row.index)
    return values


def same(a: Any, b: Any) -> bool:
    """Equal values of the same JSON types (True is not 1, 1 is not 1.0): their JSON texts are equal."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def record_text(form: EditForm, token: str, body: list[str]) -> bytes:
    """One update record as JSON text: the profile's keys, then `body` ("$set": ..., "$unset": ...)."""
    keys = [f'"$token":{json.dumps(token)}']
    if form.kind == "group":
        keys += [f'"$group_key":{json.dumps(form.group_key)}', f'"$group_id":{json.dumps(form.profile_id)}']
    else:
        keys.append(f'"$distinct_id":{json.dumps(form.profile_id)}')
    return ("[{" + ",".join(keys + body) + "}]").encode("utf-8", "surrogatepass")


def row_of(form: EditForm, path: str) -> tuple[str, int | None]:
    """A failure's field path ("$set.tags[0]") -> what the page names ("tags[0]") and the row (of "tags")."""
    rest = path.partition(".")[2]
    named = [r for r in form.rows if r.name and (rest + ".").startswith((r.name + "[", r.name + "."))]
    row = max(named, key=lambda r: len(r.name), default=None)
    return rest, row.index if row else None
