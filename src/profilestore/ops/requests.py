"""Every request: an id, one JSON log line, and the HTTP metrics (metrics.py).  Outermost of the middlewares.

* Request id: an incoming `X-Request-ID` of 1-128 characters among letters, digits and `-_.:` is kept (a
  proxy's or a client's), anything else is replaced by a new one; it is answered as `X-Request-ID` and is
  `request.state.request_id` for the app.
* The log line (logger `profilestore.requests`, JSON, one per answered request): time, request id, method,
  the route template (`/api/cohorts/{cohort_id}`, never the path itself), status, duration and bytes sent.
  Never the query string, headers or bodies, which carry tokens, secrets and profile values.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import time
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from profilestore.ops import metrics

log = logging.getLogger("profilestore.requests")

HEADER = b"x-request-id"
_ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


class JsonLines(logging.Formatter):
    """A log record as one JSON object per line: its time, level, logger, message and the `fields` it
    carries (`log.info("request", extra={"fields": {...}})`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is written (a test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(enabled: bool) -> None:
    """The request log to standard error as JSON lines (once per process), or off."""
    if not enabled:
        log.disabled = True
        return
    log.disabled = False
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(JsonLines())
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _ACCEPTED_ID.fullmatch(value):
            return str(value.decode())
    return uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The matched route's template (bounded: a metric label), "unmatched" for a 404 of no route."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "unmatched"
    return path.rstrip("/") or "/"


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        status = 0  # no answer started: the client left first (logged as 499, as nginx does)
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - began
            route = route_of(scope)
            status = status or 499
            metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
            metrics.HTTP_DURATION.labels(route).observe(seconds)
            fields = {
                "request_id": rid,
                "method": scope.get("method"),
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "bytes_sent": sent,
            }
            log.info("request", extra={"fields": fields})
