"""The Users page's filter builder: rows of conditions as plain form fields, turned into a `where` expression
(property conditions) and a cohort definition (behavioural conditions), and described for people.

The builder is part of the table's URL, like everything else on the page:
    match=and|or            how groups combine
    g0=and|or, g1=...       each group: how its conditions combine
    c0_g=0                  the group of condition 0, and its fields:
    c0_kind=prop            c0_prop, c0_type (text|number|boolean|date|list), c0_op, c0_v, c0_v2
    c0_kind=event           c0_event, c0_cop (>=|<=|==), c0_n (times), c0_days (empty: ever)
Without JavaScript the buttons `add` (`prop:G`, `event:G`, `group`), `remove` (`c:J`, `g:G`) and `to_text`
submit the form and the server changes the rows; filter.js does the same in the page and asks
`/users/filter.json` for the expression as the rows change.

Compiled: with property conditions only, one expression (`where`); with behavioural ones, the groups that
hold them become a cohort definition (query.md, Cohorts) ANDed with the expression of the others, or, when
groups combine with `or`, the whole builder is one definition (property conditions as property filters).
A row without its property or event name is still being written and is left out.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_GROUPS = 10
MAX_CONDITIONS = 50
DAY = 86400

# op -> label; one list for every type, each type allows some (OPS_BY_TYPE).
OPS = {
    "eq": "equals",
    "ne": "does not equal",
    "contains": "contains",
    "not_contains": "does not contain",
    "gt": "greater than / after",
    "lt": "less than / before",
    "between": "between dates",
    "last": "in the last N days",
    "true": "is true",
    "false": "is false",
    "set": "is set",
    "not_set": "is not set",
}
TYPES = {"text": "Text", "number": "Number", "boolean": "Boolean", "date": "Date", "list": "List"}
OPS_BY_TYPE = {
    "text": ["eq", "ne", "contains", "not_contains", "gt", "lt", "set", "not_set"],
    "number": ["eq", "ne", "gt", "lt", "set", "not_set"],
    "boolean": ["true", "false", "set", "not_set"],
    "date": ["between", "last", "gt", "lt", "set", "not_set"],
    "list": ["contains", "not_contains", "set", "not_set"],
}
NO_VALUE = {"set", "not_set", "true", "false"}
PROP_FIELDS = ("prop", "type", "op", "v", "v2")
EVENT_FIELDS = ("event", "cop", "n", "days")
COUNT_OPS = {">=": "at least", "<=": "at most", "==": "exactly"}
_FIELD = re.compile(r"c(\d{1,4})_(g|kind|prop|type|op|v|v2|event|cop|n|days)")
_GROUP = re.compile(r"g(\d{1,4})")
_DAY_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")


class FilterError(ValueError):
    """A condition that cannot be turned into a filter; the message names it."""


@dataclass
class Condition:
    kind: str = "prop"  # "prop" or "event"
    prop: str = ""
    type: str = "text"
    op: str = "eq"
    v: str = ""
    v2: str = ""
    event: str = ""
    cop: str = ">="
    n: str = "1"
    days: str = ""

    @property
    def complete(self) -> bool:
        return bool(self.event.strip() if self.kind == "event" else self.prop.strip())


@dataclass
class Group:
    op: str = "and"
    conditions: list[Condition] = field(default_factory=list)


@dataclass
class Built:
    """What the builder's rows filter by: `where` ("" for none) AND `definition` (None for none)."""

    where: str = ""
    definition: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "definition": self.definition,
            "behaviour": describe(self.definition) if self.definition else "",
            "errors": self.errors,
        }


