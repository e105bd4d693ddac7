"""Saved cohorts as plain functions: create, read, update, delete, list, members, count.

Every statement names the project, so one project never sees (or reaches through a reference) another's
cohorts.  A dynamic cohort stores its definition normalised (the legacy form translated, defaults filled);
membership is computed when asked.  A static cohort stores its members in `cohort_members`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from profilestore.cohorts.compile import candidates, check_definition, cohort_condition, universe
from profilestore.cohorts.schemas import (
    CohortCount,
    CohortCreate,
    CohortDefinition,
    CohortOut,
    CohortUpdate,
    Member,
    MembersPage,
    MixpanelCohort,
    parse_definition,
    references,
)
from profilestore.errors import BadRequest, Conflict, NotFound
from profilestore.expressions import SqlParams
from profilestore.storable import NUL_MESSAGE, holds_nul

MAX_PAGE = 10_000
_COLUMNS = "id, project_id, name, description, is_static, definition, created_at, updated_at"


def _stored(definition: CohortDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _definition(
    conn: AsyncConnection[Any], project_id: int, value: dict[str, Any], cohort_id: int | None
) -> dict[str, Any]:
    definition = parse_definition(value, path="definition")
    await check_definition(conn, project_id, definition, cohort_id=cohort_id, path="definition")
    return _stored(definition)


async def create_cohort(conn: AsyncConnection[Any], project_id: int, body: CohortCreate) -> CohortOut:
    if (body.definition is None) == (body.distinct_ids is None):
        raise BadRequest("give either definition (a dynamic cohort) or distinct_ids (a static one)")
    definition = None
    if body.definition is not None:
        definition = await _definition(conn, project_id, body.definition, None)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"INSERT INTO cohorts (project_id, name, description, definition, is_static)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (project_id, body.name, body.description, _json(definition), body.distinct_ids is not None),
        )
        row = await cur.fetchone()
        assert row is not None
        if body.distinct_ids is not None:
            await _replace_members(conn, row["id"], body.distinct_ids)
    return CohortOut.model_validate(row)


async def get_cohort(conn: AsyncConnection[Any], project_id: int, cohort_id: int) -> CohortOut:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM cohorts WHERE project_id = %s AND id = %s", (project_id, cohort_id)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no cohort {cohort_id} in this project")
    return CohortOut.model_validate(row)


async def list_cohorts(conn: AsyncConnection[Any], project_id: int) -> list[CohortOut]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM cohorts WHERE project_id = %s ORDER BY id", (project_id,))
        return [CohortOut.model_validate(r) for r in await cur.fetchall()]


async def update_cohort(
    conn: AsyncConnection[Any], project_id: int, cohort_id: int, body: CohortUpdate
) -> CohortOut:
    current = await get_cohort(conn, project_id, cohort_id)
    if current.is_static and body.definition is not None:
        raise BadRequest("definition: a static cohort has distinct_ids, not a definition")
    if not current.is_static and body.distinct_ids is not None:
        raise BadRequest("distinct_ids: a dynamic cohort has a definition, not distinct_ids")
    definition = current.definition
    if body.definition is not None:
        definition = await _definition(conn, project_id, body.definition, cohort_id)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"UPDATE cohorts SET name = %s, description = %s, definition = %s, updated_at = now()"
            f" WHERE project_id = %s AND id = %s RETURNING {_COLUMNS}",
            (
                body.name if body.name is not None else current.name,
                body.description if body.description is not None else current.description,
                _json(definition),
                project_id,
                cohort_id,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no cohort {cohort_id} in this project")
        if body.distinct_ids is not None:
            await _replace_members(conn, cohort_id, body.distinct_ids)
    return CohortOut.model_validate(row)


async def delete_cohort(conn: AsyncConnection[Any], project_id: int, cohort_id: int) -> None:
    """Refused (409) while another cohort of the project refers to it."""
    await get_cohort(conn, project_id, cohort_id)
    users = [
        c.id
        for c in await list_cohorts(conn, project_id)
        if c.definition is not None
        and c.id != cohort_id
        and any(ref == cohort_id for ref, _ in references(parse_definition(c.definition)))
    ]
    if users:
        names = ", ".join(str(i) for i in users)
        raise Conflict(f"cohort {cohort_id} is used by cohort(s) {names}; change those first")
    async with conn.transaction():
        await conn.execute("DELETE FROM cohorts WHERE project_id = %s AND id = %s", (project_id, cohort_id))


async def _replace_members(conn: AsyncConnection[Any], cohort_id: int, distinct_ids: list[str]) -> None:
    await conn.execute("DELETE FROM cohort_members WHERE cohort_id = %s", (cohort_id,))
    await conn.execute(
        "INSERT INTO cohort_members (cohort_id, distinct_id)"
        " SELECT %s, d FROM unnest(%s::text[]) AS d ON CONFLICT DO NOTHING",
        (cohort_id, [d for d in distinct_ids if d]),
    )


def _json(value: dict[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


async def members_page(
    conn: AsyncConnection[Any],
    project_id: int,
    cohort_id: int,
    *,
    after: str | None,
    limit: int,
    all_users: bool,
    now: float,
) -> MembersPage:
    """One page of members ordered by distinct_id, after the id `after` (keyset)."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: must be between 1 and {MAX_PAGE}")
    if after is not None and holds_nul(after):
        raise BadRequest(f"after: {NUL_MESSAGE}")
    await get_cohort(conn, project_id, cohort_id)
    params = SqlParams()
    users = universe(params, project_id, all_users=all_users)
    condition = await cohort_condition(
        conn, project_id, cohort_id, distinct_id=users.distinct_id, params=params, now=now, profile=True
    )
    keyset: sql.Composable = sql.SQL("true")
    if after is not None:
        keyset = sql.SQL("{} > {}").format(users.distinct_id, params.add(after))
    statement = sql.SQL(
        "SELECT {id} AS distinct_id, p.properties FROM {source} WHERE {where} AND {condition} AND {keyset}"
        " ORDER BY 1 LIMIT {limit}"
    ).format(
        id=users.distinct_id,
        source=users.source,
        where=users.where,
        condition=condition,
        keyset=keyset,
        limit=params.add(limit + 1),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params.values)
        rows = await cur.fetchall()
    members = [Member(distinct_id=r["distinct_id"], properties=r["properties"]) for r in rows[:limit]]
    return MembersPage(members=members, next_after=members[-1].distinct_id if len(rows) > limit else None)


