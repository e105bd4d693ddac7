"""API secrets: hashing, HTTP Basic parsing in every form docs/query.md accepts, constant-time comparison.

Secrets are 128 random bits, so SHA-256 is the right hash (a password KDF protects low-entropy secrets
and only costs time here).  Comparison is `hmac.compare_digest` of the hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


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


def candidate_secret(credentials: tuple[str, str], *, service_account: bool) -> str:
    """The secret of `secret:` (old clients) or of `user:secret` with project_id (service accounts)."""
    user, password = credentials
    if service_account and password:
        return password
    return user or password