@dataclass
class Builder:
    match: str = "and"
    groups: list[Group] = field(default_factory=list)
    moved: str = ""  # "Edit as text" took the property conditions out: their expression

    @classmethod
    def of(cls, q: Mapping[str, str]) -> tuple[Builder, str | None]:
        """The builder of a query string, after its action (add, remove, to text), and the anchor of a row
        the action added (None: no action; "" an action without a new row)."""
        groups: dict[int, Group] = {}
        rows: dict[int, dict[str, str]] = {}
        for key, value in q.items():
            if m := _GROUP.fullmatch(key):
                groups.setdefault(int(m[1]), Group()).op = "or" if value == "or" else "and"
            elif m := _FIELD.fullmatch(key):
                rows.setdefault(int(m[1]), {})[m[2]] = value
        by_index: dict[str, Condition] = {}
        for i in sorted(rows):
            fields = rows[i]
            g = fields.pop("g", "0")
            group = groups.setdefault(int(g) if g.isdigit() else 0, Group())
            cond = Condition(**fields)
            if cond.kind not in ("prop", "event"):
                cond.kind = "prop"
            group.conditions.append(cond)
            by_index[str(i)] = cond
        builder = cls("or" if q.get("match") == "or" else "and", [groups[i] for i in sorted(groups)])
        group_of = {str(i): groups[i] for i in groups}
        anchor = builder._act(q, by_index, group_of)
        builder.groups = builder.groups[:MAX_GROUPS]
        return builder, anchor

    def _act(self, q: Mapping[str, str], rows: dict[str, Condition], groups: dict[str, Group]) -> str | None:
        add, remove = q.get("add"), q.get("remove")
        if add:
            if add == "group":
                if len(self.groups) >= MAX_GROUPS:
                    return ""
                self.groups.append(Group())
                return f"g{len(self.groups) - 1}"
            kind, _, g = add.partition(":")
            group = groups.get(g) or (self.groups[0] if self.groups else None)
            if group is None:
                group = Group()
                self.groups.append(group)
            if self.count() >= MAX_CONDITIONS:
                return ""
            cond = Condition(kind="event" if kind == "event" else "prop")
            group.conditions.append(cond)
            return next(f"c{i}" for _, _, conds in self.numbered() for i, c in conds if c is cond)
        if remove:
            kind, _, i = remove.partition(":")
            if kind == "g" and i in groups:
                self.groups = [g for g in self.groups if g is not groups[i]]
            elif kind == "c" and i in rows:
                for group in self.groups:
                    group.conditions = [c for c in group.conditions if c is not rows[i]]
            return ""
        if "to_text" in q:
            built = self.compile()
            if built.errors:
                return None  # nothing moves: the page shows what is wrong
            if self.match == "or" and built.definition is not None:
                return ""  # every condition is or-ed with a behaviour: none can move out on its own
            self.moved = built.where
            self.groups = [g for g in self.groups if any(c.kind == "event" for c in g.conditions)]
            return ""
        return None

    def count(self) -> int:
        return sum(len(g.conditions) for g in self.groups)

    def params(self) -> dict[str, str]:
        """The rows as query parameters, numbered afresh (nothing for an empty builder)."""
        out: dict[str, str] = {}
        if not self.count() and len(self.groups) <= 1:
            return out
        out["match"] = self.match
        i = 0
        for g, group in enumerate(self.groups):
            out[f"g{g}"] = group.op
            for cond in group.conditions:
                out[f"c{i}_g"] = str(g)
                out[f"c{i}_kind"] = cond.kind
                for name in PROP_FIELDS if cond.kind == "prop" else EVENT_FIELDS:
                    out[f"c{i}_{name}"] = getattr(cond, name)
                i += 1
        return out

    def numbered(self) -> list[tuple[int, Group, list[tuple[int, Condition]]]]:
        """(group index, group, [(condition index, condition)]) as params() numbers them, for the template."""
        out = []
        i = 0
        for g, group in enumerate(self.groups):
            conds = []
            for cond in group.conditions:
                conds.append((i, cond))
                i += 1
            out.append((g, group, conds))
        return out

    def compile(self) -> Built:
        built = Built()
        parts: list[tuple[Group, list[tuple[str, str | None]], list[dict[str, Any]]]] = []
        n = 0
        for group in self.groups:
            props: list[tuple[str, str | None]] = []
            events: list[dict[str, Any]] = []
            for cond in group.conditions:
                n += 1
                if not cond.complete:
                    continue
                try:
                    if cond.kind == "event":
                        events.append(event_filter(cond))
                    else:
                        props.append(property_expression(cond))
                except FilterError as exc:
                    built.errors.append(f"condition {n} ({_name(cond)}): {exc}")
            if props or events:
                parts.append((group, props, events))
        if built.errors or not parts:
            return built
        if not any(events for _, _, events in parts):
            built.where = _join([_join(props, g.op) for g, props, _ in parts], self.match)[0]
            return built
        if self.match == "and":
            built.where = _join([_join(props, g.op) for g, props, events in parts if not events], "and")[0]
            defs = [_group_definition(g, props, events) for g, props, events in parts if events]
        else:
            defs = [_group_definition(g, props, events) for g, props, events in parts]
        built.definition = defs[0] if len(defs) == 1 else {"op": self.match, "filters": defs}
        return built


def and_texts(*texts: str) -> str:
    """Expressions ANDed into one ("" for none)."""
    found = [t for t in texts if t]
    return found[0] if len(found) == 1 else " and ".join(f"({t})" for t in found)


def _name(cond: Condition) -> str:
    return (cond.event if cond.kind == "event" else cond.prop).strip()


def _join(parts: list[tuple[str, str | None]], op: str) -> tuple[str, str | None]:
    """Expressions joined by `op`, each in brackets when it is a chain of the other operator; with the
    operator the result is a chain of (None: a single term)."""
    parts = [p for p in parts if p[0]]
    if not parts:
        return "", None
    if len(parts) == 1:
        return parts[0]
    texts = [f"({text})" if chain not in (None, op) else text for text, chain in parts]
    return f" {op} ".join(texts), op


