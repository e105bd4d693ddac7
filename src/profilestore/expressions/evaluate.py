"""The plain-Python evaluator: the language's reference semantics, used by tests against the SQL compiler
and by the SQL compiler itself to fold the parts of an expression that do not read a property.

Operations mirror 0004_expressions.sql exactly, including where Postgres would raise: arithmetic that
overflows (or underflows to zero) is undefined, as the SQL helpers make it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from profilestore.expressions import values as v
from profilestore.expressions.ast import And, Arith, Call, Compare, Literal, Negate, Node, Not, Or, Property
from profilestore.expressions.values import UNDEFINED, Datetime

__all__ = ["evaluate", "evaluate_raw", "export"]


def evaluate(
    node: Node, properties: Mapping[str, Any], *, user: Mapping[str, Any] | None = None, now: float
) -> Any:
    """The value of `node` for one row (or UNDEFINED): JSON values as decoded, numbers computed as floats,
    datetimes as ISO text "YYYY-MM-DDTHH:MM:SS" (what compile_value gives). Computed properties such as
    `$last_seen` are read from `properties` like any other."""
    return export(evaluate_raw(node, properties, user=user, now=now))


def export(value: Any) -> Any:
    return v.iso_text(value.epoch) if isinstance(value, Datetime) else value


def evaluate_raw(
    node: Node, properties: Mapping[str, Any], *, user: Mapping[str, Any] | None = None, now: float
) -> Any:
    """As `evaluate`, but datetimes stay `Datetime`."""
    return _Evaluator(properties, properties if user is None else user, now).eval(node)


def _thaw(value: Any) -> Any:
    return [_thaw(x) for x in value] if isinstance(value, tuple) else value


class _Evaluator:
    def __init__(self, properties: Mapping[str, Any], user: Mapping[str, Any], now: float) -> None:
        self.properties = properties
        self.user = user
        self.now = now

    def eval(self, node: Node) -> Any:
        match node:
            case Literal(value):
                return _thaw(value)
            case Property(source, name):
                row = self.user if source == "user" else self.properties
                return row.get(name, UNDEFINED)
            case Not(operand):
                return not v.truthy(self.eval(operand))
            case And(operands):
                return all(v.truthy(self.eval(o)) for o in operands)
            case Or(operands):
                return any(v.truthy(self.eval(o)) for o in operands)
            case Negate(operand):
                x = self.eval(operand)
                return UNDEFINED if isinstance(x, Datetime) else _neg(v.to_float(x))
            case Compare(op, left, right):
                return compare(op, self.eval(left), self.eval(right))
            case Arith(op, left, right):
                return arith(op, self.eval(left), self.eval(right))
            case Call("now", ()):
                return Datetime(self.now)
            case Call(name, args):
                return _FUNCTIONS[name](*(self.eval(a) for a in args))
        raise AssertionError(node)


def _neg(x: Any) -> Any:
    return UNDEFINED if x is UNDEFINED else -x


def equal(a: Any, b: Any) -> bool:
    if a is UNDEFINED or b is UNDEFINED:
        return False
    if isinstance(b, Datetime):
        a, b = b, a
    if isinstance(a, Datetime):
        if isinstance(b, Datetime):
            return a.epoch == b.epoch
        return isinstance(b, str) and v.iso_epoch(b) == a.epoch
    return v.json_equal(a, b)


def _order(a: Any, b: Any) -> int | None:
    """-1/0/1, or None where the types do not order."""
    x: Any
    y: Any
    if isinstance(a, Datetime) or isinstance(b, Datetime):
        x = a.epoch if isinstance(a, Datetime) else v.iso_epoch(a) if isinstance(a, str) else UNDEFINED
        y = b.epoch if isinstance(b, Datetime) else v.iso_epoch(b) if isinstance(b, str) else UNDEFINED
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b
    else:
        x, y = v.to_float(a), v.to_float(b)
    if x is UNDEFINED or y is UNDEFINED:
        return None
    return -1 if x < y else 1 if x > y else 0


def _in(a: Any, b: Any) -> Any:
    if a is UNDEFINED:
        return UNDEFINED
    if isinstance(b, list):
        return any(equal(a, e) for e in b)
    if isinstance(b, str) and isinstance(a, str):
        return a in b
    return UNDEFINED


def compare(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return equal(a, b)
    if op == "!=":
        return not equal(a, b)
    if op == "in":
        return _in(a, b)
    if op == "not in":
        return not v.truthy(_in(a, b))
    order = _order(a, b)
    if order is None:
        return UNDEFINED
    return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[op]


def _add(a: float, b: float) -> Any:
    r = a + b
    return UNDEFINED if math.isinf(r) else r


def _mul(a: float, b: float) -> Any:
    r = a * b
    return UNDEFINED if math.isinf(r) or (r == 0 and a != 0 and b != 0) else r


def _div(a: float, b: float) -> Any:
    if b == 0:
        return UNDEFINED
    r = a / b
    return UNDEFINED if math.isinf(r) or (r == 0 and a != 0) else r


def _mod(a: float, b: float) -> Any:
    return UNDEFINED if b == 0 else math.fmod(a, b)


_ARITH: dict[str, Callable[[float, float], Any]] = {
    "+": _add,
    "-": lambda a, b: _add(a, -b),
    "*": _mul,
    "/": _div,
    "%": _mod,
}


def arith(op: str, a: Any, b: Any) -> Any:
    """Numbers -> number; datetime +- number -> datetime; datetime - datetime -> seconds; else undefined."""
    da, db = isinstance(a, Datetime), isinstance(b, Datetime)
    if da and db:
        return _ARITH["-"](a.epoch, b.epoch) if op == "-" else UNDEFINED
    if da or db:
        if op not in "+-" or (db and op == "-"):
            return UNDEFINED
        epoch, number = (a.epoch, v.to_float(b)) if da else (b.epoch, v.to_float(a))
        if isinstance(number, v._Undefined):
            return UNDEFINED
        r = _ARITH[op](epoch, number)
        return UNDEFINED if r is UNDEFINED else Datetime(r)
    x, y = v.to_float(a), v.to_float(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return _ARITH[op](x, y)  # type: ignore[arg-type]


def _numeric(fn: Callable[[float], float]) -> Callable[[Any], Any]:
    def apply(x: Any) -> Any:
        f = v.to_float(x)
        return UNDEFINED if f is UNDEFINED else fn(f)  # type: ignore[arg-type]

    return apply


def _strings(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        return fn(*args) if all(isinstance(a, str) for a in args) else UNDEFINED

    return apply


def _length(x: Any) -> Any:
    return float(len(x)) if isinstance(x, str | list | dict) else UNDEFINED


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "defined": lambda x: x is not UNDEFINED,
    "boolean": v.to_boolean,
    "number": v.to_number,
    "string": v.to_string,
    "datetime": v.to_datetime,
    "floor": _numeric(lambda f: float(math.floor(f))),
    "ceil": _numeric(lambda f: float(math.ceil(f))),
    "round": _numeric(v.round_half_away),
    "length": _length,
    "lower": _strings(v.ascii_lower),
    "upper": _strings(v.ascii_upper),
    "has_prefix": _strings(str.startswith),
    "has_suffix": _strings(str.endswith),
}
