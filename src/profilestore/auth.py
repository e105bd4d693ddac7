"""API secrets: hashing, HTTP Basic parsing in every form docs/query.md accepts, constant-time comparison.

Secrets are 128 random bits, so SHA-256 is the right hash (a password KDF protects low-entropy secrets
and only costs time here).  Comparison is `hmac.compare_digest` of the hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from profilestore.errors import BadRequest, Forbidden, Unauthorized


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class VerifiedSecrets:
    """Secrets verified on the read replica in the last `ttl` seconds -> their project, kept by their hash
    (never the secret itself), at most `max_entries` of them (the oldest go first).  Replica-served reads then
    need no database to authenticate a client seen recently; a secret rotated away (without a grace) keeps
    working there for at most `ttl`."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[int, float]] = {}

    def get(self, secret: str) -> int | None:
        entry = self._entries.get(hash_secret(secret))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, secret: str, project_id: int) -> None:
        if self.ttl <= 0:
            return
        key = hash_secret(secret)
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (project_id, time.monotonic() + self.ttl)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """`Basic base64(user:password)` or the unencoded `Basic user:password` -> (user, password)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    value = value.strip()
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = value
    if ":" not in decoded:
        # Unencoded and without a colon, or base64 of something else: take it as a bare secret.
        decoded = value if ":" in value else value + ":"
    user, _, password = decoded.partition(":")
    return user, password


@dataclass(frozen=True)
class Credentials:
    """What a request authenticates with: HTTP Basic's user and password, and the project a service account
    names (`project_id`)."""

    user: str
    password: str
    project_id: int | None

    @property
    def secret(self) -> str:
        """The secret of `secret:` (old clients) or of `user:secret` with project_id (service accounts)."""
        if self.project_id is not None and self.password:
            return self.password
        return self.user or self.password


def parse_credentials(
    authorization: str | None, project_id: str | None, *, api_key: str = ""
) -> Credentials | None:
    """A request's credentials: its Authorization header (else `api_key`, as the user name with no password,
    which older SDKs send to /import) and `project_id`; None without any.  A `project_id` that is not an
    integer is a BadRequest; credentials holding a NUL are Unauthorized."""
    basic = basic_credentials(authorization)
    if basic is None:
        if not api_key:
            return None
        basic = (api_key, "")
    if "\x00" in basic[0] or "\x00" in basic[1]:
        raise Unauthorized()  # no secret or token holds a NUL (and Postgres text cannot)
    return Credentials(basic[0], basic[1], project_id_value(project_id))


_INTEGER = re.compile(r"[-+]?[0-9]{1,19}")


def project_id_value(raw: object) -> int | None:
    """A `project_id` as sent (text from a query string or a form, a number from a JSON body) -> the id; None
    when absent or empty; a BadRequest unless it is an integer of Postgres's bigint."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        raise BadRequest("project_id must be an integer")
    if not -(2**63) <= value < 2**63:
        raise BadRequest("project_id must be an integer")
    return value


def check_project_id(owner: int, raw: object) -> None:
    """A `project_id` the request carries besides the one its credentials were checked with (in a POST body,
    form or JSON: params.body_project_id) must name the same project: Forbidden (403) otherwise, as for
    the query string's; BadRequest (400) when it is not an integer."""
    wanted = project_id_value(raw)
    if wanted is not None and wanted != owner:
        raise Forbidden(f"this secret does not belong to project {wanted}")