async def count_members(
    conn: AsyncConnection[Any], project_id: int, cohort_id: int, *, all_users: bool, now: float
) -> CohortCount:
    await get_cohort(conn, project_id, cohort_id)
    return CohortCount(
        id=cohort_id, count=await count_cohort(conn, project_id, cohort_id, all_users=all_users, now=now)
    )


async def count_cohort(
    conn: AsyncConnection[Any], project_id: int, spec: int | CohortDefinition, *, all_users: bool, now: float
) -> int:
    """The number of members of a saved cohort (its id) or of a definition."""
    params = SqlParams()
    driving = await candidates(conn, project_id, spec, params=params, now=now)
    if driving is not None:
        # Every member did one event: count among those who did it, each with its profile (or NULLs) as `p`
        # and, for All Users, in the universe by a profile or by users_seen (as `universe` draws it).
        doers, rest = driving
        pid = params.add(project_id)
        condition = await cohort_condition(
            conn, project_id, rest, distinct_id=sql.SQL("c.distinct_id"), params=params, now=now, profile=True
        )
        known: sql.Composable = sql.SQL("p.distinct_id IS NOT NULL")
        if all_users:
            known = sql.SQL(
                "(p.distinct_id IS NOT NULL OR EXISTS (SELECT FROM users_seen AS s"
                " WHERE s.project_id = {pid} AND s.distinct_id = c.distinct_id))"
            ).format(pid=pid)
        statement = sql.SQL(
            "SELECT count(*) AS n FROM ({doers}) AS c LEFT JOIN profiles AS p"
            " ON p.project_id = {pid} AND p.distinct_id = c.distinct_id WHERE {known} AND {condition}"
        ).format(doers=doers, pid=pid, known=known, condition=condition)
    else:
        users = universe(params, project_id, all_users=all_users)
        condition = await cohort_condition(
            conn, project_id, spec, distinct_id=users.distinct_id, params=params, now=now, profile=True
        )
        statement = sql.SQL("SELECT count(*) AS n FROM {} WHERE {} AND {}").format(
            users.source, users.where, condition
        )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params.values)
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def mixpanel_list(conn: AsyncConnection[Any], project_id: int, *, now: float) -> list[MixpanelCohort]:
    """`/api/2.0/cohorts/list`: every cohort with its current count (All Users, as Mixpanel counts)."""
    out = []
    for cohort in await list_cohorts(conn, project_id):
        out.append(
            MixpanelCohort(
                id=cohort.id,
                name=cohort.name,
                description=cohort.description,
                count=await count_cohort(conn, project_id, cohort.id, all_users=True, now=now),
                created=cohort.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                project_id=project_id,
            )
        )
    return out
