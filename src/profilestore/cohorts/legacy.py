"""Mixpanel's legacy cohort form (`selector` + `behaviors`, as `raw_cohort` carries it) -> our definition.

Two shapes are accepted.
- The web app's: `selector` is a tree of `{"operator": "and"|"or", "children": [...]}` and leaves
  `{"property": "behaviors", "value": KEY, "operator": ">=", "operand": 3}` (an event count),
  `{"property": "user", "value": NAME, "operator": "==", "operand": V}` (a profile property; also
  `defined`/`not defined`/`is_set`/`is_not_set`, `in`/`not in`, comparisons), and
  `{"property": "cohort", "value": ID, "operator": "in"|"not in"}`; `behaviors` maps KEY to
  `{"count": {"event_selector": {"event": E, "selector": S}, "type": "absolute"},
    "window": {"unit": "day"|"week"|"month", "value": N}}` or with `"from_date"`/`"to_date"` instead of the
  window.  `S` is null, an expression, or a tree of leaves with `"property": "event"`.
- The older engage form: `selector` is an expression text in which `behaviors["KEY"]` is the count, and
  `behaviors` a list of `{"name": KEY, "window": "30d"|"4w"|"3m"|{...}, "event_selectors": [{"event": E,
  "selector": S}]}` (one event selector per behavior).
Counts compare with integers: `> n` becomes `>= n+1`, `< n` `<= n-1`, `!=` a negated `==`, and a bare
`behaviors["KEY"]` is `>= 1`.  Errors name the path in the legacy definition.

The expressions built here (from trees of leaves, and the parts of a selector text without counts) are
rendered as text for the definition's JSON, which is what is stored and what schemas.py parses, once, like
any `where`.  Their strings are checked here as they go in, so an error names the field that was sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from profilestore.cohorts.paths import join_path
from profilestore.errors import BadRequest
from profilestore.expressions import ExpressionError, parse
from profilestore.expressions.ast import And, Call, Compare, Literal, LiteralValue, Node, Not, Or, Property
from profilestore.expressions.parser import storable
from profilestore.expressions.printer import render

# `behaviors["KEY"]` in an expression text becomes `user[SENTINEL + KEY]` so the grammar can parse it.
SENTINEL = "\x01behavior:"
_TOKENS = re.compile(
    r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\bbehaviors\s*\[\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')\s*\]"""
)
_UNITS = {"d": "day", "w": "week", "m": "month", "day": "day", "week": "week", "month": "month"}
_COMPARE = {"==", "!=", ">", ">=", "<", "<="}


def from_legacy(data: dict[str, Any], *, path: str) -> dict[str, Any]:
    behaviors = _behaviors(data.get("behaviors"), join_path(path, "behaviors"))
    selector = data.get("selector")
    where = join_path(path, "selector")
    if isinstance(selector, str):
        node = parse(_sentinels(selector), name=where)
        group = _from_node(node, behaviors, where)
    elif isinstance(selector, dict):
        group = _from_tree(selector, behaviors, where)
    elif selector is None and not behaviors:
        group = {"op": "and", "filters": []}
    else:
        raise BadRequest(f"{where}: must be an expression or a tree of operators")
    return group if "filters" in group else {"op": "and", "filters": [group]}


def _sentinels(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)
        name = _string_literal(match.group(1))
        return "user[" + json.dumps(SENTINEL + name) + "]"

    return _TOKENS.sub(replace, text)


def _string_literal(text: str) -> str:
    node = parse(text, name="behaviors")
    assert isinstance(node, Literal) and isinstance(node.value, str)
    return node.value


# -- behaviors ----------------------------------------------------------------------------------------


def _behaviors(value: Any, path: str) -> dict[str, dict[str, Any]]:
    """KEY -> the parts of an event filter (event, where, window)."""
    if value is None:
        return {}
    items: list[tuple[str, Any, str]]
    if isinstance(value, dict):
        items = [(str(k), v, join_path(path, str(k))) for k, v in value.items()]
    elif isinstance(value, list):
        items = []
        for i, b in enumerate(value):
            if not isinstance(b, dict) or not isinstance(b.get("name"), str):
                raise BadRequest(f"{path}[{i}].name: required")
            items.append((b["name"], b, f"{path}[{i}]"))
    else:
        raise BadRequest(f"{path}: must be an object or an array")
    return {key: _behavior(b, p) for key, b, p in items}


