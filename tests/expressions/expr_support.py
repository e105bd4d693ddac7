"""Scratch tables of profiles for the expression tests, and `Profiles.check`, which checks an expression three
ways against each other: the SQL filter's matching ids, the SQL value of each row, the Python evaluator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from profilestore.expressions import (
    UNDEFINED,
    Node,
    Scope,
    Source,
    SqlParams,
    compile_value,
    compile_where,
    evaluate,
    parse,
    truthy,
)

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC).timestamp()
LAST_SEEN_SQL = "to_jsonb(to_char(p.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'))"


def scope_for(table_alias: str = "p") -> Scope:
    column = sql.SQL(table_alias + ".properties")
    last_seen = sql.SQL(LAST_SEEN_SQL.replace("p.", table_alias + "."))
    return Scope(Source(column, computed={"$last_seen": last_seen}))


@dataclass
class Profiles:
    """A table of profiles (id, properties, last_seen) and the same rows as Python sees them."""

    conn: psycopg.Connection[dict[str, Any]]
    table: sql.Identifier
    rows: dict[str, dict[str, Any]]

    def python_properties(self, pid: str) -> dict[str, Any]:
        return self.rows[pid]

    def check(self, text: str, expected: set[str] | None = None) -> set[str]:
        """Matching ids by SQL and by Python agree (and with `expected`); values agree row by row."""
        node = parse(text)
        return self.check_node(node, expected)

    def check_node(self, node: Node, expected: set[str] | None = None) -> set[str]:
        params = SqlParams()
        scope = scope_for()
        where = compile_where(node, scope, params, now=NOW)
        value = compile_value(node, scope, params, now=NOW)
        query = sql.SQL("SELECT p.id, {where} AS hit, ({value})::text AS value FROM {table} p").format(
            where=where, value=value, table=self.table
        )
        rows = self.conn.execute(query, params.values).fetchall()
        filtered = sql.SQL("SELECT p.id FROM {table} p WHERE {where}").format(table=self.table, where=where)
        by_filter = {r["id"] for r in self.conn.execute(filtered, params.values).fetchall()}
        assert all(r["hit"] is not None for r in rows), "compile_where gave NULL"
        by_sql = {r["id"] for r in rows if r["hit"]}
        assert by_sql == by_filter
        python = {pid for pid, props in self.rows.items() if truthy(evaluate(node, props, now=NOW))}
        assert by_sql == python, f"SQL {sorted(by_sql)} != Python {sorted(python)}"
        if expected is not None:
            assert by_sql == expected
        for r in rows:
            got = UNDEFINED if r["value"] is None else json.loads(r["value"])
            want = evaluate(node, self.rows[r["id"]], now=NOW)
            assert same_value(got, want), f"{r['id']}: SQL value {got!r} != Python {want!r}"
        return by_sql


def same_value(a: Any, b: Any) -> bool:
    """JSON equality with numbers by value (SQL gives 1 where Python has 1.0), bool != number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)  # jsonb prints 4.93283230803525e+16 as 49328323080352500
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def make_profiles(
    conn: psycopg.Connection[dict[str, Any]], profiles: dict[str, tuple[dict[str, Any], datetime | None]]
) -> Iterator[Profiles]:
    table = sql.Identifier(f"expr_scratch_{uuid.uuid4().hex[:10]}")
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id text PRIMARY KEY, properties jsonb NOT NULL, last_seen timestamptz)"
        ).format(table)
    )
    try:
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(table),
                [(pid, Jsonb(props), seen) for pid, (props, seen) in profiles.items()],
            )
        rows = {}
        for pid, (props, seen) in profiles.items():
            rows[pid] = dict(props)
            if seen is not None:
                rows[pid]["$last_seen"] = iso(seen)
        yield Profiles(conn, table, rows)
    finally:
        conn.execute(sql.SQL("DROP TABLE {}").format(table))


def _t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


#: Every JSON type, ISO dates valid and invalid, numbers as strings, a missing property, `$last_seen`.
PROFILES: dict[str, tuple[dict[str, Any], datetime | None]] = {
    "alice": (
        {
            "name": "Alice",
            "email": "alice@example.com",
            "plan": "pro",
            "n": 10,
            "f": 1.5,
            "ok": True,
            "tags": ["vip", "beta"],
            "obj": {"a": 1},
            "created": "2026-01-15T10:00:00",
            "z": None,
            "code": "42",
            "flag": "FALSE",
            "city": "città",
        },
        _t(2026, 11, 20, 10, 0, 0),
    ),
    "bob": (
        {
            "name": "bob",
            "email": "bob@test.org",
            "plan": "team",
            "n": -3,
            "f": 0.1,
            "ok": False,
            "tags": [],
            "obj": {},
            "created": "2025-12-31",
            "z": 0,
            "code": "4.5e1",
            "flag": "0",
        },
        _t(2026, 11, 1, 0, 0, 0),
    ),
    "carol": (
        {
            "name": "",
            "plan": ["pro"],
            "n": 0,
            "f": 2.5,
            "ok": 1,
            "tags": "vip",
            "obj": None,
            "created": "2026-02-30T00:00:00",
            "code": "abc",
            "flag": "yes",
        },
        None,
    ),
    "dave": ({}, _t(2025, 1, 1, 0, 0, 0)),
    "erin": (
        {
            "name": "Carol",
            "plan": "Pro",
            "n": 7.0,
            "f": -2.5,
            "ok": "true",
            "tags": ["VIP", 1, None],
            "created": "2026-03-01T12:00:00+02:00",
            "code": True,
            "email": "erin@EXAMPLE.com",
        },
        _t(2026, 11, 19, 23, 59, 59),
    ),
    "frank": (
        {
            "name": 'dave\'s "quote" \\ 100%_$',
            "plan": None,
            "n": "10",
            "f": 1e300,
            "tags": [["vip"]],
            "created": 1767225600,
            "obj": {"a": 1, "b": [1, 2]},
            "code": " 7",
        },
        None,
    ),
    "gina": (
        {
            "we'ird\"key\\%_$": "x",
            "$email": "g@x.com",
            "n": 3,
            "f": 3,
            "plan": "pro ",
            "tags": ["vip", "vip"],
            "created": "2026-11-13T12:00:00Z",
        },
        _t(2026, 11, 13, 12, 0, 0),
    ),
}
