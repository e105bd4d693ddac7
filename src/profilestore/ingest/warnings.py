"""`GET /api/ingestion-warnings`: the conflicts found while applying updates (docs/ingest.md section 3),
read with the project's API secret, a page at a time."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from profilestore.db.engine import compile_query
from profilestore.db.schema import ingestion_warnings
from profilestore.deps import ConnDep, ProjectDep

router = APIRouter()


@router.get("/api/ingestion-warnings", summary="Conflicts found while applying updates")
async def list_ingestion_warnings(
    project_id: ProjectDep,
    conn: ConnDep,
    after_id: int = Query(0, ge=0, le=2**63 - 1, description="only warnings with a greater id (paging)"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, object]:
    w = ingestion_warnings.c
    stmt = (
        select(w.id, w.kind, w.entity, w.operation, w.property, w.reason, w.created_at)
        .where(w.project_id == project_id, w.id > after_id)
        .order_by(w.id)
        .limit(limit)
    )
    sql, params = compile_query(stmt)
    rows = await (await conn.execute(sql, params)).fetchall()
    results = [
        {
            "id": row["id"],
            "kind": row["kind"],
            "distinct_id": row["entity"],
            "operation": row["operation"],
            "property": row["property"],
            "reason": row["reason"],
            "time": row["created_at"].isoformat(),
        }
        for row in rows
    ]
    return {"results": results, "next_after_id": results[-1]["id"] if results else after_id}
