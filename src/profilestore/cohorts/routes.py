"""HTTP routes of cohorts: the service's JSON API under `/api/cohorts` and Mixpanel's `cohorts/list`.

Thin: each handler takes the request's pooled connection (deps.ConnDep) and calls service.py.  Errors answer
`{"error": Name, "detail": message}` under `/api/cohorts` and `{"error": message}` on the Mixpanel paths
(app.py renders both).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Response

from profilestore.cohorts import service
from profilestore.cohorts.schemas import (
    CohortCount,
    CohortCreate,
    CohortOut,
    CohortUpdate,
    MembersPage,
    MixpanelCohort,
)
from profilestore.deps import ConnDep, ProjectDep
from profilestore.routing import add_routes

router = APIRouter(tags=["cohorts"])

ALL_USERS_DOC = "also members with events but no profile (All Users); false: only those with a profile"


@router.post("/api/cohorts", status_code=201, summary="Create a cohort (dynamic or static)")
async def create(body: CohortCreate, project_id: ProjectDep, conn: ConnDep) -> CohortOut:
    return await service.create_cohort(conn, project_id, body)


@router.get("/api/cohorts", summary="The project's cohorts")
async def list_all(project_id: ProjectDep, conn: ConnDep) -> list[CohortOut]:
    return await service.list_cohorts(conn, project_id)


@router.get("/api/cohorts/{cohort_id}", summary="One cohort")
async def read(cohort_id: int, project_id: ProjectDep, conn: ConnDep) -> CohortOut:
    return await service.get_cohort(conn, project_id, cohort_id)


async def update(cohort_id: int, body: CohortUpdate, project_id: ProjectDep, conn: ConnDep) -> CohortOut:
    return await service.update_cohort(conn, project_id, cohort_id, body)


add_routes(
    router,
    ["/api/cohorts/{cohort_id}"],
    update,
    methods=["PUT", "PATCH"],
    summary="Change a cohort's name, description, definition or (static) members",
)


@router.delete("/api/cohorts/{cohort_id}", status_code=204, summary="Delete a cohort (409 while referenced)")
async def delete(cohort_id: int, project_id: ProjectDep, conn: ConnDep) -> Response:
    await service.delete_cohort(conn, project_id, cohort_id)
    return Response(status_code=204)


@router.get("/api/cohorts/{cohort_id}/members", summary="The members, by distinct_id, a page at a time")
async def members(
    cohort_id: int,
    project_id: ProjectDep,
    conn: ConnDep,
    after: str | None = Query(None, description="the `next_after` of the previous page"),
    limit: int = Query(1000, description=f"members per page, at most {service.MAX_PAGE}"),
    include_all_users: bool = Query(True, description=ALL_USERS_DOC),
) -> MembersPage:
    return await service.members_page(
        conn,
        project_id,
        cohort_id,
        after=after,
        limit=limit,
        all_users=include_all_users,
        now=time.time(),
    )


@router.get("/api/cohorts/{cohort_id}/count", summary="How many members the cohort has now")
async def count(
    cohort_id: int,
    project_id: ProjectDep,
    conn: ConnDep,
    include_all_users: bool = Query(True, description=ALL_USERS_DOC),
) -> CohortCount:
    return await service.count_members(
        conn, project_id, cohort_id, all_users=include_all_users, now=time.time()
    )


LIST_PATHS = [
    "/api/2.0/cohorts/list",
    "/api/2.0/cohorts/list/",
    "/api/query/cohorts/list",
    "/api/query/cohorts/list/",
]


async def mixpanel_list(project_id: ProjectDep, conn: ConnDep) -> list[MixpanelCohort]:
    """Mixpanel's cohorts list: a bare JSON array."""
    return await service.mixpanel_list(conn, project_id, now=time.time())


add_routes(router, LIST_PATHS, mixpanel_list, summary="Mixpanel's cohort list (/api/2.0/cohorts/list)")
