"""Text -> AST: the lark grammar (grammar.lark), string escapes, the limits, and human error messages.

The LALR parser is built once, on first use, and builds the tree in its reduce callbacks (no recursion, so
a 10,000-character expression cannot exhaust the stack); the depth limit is checked afterwards, iteratively.
Every failure is an ExpressionError whose message names the position (column, and line when the text has
several) and what was expected there.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from lark.exceptions import UnexpectedToken
from lark.lexer import PatternStr

from profilestore.expressions.ast import (
    FUNCTIONS,
    And,
    Arith,
    ArithOp,
    Call,
    Compare,
    CompareOp,
    Literal,
    LiteralValue,
    Negate,
    Node,
    Not,
    Or,
    Property,
    SourceName,
    children,
)
from profilestore.expressions.errors import ExpressionError

MAX_LENGTH = 10_000
MAX_DEPTH = 64
SOURCES: tuple[SourceName, ...] = ("properties", "user", "event")

_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# Terminals named by what they are rather than by their pattern.
_TERMINAL_NAMES = {"NAME": "a name", "NUMBER": "a number", "STRING": "a string", "$END": "the end"}


class _Error(Exception):
    """Raised inside the callbacks with a token, turned into an ExpressionError with its position."""

    def __init__(self, token: Token, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.token = token
        self.message = message
        self.offset = offset


def _compare(op: CompareOp) -> Any:
    return lambda self, items: Compare(op, items[0], items[1])


def _arith(op: ArithOp) -> Any:
    return lambda self, items: Arith(op, items[0], items[1])


class _Build(Transformer[Token, Node]):
    """The reduce callbacks: lark tokens and subtrees -> AST nodes."""

    or_ = lambda self, items: Or(tuple(items))  # noqa: E731
    and_ = lambda self, items: And(tuple(items))  # noqa: E731
    not_ = lambda self, items: Not(items[0])  # noqa: E731
    eq, ne, lt, le, gt, ge = (_compare(op) for op in ("==", "!=", "<", "<=", ">", ">="))
    in_, not_in = _compare("in"), _compare("not in")
    add, sub, mul, div, mod = (_arith(op) for op in ("+", "-", "*", "/", "%"))

    def neg(self, items: list[Node]) -> Node:
        (operand,) = items
        if isinstance(operand, Literal) and _is_number(operand.value):
            return Literal(-operand.value)  # type: ignore[operator]
        return Negate(operand)

    def access(self, items: list[Token]) -> Node:
        source, name = items
        if source not in SOURCES:
            raise _Error(source, 'expected "properties", "user" or "event" before "["')
        return Property(source.value, _string(name))

    def call(self, items: list[Any]) -> Node:
        name, *args = items
        args = [a for a in args if a is not None]  # `[...]` yields None when there are no arguments
        arity = FUNCTIONS.get(name.value)
        if arity is None:
            raise _Error(name, f"unknown function {name.value!r}; expected one of {', '.join(FUNCTIONS)}")
        if len(args) != arity:
            plural = "" if arity == 1 else "s"
            raise _Error(name, f"{name.value}() takes {arity} argument{plural}, got {len(args)}")
        return Call(name.value, tuple(args))

    def list_literal(self, items: list[Any]) -> Node:
        return Literal(tuple(_value(i) for i in items if i is not None))

    def negative_number(self, items: list[Token]) -> Node:
        return Literal(-_number(items[0]))

    def string(self, items: list[Token]) -> Node:
        return Literal(_string(items[0]))

    def number(self, items: list[Token]) -> Node:
        return Literal(_number(items[0]))

    true = lambda self, _: Literal(True)  # noqa: E731
    false = lambda self, _: Literal(False)  # noqa: E731
    null = lambda self, _: Literal(None)  # noqa: E731


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value(node: Node) -> LiteralValue:
    assert isinstance(node, Literal)
    return node.value


def _number(token: Token) -> int | float:
    """A NUMBER token: an int when written without a point or exponent, else a float; a number beyond a
    double (309 digits and more, 1e400) is out of range, as no stored number can be."""
    text = token.value
    value = float(text)  # never raises for a NUMBER: inf past a double's range, however long the text
    if math.isinf(value):
        raise _Error(token, "number out of range")
    return int(text) if text.isdigit() else value


def _string(token: Token) -> str:
    """A quoted STRING token -> its text: JSON's escapes plus \\', no NUL, no lone surrogates (neither can
    be stored by Postgres, so no property could ever hold them)."""
    body = token.value[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif (
            esc == "u"
            and len(body) >= i + 6
            and all(c in "0123456789abcdefABCDEF" for c in body[i + 2 : i + 6])
        ):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise _Error(
                token,
                f"unknown escape \\{esc}; expected one of \\\" \\' \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                i + 1,
            )
    try:
        return storable("".join(out))
    except ValueError as err:
        raise _Error(token, str(err)) from None


def storable(text: str) -> str:
    """`text` as a string of the language: surrogate pairs joined; ValueError for a lone surrogate or a NUL
    (neither can be stored by Postgres).  `parse` applies it to every string and name it reads; code that
    builds trees rather than parsing them applies it to the strings it puts in."""
    try:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16")  # joins escaped surrogate pairs
    except UnicodeDecodeError:
        raise ValueError("a lone surrogate (\\ud800-\\udfff) cannot be stored; expected a pair") from None
    if "\x00" in text:
        raise ValueError("a NUL character (\\u0000) cannot be stored in Postgres, so no property holds one")
    return text


@functools.cache
def _parser() -> Lark:
    grammar = resources.files(__package__).joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", transformer=_Build(), maybe_placeholders=True)


def _where(text: str, line: int, column: int) -> str:
    if line <= 0 or column <= 0:
        return "at the end"
    return f"at line {line}, column {column}" if "\n" in text else f"at column {column}"


def _expected(names: set[str]) -> str:
    parser = _parser()
    shown = set()
    for name in names:
        if name in _TERMINAL_NAMES:
            shown.add(_TERMINAL_NAMES[name])
            continue
        pattern = parser.get_terminal(name).pattern
        shown.add(f'"{pattern.value}"' if isinstance(pattern, PatternStr) else name.lower())
    items = sorted(shown, key=lambda s: (not s.startswith('"'), s))
    return items[0] if len(items) == 1 else "one of " + ", ".join(items)


def _syntax_error(text: str, err: UnexpectedInput, name: str) -> ExpressionError:
    if (isinstance(err, UnexpectedToken) and err.token.type == "$END") or isinstance(err, UnexpectedEOF):
        where = "at the end"
    else:
        where = _where(text, err.line, err.column)
    if isinstance(err, UnexpectedCharacters):
        expected = _expected(set(err.allowed)) if err.allowed else "nothing more"
        char = text[err.pos_in_stream] if err.pos_in_stream is not None else ""
        return ExpressionError(f"{name}: syntax error {where}: unexpected {char!r}; expected {expected}")
    expected_set = set(getattr(err, "expected", ()) or ())
    expected = _expected(expected_set) if expected_set else "nothing more"
    return ExpressionError(f"{name}: syntax error {where}: expected {expected}")


def _check_depth(text: str, root: Node, name: str) -> None:
    """Operators nested deeper than MAX_DEPTH, or brackets (which make no node of their own)."""
    brackets = 0
    for token in _parser().lex(text):
        brackets += 1 if token.type in ("LPAR", "LSQB") else -1 if token.type in ("RPAR", "RSQB") else 0
        if brackets > MAX_DEPTH:
            raise ExpressionError(f"{name}: nested deeper than {MAX_DEPTH} levels")
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"{name}: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children(node))


def parse(text: str, *, name: str = "where") -> Node:
    """The AST of `text`; ExpressionError (400) on any syntax error, unknown function, wrong arity, a string
    Postgres cannot hold, more than 10,000 characters or nesting deeper than 64. `name` prefixes messages."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"{name}: expression longer than {MAX_LENGTH:,} characters ({len(text):,})")
    try:
        node: Node = _parser().parse(text)  # type: ignore[assignment]  # built by _Build
    except _Error as err:
        column = err.token.column + err.offset if err.token.column is not None else 0
        raise ExpressionError(f"{name}: {_where(text, err.token.line or 0, column)}: {err.message}") from None
    except UnexpectedInput as err:
        raise _syntax_error(text, err, name) from None
    _check_depth(text, node, name)
    return node
