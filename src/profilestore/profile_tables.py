"""The profile tables as every reader sees them (the read API, cohorts, event queries).

`properties` shows the stored properties plus `$last_seen` from its column (docs/query.md: service-maintained
dates are `YYYY-MM-DDTHH:MM:SS` text in UTC), and `scope()` lets expressions read `$last_seen` and
`$distinct_id` like any property (`defined()` is `?`, which the GIN `jsonb_ops` index answers).
Rows are aliased `p`.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from profilestore.expressions import Scope, Source

ISO_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS'


def iso_text(column: sql.Composable) -> sql.Composable:
    """A timestamptz column as the text `YYYY-MM-DDTHH:MM:SS` in UTC (the service-maintained dates of
    docs/query.md)."""
    return sql.SQL("to_char({} AT TIME ZONE 'UTC', {})").format(column, sql.Literal(ISO_SECONDS))


@dataclass(frozen=True)
class ProfileTable:
    """User profiles or group profiles, as the read API sees them."""

    table: sql.Identifier
    id_column: sql.Identifier  # what answers as $distinct_id
    group_key: bool  # group_profiles: rows are further keyed by group_key

    def col(self, name: str) -> sql.Composable:
        return sql.SQL("p.{}").format(sql.Identifier(name))

    @property
    def distinct_id(self) -> sql.Composable:
        return sql.SQL("p.{}").format(self.id_column)

    @property
    def properties(self) -> sql.Composable:
        """The properties as the API shows them: the stored ones plus `$last_seen` from its column."""
        return sql.SQL(
            "CASE WHEN p.last_seen IS NULL THEN p.properties"
            " ELSE p.properties || jsonb_build_object('$last_seen', {}) END"
        ).format(iso_text(self.col("last_seen")))

    def scope(self) -> Scope:
        source = Source(
            column=self.col("properties"),
            computed={
                "$last_seen": sql.SQL("to_jsonb({})").format(iso_text(self.col("last_seen"))),
                "$distinct_id": sql.SQL("to_jsonb({})").format(self.distinct_id),
            },
        )
        return Scope(properties=source)


USER_PROFILES = ProfileTable(
    table=sql.Identifier("profiles"),
    id_column=sql.Identifier("distinct_id"),
    group_key=False,
)
GROUP_PROFILES = ProfileTable(
    table=sql.Identifier("group_profiles"),
    id_column=sql.Identifier("group_id"),
    group_key=True,
)
