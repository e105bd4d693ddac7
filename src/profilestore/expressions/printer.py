"""AST -> text that parses back to the same AST (`parse(render(node)) == node`).

Every operator is parenthesised, so the text never depends on precedence; used by the property tests'
round trip and by code that builds expressions (cohorts' legacy selectors) rather than writing them.
"""

from __future__ import annotations

import json
import math

from profilestore.expressions.ast import (
    And,
    Arith,
    Call,
    Compare,
    Literal,
    LiteralValue,
    Negate,
    Node,
    Not,
    Or,
    Property,
)


def render_value(value: LiteralValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no literal for {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[" + ", ".join(render_value(v) for v in value) + "]"


def render(node: Node) -> str:
    match node:
        case Literal(value):
            text = render_value(value)
            return f"({text})" if text.startswith("-") else text
        case Property(source, name):
            return f"{source}[{json.dumps(name, ensure_ascii=False)}]"
        case Not(operand):
            return f"(not {render(operand)})"
        case Negate(operand):
            return f"(- {render(operand)})"
        case And(operands) | Or(operands):
            word = " and " if isinstance(node, And) else " or "
            return "(" + word.join(render(o) for o in operands) + ")"
        case Compare(op, left, right) | Arith(op, left, right):
            return f"({render(left)} {op} {render(right)})"
        case Call(name, args):
            return f"{name}({', '.join(render(a) for a in args)})"
    raise AssertionError(node)
