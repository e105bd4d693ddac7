"""Work stops when its client goes away: an ASGI middleware that cancels a request's handler once the client
has disconnected before any answer started.

Without it a handler runs to its end for nobody (Starlette stops only a streamed answer): an /engage statement
waiting on a lock, or a heavy read, kept its Postgres backend busy until the statement timeout, and a write
then committed what its client would send again.  Cancelling the handler cancels its statement in Postgres
too -- psycopg sends a cancel request when the task awaiting a query is cancelled -- and an interrupted write
applies nothing: its transaction rolls back, so the client's retry is safe.

The body is left to the app to read at its own pace (the read API checks credentials before reading any): the
watch on the connection starts when the app has read the last of it, or at once for a request without one.
From then on the watch is the only reader of the connection and hands the app what it reads.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_DISCONNECT: Message = {"type": "http.disconnect"}


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await self.app(scope, receive, send)
            return
        watch = _Watch(receive, send, task)
        if not _has_body(scope):
            watch.start()
        caught = False
        try:
            await self.app(scope, watch.receive, watch.send)
        except asyncio.CancelledError:
            caught = True
            if not watch.cancelled or task.uncancel() > 0:
                raise  # not (only) ours
        finally:
            watch.stop()
            if watch.cancelled and not caught:
                task.uncancel()  # the app swallowed it: the task is not being cancelled any more


class _Watch:
    """The connection of one request, read by a task of its own once the app has its body."""

    def __init__(self, receive: Receive, send: Send, handler: asyncio.Task[object]) -> None:
        self._receive = receive
        self._send = send
        self._handler = handler
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._watcher: asyncio.Task[None] | None = None
        self._answered = False  # the answer has started: from then on the app is left alone
        self._done = False
        self._gone = False  # the client has disconnected
        self.cancelled = False

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    def stop(self) -> None:
        self._done = True
        if self._watcher is not None:
            self._watcher.cancel()

    async def receive(self) -> Message:
        if self._watcher is None:
            message = await self._receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.start()  # the whole body is read
            return message
        if self._gone and self._messages.empty():
            return _DISCONNECT
        return await self._messages.get()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._answered = True
        await self._send(message)

    async def _watch(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while not self._gone:
                message = await self._receive()
                self._gone = message["type"] == "http.disconnect"
                self._messages.put_nowait(message)
            if not (self._answered or self._done):
                self.cancelled = True
                self._handler.cancel()


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False
