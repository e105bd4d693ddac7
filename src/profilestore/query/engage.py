"""`/api/2.0/engage` as plain functions: parameters in, the response body out (query.md, "Profile query").

The first request of a query (no `session_id`) pins the matching ids and their order in a session (sql.py says
how) and answers page 0; later requests name the session and any page, in any order, concurrently.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection, sql

from profilestore.cohorts import CohortDefinition, cohort_condition, parse_definition, universe
from profilestore.cohorts.compile import resolve_spec
from profilestore.errors import BadRequest, NotFound
from profilestore.expressions import Node, SqlParams, compile_value, compile_where, parse
from profilestore.query import sql as q
from profilestore.query.params import bool_param, int_param, json_param, text_param

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
MAX_IDS = 10_000
SESSION_EXPIRED = "session expired; start again without page"


@dataclass(frozen=True)
class EngageQuery:
    where: Node | None
    distinct_ids: list[str] | None
    output_properties: list[str] | None
    group_key: str | None
    session_id: str | None
    page: int
    page_size: int
    sort_key: Node | None
    descending: bool
    cohort: int | CohortDefinition | None = None  # filter_by_cohort (or Mixpanel's `behaviors`)
    all_users: bool = False  # include_all_users, with filter_by_cohort


def engage_query(params: dict[str, Any]) -> EngageQuery:
    """Validates the parameters; every 400 names the parameter."""
    where_text = text_param(params, "where") or text_param(params, "selector")
    one_id = params.get("distinct_id")
    many_ids = json_param(params, "distinct_ids")
    if one_id not in (None, "") and many_ids is not None:
        raise BadRequest("distinct_id and distinct_ids are mutually exclusive: send one of them")
    distinct_ids: list[str] | None = None
    if one_id not in (None, ""):
        distinct_ids = [str(one_id)]
    elif many_ids is not None:
        if not isinstance(many_ids, list) or not all(isinstance(i, str | int) for i in many_ids):
            raise BadRequest("distinct_ids: must be a JSON array of strings")
        if len(many_ids) > MAX_IDS:
            raise BadRequest(f"distinct_ids: at most {MAX_IDS} ids")
        distinct_ids = [str(i) for i in many_ids]
    output = json_param(params, "output_properties")
    if output is not None and (not isinstance(output, list) or not all(isinstance(p, str) for p in output)):
        raise BadRequest("output_properties: must be a JSON array of property names")
    cohort, all_users = _cohort(params)
    if cohort is not None and text_param(params, "data_group_id") is not None:
        raise BadRequest("filter_by_cohort: cohorts are of users; not with data_group_id")
    if isinstance(cohort, CohortDefinition) and "behaviors" in params:
        where_text = None  # the `where` was the behaviors' selector

    page_size = int_param(params, "page_size", default=DEFAULT_PAGE_SIZE) or 0
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadRequest(f"page_size: must be between 1 and {MAX_PAGE_SIZE}")
    page = int_param(params, "page")
    session_id = text_param(params, "session_id")
    if page is not None and page < 0:
        raise BadRequest("page: must be 0 or more")
    if page and session_id is None:
        raise BadRequest("page: a page after the first needs the session_id of the first response")

    sort_text = text_param(params, "sort_key")
    order = (text_param(params, "sort_order") or "descending").lower()
    if order not in ("ascending", "descending"):
        raise BadRequest("sort_order: must be ascending or descending")
    return EngageQuery(
        where=parse_where("where", where_text),
        distinct_ids=distinct_ids,
        output_properties=output,
        group_key=text_param(params, "data_group_id"),
        session_id=session_id,
        page=page or 0,
        page_size=page_size,
        sort_key=parse_where("sort_key", sort_text),
        descending=order == "descending",
        cohort=cohort,
        all_users=all_users,
    )


def _cohort(params: dict[str, Any]) -> tuple[int | CohortDefinition | None, bool]:
    """filter_by_cohort (`{"id": N}` or `{"raw_cohort": ...}`) and include_all_users; or Mixpanel's older
    `behaviors` with `where` as their selector (profiles only, as Mixpanel answers it)."""
    all_users = bool_param(params, "include_all_users", default=True)
    spec = json_param(params, "filter_by_cohort")
    behaviors = json_param(params, "behaviors")
    if spec is not None and behaviors is not None:
        raise BadRequest("behaviors and filter_by_cohort are mutually exclusive: send one of them")
    try:
        if behaviors is not None:
            selector = text_param(params, "where") or text_param(params, "selector")
            legacy = {"selector": selector, "behaviors": behaviors}
            return parse_definition(legacy, path="behaviors"), False
        if spec is None:
            return None, False
        return resolve_spec(spec), all_users
    except NotFound:
        raise
    except BadRequest as exc:
        name = "behaviors" if behaviors is not None else "filter_by_cohort"
        raise BadRequest(f"{name}: {exc.message}") from None


def parse_where(name: str, text: str | None) -> Node | None:
    """The expression of parameter `name` (None when absent); syntax errors name the parameter."""
    if text is None or not text.strip():
        return None
    try:
        return parse(text)
    except BadRequest as exc:
        raise BadRequest(f"{name}: {exc.message}") from None


async def query_profiles(
    conn: AsyncConnection[Any], project_id: int, query: EngageQuery, *, now: float, idle_seconds: float
) -> bytes:
    """The JSON body of one page (a new session when the query names none)."""
    if query.session_id is None:
        session_id = secrets.token_urlsafe(18)
        group_key = query.group_key
        page_size = query.page_size
        all_users = query.cohort is not None and query.all_users
        total = await _create_session(conn, project_id, query, session_id, now=now)
    else:
        session_id = query.session_id
        cur = await conn.execute(
            q.OPEN_SESSION, {"session_id": session_id, "project_id": project_id, "idle": idle_seconds}
        )
        row = await cur.fetchone()
        if row is None:
            raise BadRequest(SESSION_EXPIRED)
        group_key, page_size, total = row["group_key"], row["page_size"], row["total"]
        all_users = row["all_users"]

    table = q.GROUP_PROFILES if group_key is not None else q.USER_PROFILES
    properties = table.properties
    params: dict[str, Any] = {"session_id": session_id, "page": query.page, "project_id": project_id}
    if query.output_properties is not None:
        properties = q.selected_properties(properties, sql.Placeholder("output"))
        params["output"] = query.output_properties
    statement = sql.SQL(q.PAGE).format(
        distinct_id=table.distinct_id,
        properties=properties,
        table=table.table,
        key=_key(table, group_key, params),
        join=sql.SQL("LEFT JOIN" if all_users else "JOIN"),
    )
    cur = await conn.execute(statement, params)
    rows = [r["row"] for r in await cur.fetchall()]
    head = orjson.dumps(
        {
            "page": query.page,
            "page_size": page_size,
            "session_id": session_id,
            "status": "ok",
            "total": total,
        }
    )
    return head[:-1] + b',"results":[' + ",".join(rows).encode() + b"]}"


def _key(table: q.ProfileTable, group_key: str | None, params: dict[str, Any]) -> sql.Composable:
    if table.group_key:
        params["group_key"] = group_key
        return sql.SQL("p.project_id = %(project_id)s AND p.group_key = %(group_key)s")
    return sql.SQL("p.project_id = %(project_id)s")


async def _create_session(
    conn: AsyncConnection[Any], project_id: int, query: EngageQuery, session_id: str, *, now: float
) -> int:
    table = q.GROUP_PROFILES if query.group_key is not None else q.USER_PROFILES
    compiled = SqlParams()
    params: dict[str, Any] = {
        "session_id": session_id,
        "project_id": project_id,
        "page_size": query.page_size,
        "group_key": query.group_key,
    }
    all_users = query.cohort is not None and query.all_users
    params["all_users"] = all_users
    source: sql.Composable = sql.SQL("{} AS p").format(table.table)
    distinct_id = table.distinct_id
    scope = q.all_users_scope() if all_users else table.scope()
    conditions = [_key(table, query.group_key, params)]
    if query.cohort is not None:
        users = universe(compiled, project_id, all_users=all_users)
        source, distinct_id, conditions = users.source, users.distinct_id, [users.where]
        conditions.append(
            await cohort_condition(
                conn,
                project_id,
                query.cohort,
                distinct_id=distinct_id,
                params=compiled,
                now=now,
                profile=True,
            )
        )
    if query.distinct_ids is not None:
        conditions.append(sql.SQL("{} = ANY(%(ids)s)").format(distinct_id))
        params["ids"] = query.distinct_ids
    if query.where is not None:
        conditions.append(compile_where(query.where, scope, compiled, now=now))
    # Code-point order: "C" sorts by memcmp, about 3x faster than a locale's collation on a big session.
    order: sql.Composable = sql.SQL('{} COLLATE "C"').format(distinct_id)
    if query.sort_key is not None:
        value = compile_value(query.sort_key, scope, compiled, now=now)
        direction = sql.SQL("DESC" if query.descending else "ASC")
        order = sql.SQL("{} {} NULLS LAST, {}").format(value, direction, order)
    statement = sql.SQL(q.CREATE_SESSION).format(
        distinct_id=distinct_id,
        order=order,
        source=source,
        where=sql.SQL(" AND ").join(conditions),
    )
    cur = await conn.execute(statement, {**compiled.values, **params})
    row = await cur.fetchone()
    assert row is not None  # INSERT ... SELECT of an aggregate always returns one row
    return int(row["total"])
