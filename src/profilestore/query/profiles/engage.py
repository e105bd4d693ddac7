"""`/api/2.0/engage` as plain functions: parameters in, the response body out (docs/query.md, "Profile
query").

The first request of a query (no `session_id`) pins the matching ids and their order in a session
(sessions.py says how) and answers page 0; later requests name the session and any page, in any order,
concurrently.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from profilestore.cohorts import CohortDefinition, parse_definition
from profilestore.cohorts.compile import resolve_spec
from profilestore.db.connections import database
from profilestore.errors import BadRequest, NotFound
from profilestore.expressions import Node, SqlParams, compile_value
from profilestore.profile_tables import GROUP_PROFILES, USER_PROFILES, ProfileTable
from profilestore.query.params import bool_param, int_param, json_param, text_param, where_param
from profilestore.query.profiles import sessions
from profilestore.query.profiles import sql as q
from profilestore.query.profiles.rows import matching
from profilestore.settings import Settings

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
    cohort, all_users = cohort_param(params)
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
        where=where_param("where", where_text),
        distinct_ids=distinct_ids,
        output_properties=output,
        group_key=text_param(params, "data_group_id"),
        session_id=session_id,
        page=page or 0,
        page_size=page_size,
        sort_key=where_param("sort_key", sort_text),
        descending=order == "descending",
        cohort=cohort,
        all_users=all_users,
    )


def cohort_param(params: dict[str, Any]) -> tuple[int | CohortDefinition | None, bool]:
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


async def query_profiles(
    pool: AsyncConnectionPool, project_id: int, query: EngageQuery, *, now: float, settings: Settings
) -> bytes:
    """The JSON body of one page: page 0 of a new session when the query names none (sessions.py)."""
    params: dict[str, Any] = {"project_id": project_id, "page": query.page}
    if query.session_id is None:
        session_id = secrets.token_urlsafe(18)
        session = sessions.Session(
            group_key=query.group_key,
            page_size=query.page_size,
            total=0,
            all_users=query.cohort is not None and query.all_users,
        )
        async with database(pool, settings) as conn:
            matches = await _matches(conn, project_id, query, session, now=now)
        total, rows = await sessions.create(
            pool,
            matches,
            session,
            session_id,
            project_id,
            first_page=_page_statement(query, session, params, sql.SQL(q.FIRST_PAGE_IDS)),
            page_params=params,
            settings=settings,
        )
    else:
        session_id = query.session_id
        async with database(pool, settings) as conn:
            found = await sessions.open_session(
                conn, session_id, project_id, idle_seconds=settings.query_session_idle_seconds
            )
            if found is None:
                raise BadRequest(SESSION_EXPIRED)
            session, total = found, found.total
            params["session_id"] = session_id
            statement = _page_statement(query, session, params, sql.SQL(q.STORED_PAGE_IDS))
            rows = [r["row"] for r in await (await conn.execute(statement, params)).fetchall()]
    head = orjson.dumps(
        {
            "page": query.page,
            "page_size": session.page_size,
            "session_id": session_id,
            "status": "ok",
            "total": total,
        }
    )
    return head[:-1] + b',"results":[' + ",".join(rows).encode() + b"]}"


def _page_statement(
    query: EngageQuery, session: sessions.Session, params: dict[str, Any], ids: sql.Composable
) -> sql.Composed:
    table = GROUP_PROFILES if session.group_key is not None else USER_PROFILES
    properties = table.properties
    if query.output_properties is not None:
        properties = q.selected_properties(properties, sql.Placeholder("output"))
        params["output"] = query.output_properties
    return sql.SQL(q.PAGE).format(
        distinct_id=table.distinct_id,
        properties=properties,
        ids=ids,
        table=table.table,
        key=_key(table, session.group_key, params),
        join=sql.SQL("LEFT JOIN" if session.all_users else "JOIN"),
    )


def _key(table: ProfileTable, group_key: str | None, params: dict[str, Any]) -> sql.Composable:
    if table.group_key:
        params["group_key"] = group_key
        return sql.SQL("p.project_id = %(project_id)s AND p.group_key = %(group_key)s")
    return sql.SQL("p.project_id = %(project_id)s")


async def _matches(
    conn: AsyncConnection[Any],
    project_id: int,
    query: EngageQuery,
    session: sessions.Session,
    *,
    now: float,
) -> sessions.Matches:
    """The session's FROM, WHERE and ORDER BY (a cohort's definition is read here, before the snapshot)."""
    compiled = SqlParams()
    rows = await matching(
        conn,
        project_id,
        compiled,
        now=now,
        group_key=query.group_key,
        cohort=query.cohort,
        all_users=session.all_users,
        distinct_ids=query.distinct_ids,
        where=query.where,
    )
    scope, distinct_id = rows.scope, rows.distinct_id
    # The table's own order (its primary key's collation): page 0 of an unfiltered query is then an index
    # scan of page_size rows, and a filtered one a top-N sort.
    order: sql.Composable = distinct_id
    if query.sort_key is not None:
        value = compile_value(query.sort_key, scope, compiled, now=now)
        direction = sql.SQL("DESC" if query.descending else "ASC")
        order = sql.SQL("{} {} NULLS LAST, {}").format(value, direction, distinct_id)
    return sessions.Matches(
        source=rows.source, distinct_id=distinct_id, where=rows.where, order=order, params=compiled.values
    )
