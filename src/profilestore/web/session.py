"""Browser sessions: a signed, HTTP-only, SameSite=Strict cookie that never holds a secret, and CSRF tokens.

Signing in with a project's API secret adds that project to the browser's session; a browser may hold several
and switch between them.  The cookie holds, per project, its id and a fingerprint of its stored secret hash,
so rotating a project's secret signs every browser out of it.  It is signed (itsdangerous, HMAC-SHA1 over a
key of 32 random bytes kept in the `web_keys` table, shared by every app process) and expires after
`session_max_age_seconds`; a cookie that is forged, expired or for a rotated secret is no session at all, and
the page sends the browser to sign-in.

CSRF: every form carries the session's token (`csrf`), every script call sends it as `X-CSRF-Token`, and
every state-changing request checks it in constant time.  The sign-in form, which has no session yet, carries
the token of a short-lived cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from psycopg import AsyncConnection

from profilestore.errors import Forbidden

COOKIE = "profilestore_session"
SIGNIN_COOKIE = "profilestore_signin"
SIGNIN_MAX_AGE = 3600


class SignInRequired(Exception):
    """No valid session for this project: the page answers with a redirect to /signin."""


@dataclass
class WebSession:
    projects: dict[int, str] = field(default_factory=dict)  # project id -> fingerprint of its secret's hash
    current: int | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def as_json(self) -> dict[str, Any]:
        return {"p": {str(k): v for k, v in self.projects.items()}, "c": self.current, "x": self.csrf}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WebSession:
        return cls({int(k): str(v) for k, v in data["p"].items()}, data["c"], str(data["x"]))


def fingerprint(secret_hash: str) -> str:
    return hashlib.sha256(secret_hash.encode()).hexdigest()[:24]


async def signing_key(conn: AsyncConnection[Any]) -> bytes:
    """The key, made once (the first process to ask makes it; the others read that one)."""
    await conn.execute(
        "INSERT INTO web_keys (id, key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING", (secrets.token_hex(32),)
    )
    cur = await conn.execute("SELECT key FROM web_keys WHERE id = 1")
    row = await cur.fetchone()
    assert row is not None
    key = row["key"] if isinstance(row, dict) else row[0]
    return bytes.fromhex(key)


class Cookies:
    """Reads and writes the session cookie and the sign-in form's cookie."""

    def __init__(self, key: bytes, max_age: int) -> None:
        self.sessions = URLSafeTimedSerializer(key, salt="profilestore.session")
        self.signin = URLSafeTimedSerializer(key, salt="profilestore.signin")
        self.max_age = max_age

    def load(self, request: Request) -> WebSession | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            return WebSession.from_json(self.sessions.loads(raw, max_age=self.max_age))
        except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
            return None

    def save(self, request: Request, response: Response, session: WebSession) -> None:
        response.set_cookie(
            COOKIE,
            self.sessions.dumps(session.as_json()),
            max_age=self.max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def signin_token(self, request: Request) -> tuple[str, str | None]:
        """(the sign-in form's token, a new cookie value when the browser has none yet)."""
        raw = request.cookies.get(SIGNIN_COOKIE)
        if raw:
            try:
                return str(self.signin.loads(raw, max_age=SIGNIN_MAX_AGE)), None
            except BadSignature:
                pass
        token = secrets.token_urlsafe(24)
        return token, self.signin.dumps(token)

    def check_signin(self, request: Request, sent: str | None) -> None:
        raw = request.cookies.get(SIGNIN_COOKIE)
        try:
            expected = str(self.signin.loads(raw or "", max_age=SIGNIN_MAX_AGE))
        except BadSignature:
            raise Forbidden("the sign-in form has expired; load the page again") from None
        if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Forbidden("the sign-in form has expired; load the page again")


def check_csrf(session: WebSession, sent: str | None) -> None:
    """A state-changing request must carry the session's token (form field `csrf` or `X-CSRF-Token`)."""
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden("this form has expired (CSRF token missing or wrong); load the page again")