def _behavior(b: Any, path: str) -> dict[str, Any]:
    if not isinstance(b, dict):
        raise BadRequest(f"{path}: must be an object")
    if "event_selectors" in b:
        selectors = b["event_selectors"]
        if not isinstance(selectors, list) or len(selectors) != 1:
            raise BadRequest(f"{path}.event_selectors: exactly one event selector is supported")
        selector, selector_path = selectors[0], f"{path}.event_selectors[0]"
    else:
        count = b.get("count")
        if not isinstance(count, dict) or not isinstance(count.get("event_selector"), dict):
            raise BadRequest(f"{path}.count.event_selector: required")
        if count.get("type", "absolute") != "absolute":
            raise BadRequest(f"{path}.count.type: only absolute counts are supported")
        selector, selector_path = count["event_selector"], f"{path}.count.event_selector"
    if not isinstance(selector, dict) or not isinstance(selector.get("event"), str):
        raise BadRequest(f"{selector_path}.event: required")
    out: dict[str, Any] = {"type": "event", "event": selector["event"]}
    where = selector.get("selector")
    if isinstance(where, str) and where.strip():
        out["where"] = where
    elif isinstance(where, dict):
        out["where"] = render(_tree_expression(where, "event", f"{selector_path}.selector"))
    elif where not in (None, ""):
        raise BadRequest(f"{selector_path}.selector: must be an expression or a tree of operators")
    window = _window(b, path)
    if window is not None:
        out["window"] = window
    return out


def _window(b: dict[str, Any], path: str) -> dict[str, Any] | None:
    if "from_date" in b or "to_date" in b:
        return {"from": b.get("from_date"), "to": b.get("to_date")}
    window = b.get("window")
    if window is None:
        return None
    if isinstance(window, str):
        match = re.fullmatch(r"\s*(\d+)\s*([a-z]+)\s*", window)
        if match is None or match.group(2) not in _UNITS:
            raise BadRequest(f"{path}.window: expected like 30d, 4w or 3m")
        return {"last": int(match.group(1)), "unit": _UNITS[match.group(2)]}
    if isinstance(window, dict):
        if "from_date" in window or "to_date" in window:
            return {"from": window.get("from_date"), "to": window.get("to_date")}
        return {"last": window.get("value"), "unit": _UNITS.get(str(window.get("unit")), window.get("unit"))}
    raise BadRequest(f"{path}.window: must be an object or text like 30d")


# -- selectors ------------------------------------------------------------------------------------------


def _count(op: str, operand: Any, path: str) -> tuple[dict[str, Any], bool]:
    """A count comparison as (count, negate)."""
    if isinstance(operand, float) and operand.is_integer():
        operand = int(operand)
    if not isinstance(operand, int) or isinstance(operand, bool):
        raise BadRequest(f"{path}: a behavior's count compares with an integer")
    match op:
        case ">=" | "<=" | "==":
            value, out_op, negate = operand, op, False
        case ">":
            value, out_op, negate = operand + 1, ">=", False
        case "<":
            value, out_op, negate = operand - 1, "<=", False
        case "!=":
            value, out_op, negate = operand, "==", True
        case _:
            raise BadRequest(f"{path}: a behavior's count takes one of ==, !=, >, >=, <, <=")
    if value < 0:  # `< 0`, `<= -1`: nobody
        return {"op": ">=", "value": 0}, True
    return {"op": out_op, "value": value}, negate


def _event_filter(behaviors: dict[str, dict[str, Any]], key: str, path: str) -> dict[str, Any]:
    if key not in behaviors:
        raise BadRequest(f"{path}: no behavior named {key!r}")
    return dict(behaviors[key])


