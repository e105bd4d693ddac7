"""What the Add/Edit Profile page (web/edit.py) reads around a write; the write itself is the ingestion
pipeline's (/engage, /groups), never SQL of its own.

* `stored`: one user or group profile's properties (a primary-key read), to tell create from update;
* `property_names`: the names a project's profiles use, for the page's autocomplete.  From a bounded sample
  (the `SAMPLE` most recently seen user profiles, through the Users table's index; the first `SAMPLE` group
  profiles of a key, through the primary key), so the page costs the same whatever the project's size:
  a name used only by long-unseen profiles may be missing, which an autocomplete can afford;
* `group_keys`: the project's group keys (a loose index scan of the primary key, at most `MAX_KEYS` probes);
* `project_token`: the token the page's records carry, as an SDK's would;
* `last_warning_id` and `warnings_since`: the ingestion warnings an edit caused (a value the profile's limits
  left out is a warning of the fold, not a refused record).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

SAMPLE = 500  # profiles read for their property names
MAX_NAMES = 1000
MAX_KEYS = 100

_USER = "SELECT properties FROM profiles WHERE project_id = %(p)s AND distinct_id = %(id)s"
_GROUP = """
SELECT properties FROM group_profiles WHERE project_id = %(p)s AND group_key = %(k)s AND group_id = %(id)s
"""
# The sample's order is ix_profiles_last_seen's, so it is an index scan of SAMPLE rows.
_USER_NAMES = """
SELECT DISTINCT k FROM (
    SELECT properties FROM profiles WHERE project_id = %(p)s
    ORDER BY coalesce(last_seen, '-infinity'::timestamptz) DESC, distinct_id DESC LIMIT %(sample)s
) AS s CROSS JOIN LATERAL jsonb_object_keys(s.properties) AS k
ORDER BY k LIMIT %(names)s
"""
_GROUP_NAMES = """
SELECT DISTINCT k FROM (
    SELECT properties FROM group_profiles WHERE project_id = %(p)s AND group_key = %(k)s
    ORDER BY group_id LIMIT %(sample)s
) AS s CROSS JOIN LATERAL jsonb_object_keys(s.properties) AS k
ORDER BY k LIMIT %(names)s
"""
_GROUP_KEYS = """
WITH RECURSIVE keys(key, n) AS (
    SELECT min(group_key), 1 FROM group_profiles WHERE project_id = %(p)s
    UNION ALL
    SELECT (SELECT min(g.group_key) FROM group_profiles AS g
            WHERE g.project_id = %(p)s AND g.group_key > keys.key), n + 1
    FROM keys WHERE keys.key IS NOT NULL AND n < %(max)s
)
SELECT key FROM keys WHERE key IS NOT NULL
"""
_TOKEN = "SELECT token FROM projects WHERE id = %(p)s"
_LAST_WARNING = "SELECT coalesce(max(id), 0) AS id FROM ingestion_warnings WHERE project_id = %(p)s"
_WARNINGS = """
SELECT operation, property, reason FROM ingestion_warnings
WHERE project_id = %(p)s AND id > %(after)s AND kind = %(kind)s AND entity = %(entity)s
ORDER BY id LIMIT 20
"""


async def stored(
    conn: AsyncConnection[Any], project_id: int, profile_id: str, group_key: str | None = None
) -> dict[str, Any] | None:
    """The stored properties of a user profile (or of a group profile when `group_key`), None if absent."""
    params = {"p": project_id, "id": profile_id, "k": group_key}
    cur = await conn.execute(_USER if group_key is None else _GROUP, params)
    row = await cur.fetchone()
    return None if row is None else dict(row["properties"])


async def property_names(
    conn: AsyncConnection[Any], project_id: int, group_key: str | None = None
) -> list[str]:
    """The property names of a sample of the project's user profiles (or group profiles of `group_key`;
    none for the group key "")."""
    if group_key == "":
        return []
    params = {"p": project_id, "k": group_key, "sample": SAMPLE, "names": MAX_NAMES}
    cur = await conn.execute(_USER_NAMES if group_key is None else _GROUP_NAMES, params)
    return [r["k"] for r in await cur.fetchall()]


async def group_keys(conn: AsyncConnection[Any], project_id: int) -> list[str]:
    """The project's group keys, in order, at most MAX_KEYS."""
    cur = await conn.execute(_GROUP_KEYS, {"p": project_id, "max": MAX_KEYS})
    return [r["key"] for r in await cur.fetchall()]


async def project_token(conn: AsyncConnection[Any], project_id: int) -> str | None:
    row = await (await conn.execute(_TOKEN, {"p": project_id})).fetchone()
    return None if row is None else str(row["token"])


async def last_warning_id(conn: AsyncConnection[Any], project_id: int) -> int:
    row = await (await conn.execute(_LAST_WARNING, {"p": project_id})).fetchone()
    return int(row["id"]) if row else 0


async def warnings_since(
    conn: AsyncConnection[Any], project_id: int, after: int, kind: str, entity: str
) -> list[dict[str, str]]:
    """The warnings recorded for one profile ("profile": its distinct_id; "group": key/id) after `after`."""
    params = {"p": project_id, "after": after, "kind": kind, "entity": entity}
    return [dict(r) for r in await (await conn.execute(_WARNINGS, params)).fetchall()]
