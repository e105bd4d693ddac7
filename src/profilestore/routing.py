"""Endpoints served at several paths and by several methods, as Mixpanel's are (`/engage` and `/engage/`,
GET and POST): one route per path and method.  FastAPI gives a route of several methods one operation id,
which its OpenAPI document then holds twice; here each method gets its own, and the document lists the
first path."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter


def add_routes(
    router: APIRouter,
    paths: Sequence[str],
    endpoint: Callable[..., Any],
    *,
    summary: str,
    methods: Sequence[str] = ("GET", "POST"),
    **options: Any,
) -> None:
    slug = re.sub(r"\W+", "_", paths[0]).strip("_")
    for path in paths:
        for method in methods:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                summary=summary,
                include_in_schema=path == paths[0],
                operation_id=f"{method.lower()}_{slug}",
                **options,
            )