def _group_definition(
    group: Group, props: list[tuple[str, str | None]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    where = _join(props, group.op)[0]
    if where:
        filters.append({"type": "property", "where": where})
    filters.extend(events)
    return {"op": group.op, "filters": filters}


def _string(value: str) -> str:
    return orjson.dumps(value).decode()


def _number(text: str) -> str:
    try:
        value = float(text.strip())
    except ValueError:
        raise FilterError(f"{text.strip() or 'nothing'} is not a number") from None
    if not math.isfinite(value):
        raise FilterError(f"{text.strip()} is not a finite number")
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _day(text: str) -> dt.date:
    text = text.strip()
    try:
        if not _DAY_TEXT.fullmatch(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{text or 'nothing'} is not a date (YYYY-MM-DD)") from None


def _whole(text: str, what: str, least: int) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) < least or int(text) > 36_600:
        raise FilterError(f"{what}: {text or 'nothing'} is not a whole number from {least} to 36600")
    return int(text)


def property_expression(cond: Condition) -> tuple[str, str | None]:
    """The expression of one property condition, and "and" when it is a chain (between)."""
    if cond.type not in OPS_BY_TYPE:
        raise FilterError(f"unknown type {cond.type!r}")
    if cond.op not in OPS_BY_TYPE[cond.type]:
        label = OPS.get(cond.op, cond.op)
        raise FilterError(f"“{label}” does not apply to {TYPES[cond.type].lower()} properties")
    p = f"properties[{_string(cond.prop.strip())}]"
    op = cond.op
    if op == "set":
        return f"defined({p})", None
    if op == "not_set":
        return f"not defined({p})", None
    if op in ("true", "false"):
        return f"{p} == {op}", None
    if cond.type == "date":
        d = f"datetime({p})"
        if op == "last":
            return f"{d} >= now() - {_whole(cond.v, 'days', 1)} * {DAY}", None
        start = _day(cond.v)
        if op == "gt":
            return f'{d} >= "{start + dt.timedelta(days=1)}"', None
        if op == "lt":
            return f'{d} < "{start}"', None
        end = _day(cond.v2)
        if end < start:
            raise FilterError(f"{end} is before {start}")
        return f'{d} >= "{start}" and {d} < "{end + dt.timedelta(days=1)}"', "and"
    value = _number(cond.v) if cond.type == "number" else _string(cond.v)
    if op in ("contains", "not_contains"):
        return f"{value} {'in' if op == 'contains' else 'not in'} {p}", None
    return f"{p} {dict(eq='==', ne='!=', gt='>', lt='<')[op]} {value}", None


def event_filter(cond: Condition) -> dict[str, Any]:
    """The cohort filter of one behavioural condition."""
    name = cond.event.strip()
    if len(name) > 255:
        raise FilterError("an event name has at most 255 characters")
    if cond.cop not in COUNT_OPS:
        raise FilterError(f"unknown count {cond.cop!r}")
    out: dict[str, Any] = {
        "type": "event",
        "event": name,
        "count": {"op": cond.cop, "value": _whole(cond.n, "times", 0)},
    }
    if cond.days.strip():
        out["window"] = {"last": _whole(cond.days, "days", 1), "unit": "day"}
    return out


def describe(node: dict[str, Any] | None, top: bool = True) -> str:
    """A definition as one line a person reads: expressions as written, behaviour in words."""
    if not node:
        return ""
    text = _describe(node, top)
    return f"not ({text})" if node.get("negate") else text


def _describe(node: dict[str, Any], top: bool) -> str:
    kind = node.get("type")
    if kind == "property":
        return str(node.get("where", ""))
    if kind == "cohort":
        return f"in cohort {node.get('id')}"
    if kind == "event":
        count = node.get("count") or {"op": ">=", "value": 1}
        op, n = count.get("op", ">="), count.get("value", 1)
        name = _string(str(node.get("event", "")))
        if (op == "==" and n == 0) or (op == "<=" and n == 0):
            text = f"did not do {name}"
        elif op == ">=" and n == 1:
            text = f"did {name}"
        else:
            text = f"did {name} {COUNT_OPS.get(op, op)} {n} time{'s' if n != 1 else ''}"
        if node.get("where"):
            text += f" where {node['where']}"
        return text + _window(node.get("window"))
    filters = node.get("filters") or []
    parts = [describe(f, top=False) for f in filters]
    if not parts:
        return "everyone" if node.get("op", "and") == "and" else "no one"
    joined = f" {node.get('op', 'and')} ".join(parts)
    return joined if top or len(parts) == 1 else f"({joined})"


def _window(window: dict[str, Any] | None) -> str:
    if not window:
        return ""
    if "last" in window:
        n, unit = window["last"], window.get("unit", "day")
        return f" in the last {n} {unit}{'s' if n != 1 else ''}"
    return f" from {window.get('from')} to {window.get('to')}"


def template_values() -> dict[str, Any]:
    """What the builder's template (_filter.html) needs besides the view."""
    return {
        "filter_ops": OPS,
        "filter_types": TYPES,
        "filter_ops_by_type": orjson.dumps(OPS_BY_TYPE).decode(),
        "filter_no_value": sorted(NO_VALUE),
        "count_ops": COUNT_OPS,
        "describe": describe,
    }
