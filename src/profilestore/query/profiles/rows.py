"""Which profiles a read matches: the FROM and WHERE shared by /api/2.0/engage and the profile export.

User profiles or the group profiles of one group key; with a cohort, its members drawn from the profiles or
from All Users (cohorts.universe: members without a profile have NULL properties); then `distinct_ids` and
`where`.  Every value is a bound parameter of the caller's SqlParams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql

from profilestore.cohorts import CohortDefinition, cohort_condition, universe
from profilestore.errors import BadRequest
from profilestore.expressions import Node, Scope, SqlParams, compile_where
from profilestore.profile_tables import GROUP_PROFILES, USER_PROFILES, ProfileTable
from profilestore.query.profiles.sql import all_users_scope


@dataclass(frozen=True)
class Matching:
    table: ProfileTable
    source: sql.Composable  # FROM: the profiles as `p`
    distinct_id: sql.Composable  # each row's id
    where: sql.Composable
    scope: Scope  # for expressions over the matched rows (a sort key)


async def matching(
    conn: AsyncConnection[Any],
    project_id: int,
    params: SqlParams,
    *,
    now: float,
    group_key: str | None = None,
    cohort: int | CohortDefinition | None = None,
    all_users: bool = False,
    distinct_ids: list[str] | None = None,
    where: Node | None = None,
) -> Matching:
    table = GROUP_PROFILES if group_key is not None else USER_PROFILES
    source: sql.Composable = sql.SQL("{} AS p").format(table.table)
    distinct_id = table.distinct_id
    scope = table.scope()
    conditions: list[sql.Composable] = [sql.SQL("p.project_id = {}").format(params.add(project_id))]
    if group_key is not None:
        conditions.append(sql.SQL("p.group_key = {}").format(params.add(group_key)))
    if cohort is not None or all_users:
        if group_key is not None:
            raise BadRequest("filter_by_cohort: cohorts are of users; not with data_group_id")
        users = universe(params, project_id, all_users=all_users)
        source, distinct_id, conditions = users.source, users.distinct_id, [users.where]
        if all_users:
            scope = all_users_scope()
    if cohort is not None:
        conditions.append(
            await cohort_condition(
                conn, project_id, cohort, distinct_id=distinct_id, params=params, now=now, profile=True
            )
        )
    if distinct_ids is not None:
        conditions.append(sql.SQL("{} = ANY({})").format(distinct_id, params.add(distinct_ids)))
    if where is not None:
        conditions.append(compile_where(where, scope, params, now=now))
    return Matching(table, source, distinct_id, sql.SQL(" AND ").join(conditions), scope)
