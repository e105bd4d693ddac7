"""The hot path's SQL: one call of profilestore_apply_profiles per /engage request.

Why this shape (the function's own comment, db/sql/0007_apply.sql, says more):
* one statement, one round trip, one transaction per request, whatever its size: the request's updates go
  to Postgres as one JSONB batch, grouped here by profile with their arrival order kept;
* Postgres takes the row locks in key order (ORDER BY in the INSERT ... ON CONFLICT), so concurrent
  requests touching the same profiles never deadlock, and ON CONFLICT DO UPDATE folds each update into the
  latest committed row, so concurrent `$add`s add up exactly;
* a profile whose updates are one plain `$set` goes in the `fast` list (its `$set` rides in the proposed
  row; DO UPDATE concatenates it); every other profile goes in the `slow` object and is folded by PL/pgSQL
  (db/sql/0007_fold.sql), the same rules as tests/model.py, in work linear in the sizes involved; a request
  records at most `max_warnings_per_request` ingestion warnings per project (a summary row counts the rest),
  and its list operations handle at most `max_list_elements_per_request` elements.
If the batch as a whole is refused by Postgres (a value it cannot store), `apply_one_by_one` applies it again
group by group inside one transaction, with a savepoint each, so only the offending records fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from psycopg import AsyncConnection

from profilestore.ingest.pipeline import REFUSED, refusal
from profilestore.ingest.profiles.records import Update
from profilestore.settings import Settings

# One function per kind of profile: the same statement shapes on profiles / group_profiles.
_ARGS = "%s::jsonb, %s::jsonb, %s, %s::jsonb, %s, %s, %s, %s, %s, %s"  # as _params gives them
APPLY = {
    "profile": f"SELECT profilestore_apply_profiles({_ARGS})",
    "group": f"SELECT profilestore_apply_groups({_ARGS})",
}

_FAST_KEYS = frozenset({"t", "it", "set"})


@dataclass
class Batch:
    kind: str = "profile"  # or "group": which function applies it (APPLY)
    fast: list[dict[str, Any]] = field(default_factory=list)
    slow: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: dict[str, list[int]] = field(default_factory=dict)  # "project:distinct_id" -> record indexes
    warnings: list[list[Any]] = field(default_factory=list)
    has_delete: bool = False

    def groups(self) -> list[tuple[str, dict[str, Any]]]:
        """(key, group) of every profile, in the functions' lock order."""
        keyed = [(_key(g["p"], g.get("k"), g["d"]), g) for g in self.fast]
        return sorted(
            [*keyed, *self.slow.items()], key=lambda kg: (kg[1]["p"], kg[1].get("k", ""), kg[1]["d"])
        )


def _key(project_id: int, group_key: str | None, distinct_id: str) -> str:
    """A profile's key within a batch: "project:distinct_id", or "project:group_key:group_id" for groups."""
    return f"{project_id}:{distinct_id}" if group_key is None else f"{project_id}:{group_key}:{distinct_id}"


def build_batch(updates: list[tuple[int, Update]], kind: str = "profile") -> Batch:
    """Groups (project_id, update) pairs by profile, keeping arrival order; splits fast from slow groups.

    The updates' body dicts are used as they are (a fast group *is* its update's body plus its key)."""
    batch = Batch(kind=kind)
    by_key: dict[str, tuple[int, list[Update]]] = {}
    for project_id, update in updates:
        key = _key(project_id, update.group_key, update.distinct_id)
        same = by_key.get(key)
        if same is None:
            by_key[key] = (project_id, [update])
        else:
            same[1].append(update)
    for key, (project_id, group) in by_key.items():
        first = group[0]
        body = first.body
        if len(group) == 1 and "set" in body and _FAST_KEYS.issuperset(body):
            body["p"] = project_id
            body["d"] = first.distinct_id
            body["ft"] = dict.fromkeys(body["set"], body["t"])
            if first.group_key is not None:
                body["k"] = first.group_key
            batch.fast.append(body)
        else:
            slow: dict[str, Any] = {"p": project_id, "d": first.distinct_id, "u": [u.body for u in group]}
            if first.group_key is not None:
                slow["k"] = first.group_key
            if any("del" in u.body for u in group):
                slow["x"] = True
                batch.has_delete = True
            batch.slow[key] = slow
        batch.indexes[key] = [u.index for u in group]
        entity = first.distinct_id if first.group_key is None else f"{first.group_key}/{first.distinct_id}"
        for update in group:
            for operation, prop, reason in update.warnings:
                batch.warnings.append([project_id, entity, operation, prop, reason])
    return batch


def _params(batch: Batch, now: float, settings: Settings) -> tuple[Any, ...]:
    return (
        orjson.dumps(batch.fast).decode(),
        orjson.dumps(batch.slow).decode(),
        batch.has_delete,
        orjson.dumps(batch.warnings).decode(),
        now,
        settings.tombstone_days * 86400.0,
        settings.max_profile_properties,
        settings.max_profile_bytes,
        settings.max_warnings_per_request,
        settings.max_list_elements_per_request,
    )


async def apply_batch(conn: AsyncConnection[Any], batch: Batch, now: float, settings: Settings) -> None:
    """The whole batch in one statement (autocommit: one implicit transaction)."""
    await conn.execute(APPLY[batch.kind], _params(batch, now, settings))


async def apply_one_by_one(
    conn: AsyncConnection[Any], batch: Batch, now: float, settings: Settings
) -> dict[str, str]:
    """Slow path after the database refused the batch: one transaction, a savepoint per group, groups in
    key order (the same global lock order).  Returns the refused group keys with the message of each
    (pipeline.refusal)."""
    refused: dict[str, str] = {}
    async with conn.transaction():
        for key, group in batch.groups():
            if key in batch.slow:
                single = Batch(batch.kind, slow={key: group}, has_delete="x" in group)
            else:
                single = Batch(batch.kind, fast=[group])
            try:
                async with conn.transaction():
                    await conn.execute(APPLY[batch.kind], _params(single, now, settings))
            except REFUSED as exc:
                refused[key] = refusal(exc)
        if batch.warnings:
            await conn.execute(
                APPLY[batch.kind], _params(Batch(batch.kind, warnings=batch.warnings), now, settings)
            )
    return refused
