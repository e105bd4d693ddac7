"""`Idempotency-Key` on the ingestion endpoints (beyond Mixpanel; the IETF HTTPAPI draft "The
Idempotency-Key HTTP Header Field"): a retry of a request whose answer was lost applies nothing twice.

    key_of(request)                  the header's key, checked (1-255 printable ASCII characters), or None
    scope_of(records, ...)           whose key it is: the credentials' project, or the records' project tokens
    fingerprint(request, wire)       what makes two requests "the same": method, path, parameters, body
    claimed(connect, ...)            the key's transaction: replays a stored answer, or runs the request
                                     and stores its answer in the same transaction as its records

How a key is kept (table `idempotency_keys`, one row per endpoint, scope and key, `idempotency_hours`):
* A key belongs to its clients: to the project of the request's credentials (/import), else to the project
  tokens its records carry.  Two projects that happen to use the same key never meet.
* The request's records and its answer are written in ONE transaction, so the row exists exactly when the
  records were applied: after a crash or a lost answer, a retry either finds the row (and gets the first
  answer, `Idempotent-Replayed: true`, nothing applied) or finds nothing (nothing was applied: it runs).
* While the first request runs, its transaction holds an advisory lock named after (endpoint, scope, key); a
  retry that cannot take it at once is answered `409` (the draft's "request in progress"): nothing applied,
  retry later.  The lock's name is a 64-bit hash, so two different keys could share one: the later request
  is then answered 409 while the earlier runs (a retry succeeds).
* The same key with another body (or other parameters) is a `422`: a key names one request.
* A request answered before its records were read (a 400 for an unreadable body, 401, 413, ...) applied
  nothing and stores nothing: its retry is answered the same way by running it again.
Without a key, a retry after a lost answer applies twice, as with Mixpanel (`/track` and `/import` are
idempotent anyway by `$insert_id`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from profilestore.db.connections import Connector
from profilestore.errors import BadRequest, Conflict, UnprocessableContent
from profilestore.ingest.wire import WireRequest

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_CHARS = 255

FIND = """
SELECT fingerprint, status, media_type, body FROM idempotency_keys
WHERE endpoint = %(endpoint)s AND scope = %(scope)s AND key = %(key)s
  AND created_at > now() - %(hours)s * interval '1 hour'
"""
# An expired row of the same key (not yet swept) is replaced.
STORE = """
INSERT INTO idempotency_keys (endpoint, scope, key, fingerprint, project_ids, status, media_type, body)
VALUES (
    %(endpoint)s, %(scope)s, %(key)s, %(fingerprint)s, %(project_ids)s, %(status)s, %(media_type)s, %(body)s
)
ON CONFLICT (endpoint, scope, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    project_ids = excluded.project_ids, status = excluded.status, media_type = excluded.media_type,
    body = excluded.body, created_at = now()
"""
SWEEP = "DELETE FROM idempotency_keys WHERE created_at < now() - %(hours)s * interval '1 hour'"


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, or None; BadRequest when it is empty, too long or not printable."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"{HEADER}: send one key, not {len(values)}")
    key = values[0].strip()
    # The draft's key is a Structured Fields string, printable ASCII in quotes; unquoted is taken too, as the
    # same key.
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise BadRequest(f"{HEADER}: must be 1 to {MAX_KEY_CHARS} printable ASCII characters")
    return key


def scope_of(records: list[Any], token_field: str, project_id: int | None) -> str:
    """Whose key this is: `project:<id>` of the request's credentials, else `tokens:` and a SHA-256 of the
    distinct project tokens its records carry (`$token`, or `properties.token` for events)."""
    if project_id is not None:
        return f"project:{project_id}"
    tokens: set[str] = set()
    for record in records:
        if not isinstance(record, dict):
            continue
        holder = record.get("properties") if token_field == "properties.token" else record
        token = holder.get(token_field.rsplit(".", 1)[-1]) if isinstance(holder, dict) else None
        if isinstance(token, str):
            tokens.add(token)
    joined = "\n".join(sorted(tokens)).encode("utf-8", "surrogatepass")
    return "tokens:" + hashlib.sha256(joined).hexdigest()


def fingerprint(request: Request, wire: WireRequest) -> bytes:
    """SHA-256 of the method, the path, the parameters (query string and form fields, sorted) and the
    bytes that carried the records (after gzip: the same records sent compressed or not are the same)."""
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path.rstrip('/')}\n".encode())
    for name, value in sorted(wire.params.items()):
        digest.update(f"{name}={value}\n".encode("utf-8", "surrogatepass"))
    digest.update(wire.content)
    return digest.digest()


@dataclass
class Claim:
    """A key's transaction: either `replay` (the stored answer) or `conn`, on which the request runs."""

    endpoint: str
    scope: str
    key: str
    fingerprint: bytes
    conn: AsyncConnection[Any]
    replay: Response | None = None

    def connector(self) -> Connector:
        """The claim's connection as the pipeline's connector: every statement in the key's transaction."""

        @contextlib.asynccontextmanager
        async def same() -> AsyncIterator[AsyncConnection[Any]]:
            yield self.conn

        return same

    async def store(self, response: Response, project_ids: set[int]) -> None:
        """Keeps the answer (and the projects it wrote to) beside the records: same transaction."""
        await self.conn.execute(
            STORE,
            {
                "endpoint": self.endpoint,
                "scope": self.scope,
                "key": self.key,
                "fingerprint": self.fingerprint,
                "project_ids": sorted(project_ids),
                "status": response.status_code,
                "media_type": response.headers.get("content-type", ""),
                "body": bytes(response.body),
            },
        )


def lock_name(endpoint: str, scope: str, key: str) -> str:
    """The text whose 64-bit hash names the advisory lock of a key in use."""
    return f"{endpoint}\n{scope}\n{key}"


@contextlib.asynccontextmanager
async def claimed(
    connect: Connector, *, endpoint: str, scope: str, key: str, fingerprint: bytes, hours: float
) -> AsyncIterator[Claim]:
    """Opens the key's transaction (committed when the block ends without an exception).  Conflict (409)
    while another request with the key runs; UnprocessableContent (422) when the key was used for another
    request; else a Claim with the stored answer to replay, or none (then run the request on `conn`)."""
    async with connect() as conn, conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        name = lock_name(endpoint, scope, key)
        await cur.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
        locked = await cur.fetchone()
        if locked is None or not locked[0]:
            raise Conflict(f"a request with this {HEADER} is still being processed; retry later")
        await cur.execute(FIND, {"endpoint": endpoint, "scope": scope, "key": key, "hours": hours})
        row = await cur.fetchone()
        claim = Claim(endpoint, scope, key, fingerprint, conn)
        if row is not None:
            stored_fingerprint, status, media_type, body = row
            if bytes(stored_fingerprint) != fingerprint:
                raise UnprocessableContent(
                    f"this {HEADER} was used for a different request (another body or other parameters)"
                )
            claim.replay = Response(
                content=bytes(body),
                status_code=status,
                media_type=media_type or None,
                headers={REPLAYED: "true"},
            )
        yield claim


async def sweep(conn: AsyncConnection[Any], hours: float) -> None:
    """Deletes the keys older than `hours`."""
    await conn.execute(SWEEP, {"hours": hours})
