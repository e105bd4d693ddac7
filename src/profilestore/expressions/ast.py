"""The typed syntax tree: what `parse` returns and what the SQL compiler and the evaluator walk.

Nodes are frozen dataclasses, so two parses of the same text compare equal (the round-trip tests rely on
it).  List literals hold tuples (hashable, immutable); `and`/`or` chains are one n-ary node each, so a long
chain of conditions does not count against the nesting limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral
from typing import TypeAlias

#: A literal's value: JSON scalars, and tuples of values for list literals. Numbers written without a
#: point or exponent are ints (compared exactly, like jsonb), others floats.
LiteralValue: TypeAlias = "bool | int | float | str | tuple[LiteralValue, ...] | None"

SourceName = TypingLiteral["properties", "user", "event"]
CompareOp = TypingLiteral["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
ArithOp = TypingLiteral["+", "-", "*", "/", "%"]


@dataclass(frozen=True)
class Literal:
    value: LiteralValue


@dataclass(frozen=True)
class Property:
    source: SourceName
    name: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Negate:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Node
    right: Node


@dataclass(frozen=True)
class Arith:
    op: ArithOp
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node: TypeAlias = Literal | Property | Not | Negate | And | Or | Compare | Arith | Call

#: Function name -> number of arguments.
FUNCTIONS: dict[str, int] = {
    "defined": 1,
    "boolean": 1,
    "number": 1,
    "string": 1,
    "datetime": 1,
    "now": 0,
    "floor": 1,
    "ceil": 1,
    "round": 1,
    "length": 1,
    "lower": 1,
    "upper": 1,
    "has_prefix": 2,
    "has_suffix": 2,
}


def children(node: Node) -> tuple[Node, ...]:
    match node:
        case Not(operand) | Negate(operand):
            return (operand,)
        case And(operands) | Or(operands):
            return operands
        case Compare(_, left, right) | Arith(_, left, right):
            return (left, right)
        case Call(_, args):
            return args
        case _:
            return ()


def is_constant(node: Node) -> bool:
    """No property access anywhere below: the value is the same for every row."""
    return not isinstance(node, Property) and all(is_constant(c) for c in children(node))
