"""How `serve` (and the tests' server) runs uvicorn: the HTTP protocol, the limits it keeps, and its options.

The Node SDK sends every single call as `GET /engage?data=<base64 of the record>`, and records may be 1 MB
(docs/ingest.md), but httptools' URL parser refuses URLs over 64 KiB (uvicorn then answers a plain-text 400
before the app sees the request).  `LongUrlProtocol` hands it only the path of a long URL and sets the
query string itself.  URLs stay bounded: at most what a 10 MB body takes in base64, plus slack.

Anyone who can open a socket can otherwise hold the server's memory and descriptors, so the protocol bounds
every client before the app sees a request (the settings in `Limits`), answering in plain text and closing:
- the header fields of one request: `max_header_bytes` (431); the URL is not a header field.
- the time from a request's first byte (a new connection's opening, for its first request) to the end of its
  header block: `header_timeout_seconds`, plus a second per `min_upload_bytes_per_second` of a long URL (408).
- a body must keep arriving: `body_timeout_seconds` from the end of the header block, plus one second per
  `min_upload_bytes_per_second` received; time the server itself is not reading does not count (408).
- a response the client does not read: writing stalled for `send_timeout_seconds` drops the connection.
- between requests, `keep_alive_seconds` (uvicorn's `timeout_keep_alive`).
- open connections per process: `max_connections`, and fewer when the descriptor limit is lower, so that
  `accept()` never runs out of descriptors.  A connection past the cap closes the one that has waited longest
  for a request's head (or idled longest between requests), else the oldest still sending a body (503); when
  every connection is busy with a request, the newcomer is answered 503.  A request whose head has arrived is
  never evicted, so `/healthz` answers under a flood of half-sent requests.
"""

from __future__ import annotations

import asyncio
import functools
import resource
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from profilestore.settings import Settings

HTTPTOOLS_MAX_URL = 65_535
MAX_URL_BYTES = 10_000_000 * 4 // 3 + 65_536
REQUEST_LINE_SLACK = 64  # a head's bytes besides its URL and header fields: method, spaces, version, CRLFs
DESCRIPTORS_KEPT = 128  # descriptors left for database pools, logs and listening sockets

Phase = Literal["head", "body", "after", "closed"]


@dataclass(frozen=True)
class Limits:
    """What one client may send and hold, in one app process (the settings of the same names)."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    send_timeout: float
    min_upload_rate: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            send_timeout=settings.send_timeout_seconds,
            min_upload_rate=settings.min_upload_bytes_per_second,
            max_connections=connection_cap(settings.max_connections),
        )


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered to leave DESCRIPTORS_KEPT of the process's descriptor limit (half if it is small)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, max(soft - DESCRIPTORS_KEPT, soft // 2)))


@functools.cache
def default_limits() -> Limits:
    return Limits.of(Settings())


class Evictable:
    """The connections of one process that may be closed to make room, each tier oldest first: those waiting
    for a request's head or idle between requests, then those whose request body is still arriving."""

    def __init__(self) -> None:
        self.waiting: dict[LongUrlProtocol, None] = {}
        self.uploading: dict[LongUrlProtocol, None] = {}

    def place(self, conn: LongUrlProtocol, tier: Literal["waiting", "uploading"] | None) -> None:
        self.waiting.pop(conn, None)
        self.uploading.pop(conn, None)
        if tier is not None:
            (self.waiting if tier == "waiting" else self.uploading)[conn] = None

    def oldest(self, besides: LongUrlProtocol) -> LongUrlProtocol | None:
        for tier in (self.waiting, self.uploading):
            for conn in tier:
                if conn is not besides and not conn.answering():
                    return conn
        return None


_evictable: weakref.WeakKeyDictionary[ServerState, Evictable] = weakref.WeakKeyDictionary()


def plain_response(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = message.encode()
    content = [STATUS_LINE[status]]
    for name, value in default_headers:
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n",
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
        body,
    ]
    return b"".join(content)


class LongUrlProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, for URLs of up to MAX_URL_BYTES, keeping `Limits` (module docstring)."""

    def __init__(self, *args: Any, limits: Limits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or default_limits()
        self.evictable = _evictable.setdefault(self.server_state, Evictable())
        self.phase: Phase = "head"
        self.timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.clock = 0.0  # when the current phase's time started
        self.received = 0  # bytes of body counted against the current phase's time
        self.began = False  # the request in the head phase has sent a byte the parser took
        self.messages = 0
        self.head_bytes = 0
        self.header_bytes = 0
        self.url_parts: list[bytes] = []
        self.url_bytes = 0
        self.refusal: tuple[int, str] | None = None

    # Phases: head (waiting for a request's head), body (head in, body arriving), after (request in).

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.enter_head()
        if len(self.connections) > self.limits.max_connections:
            victim = self.evictable.oldest(besides=self)
            if victim is None:  # every other connection is busy with a request
                self.close(503, "too many connections")
            else:
                victim.evict()

    def evict(self) -> None:
        """Close to make room: a 503 to a request under way, nothing to one that has not begun a request."""
        underway = self.phase == "body" or (self.phase == "head" and self.began)
        self.close(503 if underway else None, "too many connections")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.phase = "closed"
        self.evictable.place(self, None)
        for timer in (self.timer, self.send_timer):
            if timer is not None:
                timer.cancel()

    def enter_head(self) -> None:
        self.phase = "head"
        self.began = False
        self.clock = self.loop.time()
        self.evictable.place(self, None if self.busy() else "waiting")
        self.arm(self.clock + self.limits.header_timeout)

    def busy(self) -> bool:
        """The app has not finished answering this connection's last request."""
        return self.cycle is not None and not self.cycle.response_complete

    def answering(self) -> bool:
        return self.busy() and self.cycle.response_started

    def data_received(self, data: bytes) -> None:
        if self.phase == "after":
            self.enter_head()  # the next request's first bytes (or stray ones: they get the same time)
        counted = self.phase == "head" and self.began
        messages = self.messages
        super().data_received(data)
        if counted and self.phase == "head" and self.messages == messages and not self.transport.is_closing():
            self.head_bytes += len(data)  # all of this chunk is the same unfinished head
            if self.head_bytes - self.url_bytes > self.limits.max_header_bytes + REQUEST_LINE_SLACK:
                self.close(431, "request header fields too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase != "head":
            self.enter_head()
        self.began = True
        self.messages += 1
        self.head_bytes = self.header_bytes = self.url_bytes = 0
        self.url_parts = []

    def on_url(self, url: bytes) -> None:
        self.url_parts.append(url)  # joined once at the end of the head: no quadratic copying
        self.url_bytes += len(url)
        if self.url_bytes > MAX_URL_BYTES:
            raise httptools.HttpParserError("the URL is too long")  # uvicorn answers 400 and closes

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            self.refusal = (431, "request header fields too large")
            raise httptools.HttpParserError("request header fields too large")  # see send_400_response
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; also how a refusal raised inside the parser gets out."""
        refusal, self.refusal = self.refusal, None
        if refusal is None:
            super().send_400_response(msg)
        else:
            self.close(*refusal)

    def on_headers_complete(self) -> None:
        self.url = b"".join(self.url_parts)
        if len(self.url) <= HTTPTOOLS_MAX_URL:
            super().on_headers_complete()
        else:
            path, _, query = self.url.partition(b"?")
            self.url = path
            super().on_headers_complete()
            # The request's scope is this dict; its ASGI task has not run yet (no await since it was created).
            self.scope["query_string"] = query
        self.phase = "body"
        self.clock = self.loop.time()
        self.received = 0
        self.evictable.place(self, "uploading")
        self.arm(self.clock + self.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        self.received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = "after"
        self.cancel_timer()
        if self.cycle.response_complete:  # answered before its body ended: idle from now on
            self.evictable.place(self, "waiting")
            if not self.pipeline and self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
        else:
            self.evictable.place(self, None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.phase in ("head", "after") and not self.busy():  # idle, or on its next request's head
            self.evictable.place(self, "waiting")

    def handle_websocket_upgrade(self) -> None:
        """The websocket protocol takes the transport over: this one lets go of it."""
        self.phase = "closed"
        self.cancel_timer()
        self.evictable.place(self, None)
        super().handle_websocket_upgrade()

    # Timers: one for the head or body being received, one for a response the client does not read.

    def arm(self, when: float) -> None:
        self.cancel_timer()
        self.timer = self.loop.call_at(when, self.on_deadline)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_deadline(self) -> None:
        self.timer = None
        if self.phase not in ("head", "body") or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.phase == "head":  # a client may wait for an answer before it sends its next request
            waiting_for_us = self.flow.read_paused or self.busy()
        else:
            waiting_for_us = self.flow.read_paused or self.cycle.waiting_for_100_continue
        if waiting_for_us:  # the app has not read or answered yet: the client's time starts again
            self.clock, self.received = now, 0
            self.arm(now + (self.limits.header_timeout if self.phase == "head" else self.limits.body_timeout))
            return
        if self.phase == "head":
            deadline = self.clock + self.limits.header_timeout
            deadline += max(0, self.url_bytes - HTTPTOOLS_MAX_URL) / self.limits.min_upload_rate
        else:
            deadline = self.clock + self.limits.body_timeout + self.received / self.limits.min_upload_rate
        if now < deadline:
            self.arm(deadline)
        elif self.phase == "body" or self.began:
            self.close(408, "the request did not arrive in time")
        else:
            self.close(None, "")  # a connection that never sent a request

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(self.limits.send_timeout, self.on_send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def on_send_stalled(self) -> None:
        self.send_timer = None
        self.transport.abort()  # close() would wait for the unread response to drain

    def close(self, status: int | None, message: str) -> None:
        """Answer `status` (unless a response is under way or None) and close the connection."""
        if self.phase == "closed" or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self.phase != "body" or cycle.response_started:
                status = None  # the bytes would land in (or stand for) another request's response
            cycle.disconnected = True  # the app's next receive() is a disconnect, its send() a no-op
            cycle.message_event.set()
        if status is not None:
            self.transport.write(plain_response(status, message, self.server_state.default_headers))
        self.phase = "closed"
        self.cancel_timer()
        self.evictable.place(self, None)
        self.transport.close()


def uvicorn_options(settings: Settings | None = None) -> dict[str, Any]:
    """uvicorn.run/Config keywords for `settings` (the environment's, when None)."""
    settings = settings or Settings()
    return {
        # A partial of a module-level class: worker processes receive it pickled.
        "http": functools.partial(LongUrlProtocol, limits=Limits.of(settings)),
        "timeout_keep_alive": settings.keep_alive_seconds,
        # SIGTERM: stop accepting, let the requests in flight finish for this long, then close the pools.
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }
