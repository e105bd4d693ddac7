"""parse() refuses with a 400 ExpressionError naming the position and what was expected."""

from __future__ import annotations

import pytest

from profilestore.errors import BadRequest
from profilestore.expressions import ExpressionError, parse
from profilestore.expressions.parser import MAX_DEPTH


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('properties["plan"] == "pro" and (properties["n"] > 1', 'syntax error at the end: expected ")"'),
        ('properties["plan"] = "pro"', "syntax error at column 20: unexpected '='"),
        ('properties["plan"] == "pro" or', "syntax error at the end: expected one of"),
        ('properties["plan"] == "pro" )', "syntax error at column 29: expected the end"),
        ('properties["a"] ==\n  == 1', "syntax error at line 2, column 3: expected one of"),
        ("properties[plan] == 1", "syntax error at column 12: expected a string"),
        ('properties["a"] == "unterminated', "syntax error at column 20: unexpected '\"'"),
        ("1 +", "syntax error at the end"),
        ("[1, properties['a']]", "syntax error at column 5"),
        ("", "syntax error at the end"),
        ('frobnicate(properties["a"])', "at column 1: unknown function 'frobnicate'"),
        ('  Lower(properties["a"])', "at column 3: unknown function 'Lower'"),
        ('defined(properties["a"], 1)', "at column 1: defined() takes 1 argument, got 2"),
        ("now(1)", "now() takes 0 arguments, got 1"),
        ('has_prefix(properties["a"])', "has_prefix() takes 2 arguments, got 1"),
        ('props["a"] == 1', 'at column 1: expected "properties", "user" or "event"'),
        ('"\\q"', "unknown escape \\q"),
        ("1e999 > 1", "number out of range"),
        ("9" * 309 + " > 1", "at column 1: number out of range"),  # past a double: OverflowError before
        ('properties["a"] in [1, -' + "9" * 400 + "]", "number out of range"),
        ("1 + " + "9" * 5000, "at column 5: number out of range"),  # past int()'s 4,300 digits too
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.message.startswith("where: ")
    assert isinstance(info.value, BadRequest) and info.value.status_code == 400


def test_expected_is_human() -> None:
    with pytest.raises(ExpressionError) as info:
        parse('(properties["a"] == 1 2')
    assert info.value.message.startswith('where: syntax error at column 23: expected one of "!=", "%", ")"')
    assert info.value.message.endswith('"and", "in", "not", "or"')


def test_parameter_name_in_message() -> None:
    with pytest.raises(ExpressionError, match=r"^selector: "):
        parse("(", name="selector")


def test_too_long() -> None:
    text = " or ".join(['properties["a"] == 1'] * 600)
    assert len(text) > 10_000
    with pytest.raises(ExpressionError, match="longer than 10,000 characters"):
        parse(text)
    parse(text[:9_990].rsplit(" or ", 1)[0])  # a long or-chain under the limit is fine (depth 3)


@pytest.mark.parametrize(
    "template",
    ["{open}1{close}", "not {open}true{close}", "-{open}1{close}", "1 + {open}1{close}"],
)
def test_depth(template: str) -> None:
    def nested(depth: int) -> str:
        if "not" in template:
            return "not " * (depth - 1) + "true"
        if template.startswith("-"):
            return "-" * (depth - 2) + 'properties["a"]' if depth > 1 else "1"
        if "+" in template:
            return " + ".join(['properties["a"]'] * depth)
        return "(" * depth + "1" + ")" * depth

    parse(nested(MAX_DEPTH - 2))
    with pytest.raises(ExpressionError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse(nested(MAX_DEPTH + 5))


def test_deep_parentheses_do_not_recurse() -> None:
    with pytest.raises(ExpressionError):
        parse("(" * 4_000 + "1" + ")" * 4_000)
    with pytest.raises(ExpressionError):
        parse("not " * 2_400 + "true")
