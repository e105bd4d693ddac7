"""SQL written once for profiles and group profiles: the template of the apply functions, rendered per kind.

A profile is keyed by `distinct_id`, a group profile by `(group_key, group_id)`; everything else about their
writes is the same.  db/sql/0007_apply.sql is one text with `@...@` marks where the two differ, and `render`
fills them in, so profilestore_apply_profiles and profilestore_apply_groups cannot drift apart.

Marks (x, y: table aliases):
    @apply@ @table@ @tombstones@ @kind@   the function, its tables, and 'profile' or 'group' for warnings
    @key@, @key(x)@                       the key columns, bare or qualified
    @fields(x)@, @fields_as(x)@           the key fields of a JSON record x ("d", and "k" for groups)
    @field_types@                         their column definitions for jsonb_to_recordset
    @json(x)@, @json_as(x)@               the key fields of a jsonb_each row x (x.value->>'d')
    @eq(x, y)@, @eq_fields(x, y)@, @eq_json(x, y)@, @eq_bare(x)@   key equality with a table, a record, a
                                          jsonb_each row, or bare columns
    @entity(x)@                           how warnings name it: distinct_id, or group_key || '/' || group_id
    @positions@                           the output positions of project and key, for ORDER BY

Migrations render templates when they run, so a mark keeps its meaning for good: a change is a new mark.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from profilestore.db.migrate import sql_file

Kind = Literal["profile", "group"]


@dataclass(frozen=True)
class _Keys:
    apply: str
    table: str
    tombstones: str
    columns: tuple[str, ...]  # the key columns
    fields: tuple[str, ...]  # the same in the JSON records, in the same order


KEYS: dict[Kind, _Keys] = {
    "profile": _Keys(
        "profilestore_apply_profiles", "profiles", "profile_tombstones", ("distinct_id",), ("d",)
    ),
    "group": _Keys(
        "profilestore_apply_groups",
        "group_profiles",
        "group_profile_tombstones",
        ("group_key", "group_id"),
        ("k", "d"),
    ),
}

_MARK = re.compile(r"@(\w+)(?:\(([\w, ]*)\))?@")


def _macros(kind: Kind) -> dict[str, Callable[..., str]]:
    keys = KEYS[kind]
    pairs = list(zip(keys.columns, keys.fields, strict=True))
    return {
        "apply": lambda: keys.apply,
        "table": lambda: keys.table,
        "tombstones": lambda: keys.tombstones,
        "kind": lambda: f"'{kind}'",
        "key": lambda x=None: ", ".join(c if x is None else f"{x}.{c}" for c in keys.columns),
        "fields": lambda x: ", ".join(f"{x}.{f}" for f in keys.fields),
        "fields_as": lambda x: ", ".join(f"{x}.{f} AS {c}" for c, f in pairs),
        "field_types": lambda: ", ".join(f"{f} text" for f in keys.fields),
        "json": lambda x: ", ".join(f"{x}.value->>'{f}'" for f in keys.fields),
        "json_as": lambda x: ", ".join(f"{x}.value->>'{f}' AS {c}" for c, f in pairs),
        "eq": lambda x, y: " AND ".join(f"{x}.{c} = {y}.{c}" for c in keys.columns),
        "eq_fields": lambda x, y: " AND ".join(f"{x}.{c} = {y}.{f}" for c, f in pairs),
        "eq_json": lambda x, y: " AND ".join(f"{x}.{c} = {y}.value->>'{f}'" for c, f in pairs),
        "eq_bare": lambda x: " AND ".join(f"{c} = {x}.{c}" for c in keys.columns),
        "entity": lambda x: " || '/' || ".join(f"{x}.{c}" for c in keys.columns),
        "positions": lambda: ", ".join(str(i) for i in range(1, len(keys.columns) + 2)),
    }


def render(template: str, kind: Kind) -> str:
    """The template with its marks filled in for `kind`; an unknown mark is an error."""
    macros = _macros(kind)

    def expand(match: re.Match[str]) -> str:
        name, args = match.group(1), match.group(2)
        if name not in macros:
            raise ValueError(f"unknown mark @{name}@ in an SQL template")
        return macros[name](*[a.strip() for a in args.split(",")] if args else [])

    return _MARK.sub(expand, template)


def apply_function(kind: Kind, template: str = "0007_apply.sql") -> str:
    """CREATE FUNCTION profilestore_apply_profiles (or _groups) from one of db/sql's templates."""
    return render(sql_file(template), kind)
