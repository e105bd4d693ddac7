"""On ~50k profiles with the GIN `jsonb_ops` index of migration 0011 (made here on a scratch table), equality
with a literal, `in [literals]` and `defined()` compile to quals the planner answers with a Bitmap Index
Scan."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from profilestore.expressions import Scope, Source, SqlParams, compile_where, parse

ROWS = 50_000


@pytest.fixture(scope="module")
def big(db: psycopg.Connection[dict[str, Any]]) -> Iterator[sql.Identifier]:
    table = sql.Identifier(f"expr_index_{uuid.uuid4().hex[:10]}")
    db.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, properties jsonb NOT NULL)").format(table))
    try:
        db.execute(
            sql.SQL(
                """INSERT INTO {} SELECT i, jsonb_build_object(
                       'plan', 'plan' || (i %% 1000), 'n', i %% 5000,
                       'tags', jsonb_build_array('t' || (i %% 300)))
                       || CASE WHEN i %% 2000 = 0 THEN '{{"rare": true}}'::jsonb ELSE '{{}}' END
                   FROM generate_series(1, %s) i"""
            ).format(table),
            (ROWS,),
        )
        db.execute(sql.SQL("CREATE INDEX ON {} USING gin (properties)").format(table))
        db.execute(sql.SQL("ANALYZE {}").format(table))
        yield table
    finally:
        db.execute(sql.SQL("DROP TABLE {}").format(table))


SCOPE = Scope(Source(sql.SQL("p.properties")))


def _plan_and_count(
    db: psycopg.Connection[dict[str, Any]], table: sql.Identifier, text: str
) -> tuple[str, int]:
    params = SqlParams()
    where = compile_where(parse(text), SCOPE, params, now=0)
    query = sql.SQL("SELECT count(*) AS n FROM {} p WHERE {}").format(table, where)
    plan = "\n".join(
        r["QUERY PLAN"] for r in db.execute(sql.SQL("EXPLAIN ") + query, params.values).fetchall()
    )
    count = db.execute(query, params.values).fetchone()
    assert count is not None
    return plan, count["n"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('properties["plan"] == "plan7"', ROWS // 1000),
        ('"plan7" == properties["plan"]', ROWS // 1000),
        ('properties["n"] == 42', ROWS // 5000),
        ('properties["plan"] in ["plan7", "plan8", "plan9"]', 3 * ROWS // 1000),
        ('defined(properties["rare"])', ROWS // 2000),
        (
            'properties["rare"] == true and properties["n"] > 10',
            ROWS // 2000 - ROWS // 10000,
        ),  # n = 0 where i % 10000 == 0
        ('properties["plan"] == "plan7" or properties["n"] == 42', ROWS // 1000 + ROWS // 5000),
    ],
)
def test_bitmap_index_scan(
    db: psycopg.Connection[dict[str, Any]], big: sql.Identifier, text: str, expected: int
) -> None:
    plan, count = _plan_and_count(db, big, text)
    assert "Bitmap Index Scan" in plan, plan
    assert count == expected
