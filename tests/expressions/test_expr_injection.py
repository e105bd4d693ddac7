"""Names and strings are data: quotes, backslashes, `$`, `%`, `_`, SQL fragments reach Postgres only as bound
parameters; NUL (which Postgres text cannot hold) is refused at parse time with its position."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from expr_support import Profiles, make_profiles

from profilestore.expressions import ExpressionError, parse

NASTY = [
    "'; DROP TABLE victim; --",
    '"; DROP TABLE victim; --',
    "it's",
    'say "hi"',
    "back\\slash",
    "$1",
    "$$ || pg_sleep(1) || $$",
    "100%",
    "%(p0)s",
    "%s",
    "a_b",
    "?",
    "x') OR ('1'='1",
    "E'\\x41'",
    "ümlaut ✓",
]


@pytest.fixture(scope="module")
def nasty(db: psycopg.Connection[dict[str, Any]]) -> Iterator[Profiles]:
    db.execute("CREATE TABLE IF NOT EXISTS victim (x int)")
    rows = {f"n{i}": ({text: text, "v": text}, None) for i, text in enumerate(NASTY)}
    rows["plain"] = ({"v": "plain", "aXb": 1}, None)  # what LIKE's `_` would match
    yield from make_profiles(db, rows)
    db.execute("DROP TABLE victim")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@pytest.mark.parametrize("text", NASTY)
def test_names_and_strings_are_data(
    nasty: Profiles, db: psycopg.Connection[dict[str, Any]], text: str
) -> None:
    i = NASTY.index(text)
    assert nasty.check(f"properties[{_q(text)}] == {_q(text)}") == {f"n{i}"}
    assert nasty.check(f"defined(properties[{_q(text)}])") == {f"n{i}"}
    assert nasty.check(f"properties[{_q(text)}] in [{_q(text)}, 'x']") == {f"n{i}"}
    assert nasty.check(f'lower(properties["v"]) == lower({_q(text)})') == {f"n{i}"}
    assert nasty.check(f'has_prefix(properties["v"], {_q(text)})') == {f"n{i}"}
    assert nasty.check(f'{_q(text)} in properties["v"]') >= {f"n{i}"}
    assert nasty.check(f"properties[{_q(text)}] > ''") == {f"n{i}"}
    assert db.execute("SELECT to_regclass('victim') IS NOT NULL AS ok").fetchone() == {"ok": True}


def test_like_wildcards_match_only_themselves(nasty: Profiles) -> None:
    assert nasty.check('"%" in properties["v"]') == {f"n{NASTY.index(t)}" for t in NASTY if "%" in t}
    assert nasty.check('has_suffix(properties["v"], "_b")') == {f"n{NASTY.index('a_b')}"}
    assert nasty.check('defined(properties["a_b"])') == {f"n{NASTY.index('a_b')}"}


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ('properties["a\\u0000b"] == 1', 12),
        ('properties["v"] == "x\\u0000"', 20),
        ("properties['v'] == 'x\x00'", 20),
        ('has_prefix(properties["v"], "\\u0000")', 29),
    ],
)
def test_nul_is_refused_with_its_position(text: str, column: int) -> None:
    with pytest.raises(ExpressionError, match=f"at column {column}: a NUL character"):
        parse(text)


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(ExpressionError, match="lone surrogate"):
        parse('properties["\\ud800"] == 1')
    assert parse('"\\ud83d\\ude00" == "😀"') == parse('"😀" == "😀"')
