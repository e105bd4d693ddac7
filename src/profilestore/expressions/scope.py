"""Where property access reads from (`Scope` of `Source`s), and the bound values of one statement.

The callers describe their rows (a profile table, events with the user's profile joined, ...); the compiler
(sql.py) only ever reads properties through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg import sql


@dataclass(frozen=True)
class Source:
    """Where one kind of property access reads from."""

    column: sql.Composable
    computed: Mapping[str, sql.Composable] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    properties: Source
    user: Source | None = None


class SqlParams:
    """The bound values of one statement, as named placeholders so fragments compose in any order."""

    def __init__(self, prefix: str = "p") -> None:
        self.prefix = prefix
        self.values: dict[str, object] = {}

    def add(self, value: object) -> sql.Placeholder:
        name = f"{self.prefix}{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)
