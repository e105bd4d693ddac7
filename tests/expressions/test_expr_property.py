"""Random expressions x random profiles: the SQL compiler and the Python evaluator agree on every row.

Expressions are drawn as ASTs, rendered to text and parsed (so `parse(render(ast)) == ast` is checked too).
Profiles of one example go to Postgres in one statement, as a jsonb array unnested in the FROM clause.

Restrictions, and why: strings are ASCII plus a few Latin letters (lower/upper are ASCII-only in both, so
any text would do, but a small alphabet makes equal and prefix-related strings likely); integers stay
within 2**53 (beyond it jsonb compares exact decimals while arithmetic rounds to doubles: documented);
`Negate` never wraps a number literal (the parser folds `-5` into the literal, so it would not round-trip).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from expr_support import NOW, same_value
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from profilestore.expressions import (
    UNDEFINED,
    Scope,
    Source,
    SqlParams,
    compile_value,
    compile_where,
    evaluate,
    parse,
    truthy,
)
from profilestore.expressions.ast import (
    FUNCTIONS,
    And,
    Arith,
    Call,
    Compare,
    Literal,
    Negate,
    Node,
    Not,
    Or,
    Property,
)
from profilestore.expressions.evaluate import evaluate_raw
from profilestore.expressions.printer import render

NAMES = ("a", "b", "s", "d", "$x", "we'ird")
TEXT = st.text(alphabet="abAB01 -:.eTZé", max_size=6)
ISO = st.sampled_from(
    [
        "2026-01-01",
        "2026-01-01T10:00:00",
        "2026-02-29T00:00:00",
        "2024-02-29T23:59:59.5",
        "2026-01-01T00:00:00+01:00",
    ]
)
NUMBERS = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.5, -2.5, 1e300, 5e-324, 86400, 1767225600]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), NUMBERS, TEXT, ISO, st.sampled_from(["0", "false", "FaLsE", "1.5", ""])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=5,
)
PROFILE = st.dictionaries(st.sampled_from(NAMES), JSON, max_size=5)


def _literal_values() -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=4)


def _leaves() -> st.SearchStrategy[Node]:
    prop = st.builds(Property, st.sampled_from(["properties", "user", "event"]), st.sampled_from(NAMES))
    return st.one_of(
        prop, SCALARS.map(Literal), prop, _literal_values().map(Literal), st.just(Call("now", ()))
    )


def _extend(inner: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    ops = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
    calls = [name for name, arity in FUNCTIONS.items() if arity == 1]
    return st.one_of(
        st.builds(Not, inner),
        inner.filter(lambda n: not (isinstance(n, Literal) and isinstance(n.value, int | float))).map(Negate),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        st.builds(Compare, st.sampled_from(ops), inner, inner),
        st.builds(Arith, st.sampled_from(["+", "-", "*", "/", "%"]), inner, inner),
        st.builds(lambda name, arg: Call(name, (arg,)), st.sampled_from(calls), inner),
        st.builds(
            lambda name, a, b: Call(name, (a, b)), st.sampled_from(["has_prefix", "has_suffix"]), inner, inner
        ),
        st.builds(lambda a: Call("datetime", (a,)), inner),
    )


EXPRESSIONS = st.recursive(_leaves(), _extend, max_leaves=8)

SCOPE = Scope(
    Source(sql.SQL("r.value")),
    user=Source(sql.SQL("(r.value -> 'user_')")),
)


def _run(db: psycopg.Connection[dict[str, Any]], node: Node, rows: list[dict[str, Any]]) -> None:
    params = SqlParams()
    where = compile_where(node, SCOPE, params, now=NOW)
    value = compile_value(node, SCOPE, params, now=NOW)
    query = sql.SQL(
        "SELECT r.n, {} AS hit, ({})::text AS value"
        " FROM jsonb_array_elements({}) WITH ORDINALITY r(value, n) ORDER BY r.n"
    ).format(where, value, params.add(Jsonb(rows)))
    result = db.execute(query, params.values).fetchall()
    assert len(result) == len(rows)
    for row, got in zip(rows, result, strict=True):
        user = row.get("user_", {})
        assert got["hit"] is not None
        want = evaluate(node, row, user=user, now=NOW)
        # A filter's truth is of the value before export: datetime(-62135596801) is a datetime (true) whose
        # ISO text is undefined (before year 1).
        hit = truthy(evaluate_raw(node, row, user=user, now=NOW))
        assert got["hit"] == hit, (render(node), row, want)
        sql_value = UNDEFINED if got["value"] is None else json.loads(got["value"])
        assert same_value(sql_value, want), (render(node), row, sql_value, want)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=EXPRESSIONS, rows=st.lists(PROFILE, min_size=1, max_size=8), user=PROFILE)
# Before year 1: still a datetime, so a true filter, though its ISO text is undefined.
@example(node=Call("datetime", (Literal(-62135596801),)), rows=[{}], user={})
def test_sql_and_python_agree(
    db: psycopg.Connection[dict[str, Any]], node: Node, rows: list[dict[str, Any]], user: dict[str, Any]
) -> None:
    text = render(node)
    assert parse(text) == node
    rows = [{**row, "user_": user} for row in rows] + [{}]
    _run(db, node, rows)
