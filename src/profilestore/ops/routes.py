"""`GET /metrics` (metrics.py): open, or behind a bearer token when `metrics_token` is set."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from profilestore.deps import SettingsDep
from profilestore.errors import Unauthorized
from profilestore.ops import metrics

router = APIRouter()


@router.get("/metrics", summary="Prometheus metrics (text format)", include_in_schema=False)
async def get_metrics(request: Request, settings: SettingsDep) -> Response:
    if settings.metrics_token:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {settings.metrics_token}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized("metrics need the bearer token of PROFILESTORE_METRICS_TOKEN")
    metrics.record_pools(request.app.state)
    body, media_type = metrics.exposition()
    return Response(content=body, media_type=media_type)
