"""What both streamed exports (profiles and events) do with their stream of lines.

stream(pool, settings, lines)   the lines of `lines(conn)` on a pooled connection taken inside the stream,
                                so it lives as long as the response does, not the handler; the first chunk
                                is read before answering (`started`), so an error before any output gets
                                its own status
accept_gzip(request, chunks)    gzip-encoded when the client accepts it
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from profilestore.db.connections import database
from profilestore.db.engine import long_running
from profilestore.settings import Settings


async def stream(
    pool: AsyncConnectionPool,
    settings: Settings,
    lines: Callable[[AsyncConnection[Any]], AsyncIterator[bytes]],
) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        # One transaction with the limits of long work (db.engine.long_running): the stream fetches only as
        # fast as its client reads, so it may wait longer than an ordinary transaction may stay idle.
        async with database(pool, settings) as conn, conn.transaction():
            await long_running(conn, settings)
            async for chunk in lines(conn):
                yield chunk

    return await started(body())


def accept_gzip(
    request: Request, chunks: AsyncIterator[bytes]
) -> tuple[AsyncIterator[bytes], dict[str, str]]:
    """The chunks gzip-encoded (and the header that says so) when the request's Accept-Encoding has gzip."""
    if "gzip" in request.headers.get("accept-encoding", ""):
        return gzipped(chunks), {"Content-Encoding": "gzip"}
    return chunks, {}


async def gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A gzip stream of the chunks, compressed as they come."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    async for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


async def started(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream with its first chunk already read: whatever fails before any output (a database that is
    down, a definition found wrong by Postgres) then fails the request with its own status, not the middle
    of a 200."""
    first = await anext(chunks, None)

    async def rest() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
            async for chunk in chunks:
                yield chunk

    return rest()
