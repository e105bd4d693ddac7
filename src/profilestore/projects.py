"""Projects: creation, listing, secret rotation, and the token -> project lookup ingestion uses.

A project has a public token (sent by SDKs with every record) and an API secret (needed by every read
API).  The secret is shown once, at creation or rotation; only its SHA-256 is stored (see auth.py).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from sqlalchemy import case, func, insert, select, update

from profilestore.auth import hash_secret, secret_matches
from profilestore.db.engine import compile_query
from profilestore.db.schema import projects
from profilestore.errors import BadRequest

Conn = AsyncConnection[dict[str, Any]]


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    token: str


async def _run(conn: Conn, stmt: Any) -> list[dict[str, Any]]:
    sql, params = compile_query(stmt)
    cur = await conn.execute(sql, params)
    return await cur.fetchall() if cur.description else []


async def create_project(conn: Conn, name: str) -> dict[str, Any]:
    """Creates a project; returns id, name, token and the API secret (the only time it is shown)."""
    if not name.strip():
        raise BadRequest("a project needs a name")
    token = secrets.token_hex(16)
    secret = secrets.token_hex(16)
    stmt = (
        insert(projects)
        .values(name=name, token=token, api_secret_hash=hash_secret(secret))
        .returning(projects.c.id)
    )
    try:
        rows = await _run(conn, stmt)
    except UniqueViolation:
        raise BadRequest(f"a project named {name!r} exists already") from None
    return {"id": rows[0]["id"], "name": name, "token": token, "api_secret": secret}


async def list_projects(conn: Conn) -> list[Project]:
    rows = await _run(conn, select(projects.c.id, projects.c.name, projects.c.token).order_by(projects.c.id))
    return [Project(**row) for row in rows]


async def rotate_secret(conn: Conn, name: str, grace_seconds: float = 0.0) -> str:
    """A new API secret; the current one stays valid for `grace_seconds` more (0: it stops at once), so that
    clients can move to the new one without downtime.  A third secret is never valid: rotating again ends
    the previous grace."""
    secret = secrets.token_hex(16)
    keep: dict[str, Any]
    if grace_seconds > 0:
        keep = {
            "previous_secret_hash": projects.c.api_secret_hash,
            "previous_secret_until": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, grace_seconds),
        }
    else:
        keep = {"previous_secret_hash": None, "previous_secret_until": None}
    stmt = (
        update(projects)
        .where(projects.c.name == name)
        .values(api_secret_hash=hash_secret(secret), **keep)
        .returning(projects.c.id)
    )
    if not await _run(conn, stmt):
        raise BadRequest(f"no project named {name!r}")
    return secret


async def project_of_token(conn: Conn, token: str) -> int | None:
    """The project a token belongs to (CLI commands that take `--token`)."""
    rows = await _run(conn, select(projects.c.id).where(projects.c.token == token))
    return int(rows[0]["id"]) if rows else None


async def project_secret_hashes(conn: Conn, project_id: int | None) -> list[tuple[int, str]]:
    """(id, secret hash) of one project, or of all when project_id is None (auth.py compares them): the
    current secret's, and the previous one's while its grace lasts."""
    in_grace = projects.c.previous_secret_until > func.now()
    stmt = select(
        projects.c.id,
        projects.c.api_secret_hash,
        case((in_grace, projects.c.previous_secret_hash), else_=None).label("previous"),
    )
    if project_id is not None:
        stmt = stmt.where(projects.c.id == project_id)
    hashes: list[tuple[int, str]] = []
    for row in await _run(conn, stmt):
        hashes.append((row["id"], row["api_secret_hash"]))
        if row["previous"] is not None:
            hashes.append((row["id"], row["previous"]))
    return hashes


async def project_of_secret(conn: Conn, secret: str, project_id: int | None = None) -> int | None:
    """The project whose API secret this is (only project `project_id`, when given), or None.  Every
    stored hash is compared, in constant time each (auth.secret_matches)."""
    for pid, stored in await project_secret_hashes(conn, project_id):
        if secret_matches(secret, stored):
            return pid
    return None


class TokenCache:
    """token -> project id, cached in the process for `ttl` seconds (unknown tokens for a shorter time).

    Ingestion resolves the tokens of every request; projects are created rarely and never change token.
    """

    def __init__(self, ttl: float = 60.0, negative_ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        # Bounded: unknown tokens are cached too, and anyone can send those.
        self.max_entries = max_entries
        self._entries: dict[str, tuple[int | None, float]] = {}

    async def resolve(self, conn_factory: Any, tokens: set[str]) -> dict[str, int | None]:
        now = time.monotonic()
        found: dict[str, int | None] = {}
        missing = []
        for token in tokens:
            entry = self._entries.get(token)
            if entry is not None and entry[1] > now:
                found[token] = entry[0]
            else:
                missing.append(token)
        if missing:
            async with conn_factory() as conn:
                stmt = select(projects.c.token, projects.c.id).where(projects.c.token.in_(missing))
                rows = {row["token"]: row["id"] for row in await _run(conn, stmt)}
            if len(self._entries) + len(missing) > self.max_entries:
                self._entries.clear()
            for token in missing:
                project_id = rows.get(token)
                found[token] = project_id
                ttl = self.ttl if project_id is not None else self.negative_ttl
                self._entries[token] = (project_id, now + ttl)
        return found