def _from_tree(node: Any, behaviors: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise BadRequest(f"{path}: must be an object")
    if "children" in node:
        op = node.get("operator", "and")
        if op not in ("and", "or") or not isinstance(node["children"], list):
            raise BadRequest(f"{path}.operator: must be one of and, or")
        return {
            "op": op,
            "filters": [
                _from_tree(c, behaviors, f"{path}.children[{i}]") for i, c in enumerate(node["children"])
            ],
        }
    kind, value, op = node.get("property"), node.get("value"), node.get("operator")
    if kind == "behaviors":
        out = _event_filter(behaviors, str(value), f"{path}.value")
        out["count"], negate = _count(str(op), node.get("operand"), f"{path}.operand")
        return {**out, "negate": negate}
    if kind == "cohort":
        if op not in ("in", "not in"):
            raise BadRequest(f"{path}.operator: must be one of in, not in")
        return {"type": "cohort", "id": value, "negate": op == "not in"}
    if kind in ("user", "properties"):
        return {"type": "property", "where": render(_tree_expression(node, "user", path))}
    raise BadRequest(f"{path}.property: must be one of behaviors, user, cohort")


def _tree_expression(node: Any, kind: str, path: str) -> Node:
    """A tree of property leaves (`"property": kind`) as an expression over properties."""
    if not isinstance(node, dict):
        raise BadRequest(f"{path}: must be an object")
    if "children" in node:
        children = node["children"]
        if not isinstance(children, list):
            raise BadRequest(f"{path}.children: must be an array")
        parts = tuple(_tree_expression(c, kind, f"{path}.children[{i}]") for i, c in enumerate(children))
        op = node.get("operator", "and")
        if op not in ("and", "or"):
            raise BadRequest(f"{path}.operator: must be one of and, or")
        return (And if op == "and" else Or)(parts) if parts else Literal(op == "and")
    if node.get("property") not in (kind, "properties") or not isinstance(node.get("value"), str):
        raise BadRequest(f'{path}: expected {{"property": "{kind}", "value": NAME, "operator": ...}}')
    prop = Property("properties", _storable(node["value"], f"{path}.value"))
    op, operand = node.get("operator"), node.get("operand")
    match op:
        case "defined" | "is_set" | "set":
            return Call("defined", (prop,))
        case "not defined" | "is_not_set" | "not set":
            return Not(Call("defined", (prop,)))
        case "in" | "not in" if isinstance(operand, list):
            return Compare(op, prop, Literal(_literal(operand, path)))
        case "contains" | "not contains":
            node_in = Compare("in", Literal(_literal(operand, path)), prop)
            return node_in if op == "contains" else Not(node_in)
        case str() if op in _COMPARE:
            return Compare(op, prop, Literal(_literal(operand, path)))  # type: ignore[arg-type]
    raise BadRequest(f"{path}.operator: unsupported operator {op!r}")


def _literal(value: Any, path: str) -> LiteralValue:
    if isinstance(value, list):
        return tuple(_literal(v, path) for v in value)
    if isinstance(value, str):
        return _storable(value, f"{path}.operand")
    if value is None or isinstance(value, bool | int | float):
        return value
    raise BadRequest(f"{path}.operand: must be a JSON scalar or an array")


def _storable(text: str, path: str) -> str:
    try:
        return storable(text)
    except ValueError as err:
        raise ExpressionError(f"{path}: {err}") from None


def _from_node(node: Node, behaviors: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    """An expression with behavior counts as a group; parts without counts stay property filters."""
    if not _mentions_behavior(node):
        return {"type": "property", "where": render(node)}
    match node:
        case And(operands) | Or(operands):
            return {
                "op": "and" if isinstance(node, And) else "or",
                "filters": [_from_node(o, behaviors, path) for o in operands],
            }
        case Not(operand):
            inner = _from_node(operand, behaviors, path)
            return {**inner, "negate": not inner.get("negate", False)}
        case Property("user", name):
            out = _event_filter(behaviors, name.removeprefix(SENTINEL), path)
            return {**out, "count": {"op": ">=", "value": 1}}
        case Compare(op, Property("user", name), Literal(value)) if op in _COMPARE:
            return _count_filter(behaviors, name, op, value, path)
        case Compare(op, Literal(value), Property("user", name)) if op in _COMPARE:
            flipped = {">": "<", "<": ">", ">=": "<=", "<=": ">="}.get(op, op)
            return _count_filter(behaviors, name, flipped, value, path)
    raise BadRequest(
        f"{path}: behaviors[...] can only be compared with an integer, or combined by and/or/not"
    )


def _count_filter(
    behaviors: dict[str, dict[str, Any]], name: str, op: str, value: Any, path: str
) -> dict[str, Any]:
    out = _event_filter(behaviors, name.removeprefix(SENTINEL), path)
    out["count"], negate = _count(op, value, path)
    return {**out, "negate": negate}


def _mentions_behavior(node: Node) -> bool:
    match node:
        case Property("user", name):
            return name.startswith(SENTINEL)
        case And(operands) | Or(operands):
            return any(_mentions_behavior(o) for o in operands)
        case Not(operand):
            return _mentions_behavior(operand)
        case Compare(_, left, right):
            return _mentions_behavior(left) or _mentions_behavior(right)
        case Call(_, args):
            return any(_mentions_behavior(a) for a in args)
    return False
