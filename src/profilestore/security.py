"""The HTTP surface every request crosses before it reaches a route: pure ASGI middlewares that app.py
installs, outermost first.

    SecurityHeaders   `X-Content-Type-Options: nosniff` on every answer, `Cache-Control: no-store` on every
                      `/api/` answer (profile and event data), `Strict-Transport-Security` over HTTPS
    Cors              credentialed CORS (any Origin echoed) on the ingestion endpoints only, for the browser
                      SDK; the rest answers cross-origin only to the origins the operator lists
                      (`cors_origins`), without credentials: a page must send the secret itself
    CatchAll          an exception no handler took: a 500 that names nothing internal (ingestion's shape on
                      ingestion, the read API's elsewhere), logged once; the connection stays open
    ApiGuard          every `/api/` request: its credentials checked (deps.authenticate) before any of its
                      body is read, then the body read whole under `max_api_body_bytes` (413 above it)

FastAPI reads a route's declared body before it solves the route's dependencies, so authentication in a
dependency alone would read a stranger's body first: hence ApiGuard.  A request answered before its body
was read is answered with `Connection: close`, so the rest of the body is not read either.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from psycopg_pool import PoolTimeout
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from profilestore import auth
from profilestore.db.connections import unavailable
from profilestore.deps import API_PREFIX, PROJECT_SCOPE_KEY, auth_pool_for, authenticate
from profilestore.errors import (
    DatabaseUnavailable,
    InternalError,
    PayloadTooLarge,
    ProfilestoreError,
    error_content,
)
from profilestore.ingest.responses import ingest_error_response
from profilestore.query import params
from profilestore.settings import Settings

log = logging.getLogger("profilestore")

# The endpoints the browser SDK sends to, with credentials (docs/ingest.md section 1).
STREAMED_UPLOADS = frozenset({"/api/profiles/import", "/api/profiles/import/preview"})
INGESTION_PATHS = frozenset(
    path for name in ("engage", "groups", "track", "import") for path in (f"/{name}", f"/{name}/")
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts_max_age_seconds: int) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_max_age_seconds}" if hsts_max_age_seconds > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = {"X-Content-Type-Options": "nosniff"}
        if scope["path"].startswith(API_PREFIX):
            extra["Cache-Control"] = "no-store"
        if self.hsts and scope.get("scheme") == "https":
            extra["Strict-Transport-Security"] = self.hsts

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Cors:
    """Two CORS policies by path: ingestion's (any Origin, credentials) and the rest's (listed origins)."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.ingestion = CORSMiddleware(
            app,
            allow_origin_regex=".*",
            allow_credentials=True,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            max_age=86400,
        )
        self.api = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Content-Disposition", "Retry-After"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ingestion = scope["type"] == "http" and scope["path"] in INGESTION_PATHS
        await (self.ingestion if ingestion else self.api)(scope, receive, send)


class CatchAll:
    """Answers what no exception handler took, so that nothing reaches Starlette's ServerErrorMiddleware: it
    answers and then re-raises, and uvicorn closes the connection of every request that raised."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as exc:
            if started:
                raise  # a stream cut short: only closing the connection can say so
            await _error_response(scope, _as_error(scope, exc))(scope, receive, send)


def _as_error(scope: Scope, exc: Exception) -> ProfilestoreError:
    if isinstance(exc, ProfilestoreError):
        return exc
    if isinstance(exc, (PoolTimeout, psycopg.OperationalError)):
        settings: Settings = scope["app"].state.settings
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return unavailable(exc, settings)  # a statement past its time limit says so
        return DatabaseUnavailable(retry_after=settings.retry_after_seconds)
    log.error("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
    return InternalError()


def _error_response(scope: Scope, exc: ProfilestoreError, headers: dict[str, str] | None = None) -> Response:
    """`exc` in the shape of the path: ingestion's (Mixpanel's ingestion answers) or the read API's."""
    all_headers = {**exc.headers, **(headers or {})}
    if scope["path"] in INGESTION_PATHS:
        response = ingest_error_response(dict(_query_params(scope)), exc)
        response.headers.update(all_headers)
        return response
    return JSONResponse(error_content(scope["path"], exc), status_code=exc.status_code, headers=all_headers)


def _query_params(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


class ApiGuard:
    """Credentials before the body, and the body under a cap, on every `/api/` request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        state: Any = scope["app"].state
        settings: Settings = state.settings
        headers = Headers(scope=scope)
        project_id = dict(_query_params(scope)).get("project_id")
        body: bytes | None = None
        # An import's upload (a CSV file, not JSON) is streamed to a file by its route, under its own limit.
        streamed = scope["path"] in STREAMED_UPLOADS and scope["method"] == "POST"
        try:
            pool, verified = auth_pool_for(state, scope["path"])
            scope[PROJECT_SCOPE_KEY] = await authenticate(
                pool, settings, headers.get("authorization"), project_id, verified
            )
            if not streamed:
                body = await _read_body(receive, headers, settings.max_api_body_bytes)
                # A project_id in a POST body must name the credentials' project too, as the query string's.
                sent = params.body_project_id(headers.get("content-type", ""), body)
                auth.check_project_id(scope[PROJECT_SCOPE_KEY], sent)
        except ProfilestoreError as exc:
            # A body left unread (all of it, or the part past the cap) is not read: the connection closes.
            close = body is None and _has_body(headers)
            extra = {"Connection": "close"} if close else None
            await _error_response(scope, exc, extra)(scope, receive, send)
            return
        except ClientDisconnect:
            return
        await self.app(scope, receive if streamed else _replay(body or b"", receive), send)


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")


async def _read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole body, refused (PayloadTooLarge) as soon as it declares or reaches more than `limit` bytes."""
    declared = headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then what the client sends next (its disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
