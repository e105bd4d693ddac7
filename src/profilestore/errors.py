"""The service's errors and the one JSON shape they answer with.

    ProfilestoreError                 base: an HTTP status, a message, optional headers
    ├── BadRequest (400)              a parameter or a body the service cannot use
    ├── Unauthorized (401)            missing or wrong API secret / credentials
    ├── Forbidden (403)               a secret of another project
    ├── NotFound (404)                no such thing in this project (a cohort)
    ├── Conflict (409)                the change would break something that depends on it
    ├── PayloadTooLarge (413)         a body over the size limits
    ├── UnsupportedMediaType (415)    a content type the endpoint does not read
    ├── InternalError (500)           anything unexpected: its details go to the log, never to the client
    └── DatabaseUnavailable (503)     Postgres is down or restarting; carries Retry-After

On the Mixpanel-compatible ingestion endpoints these become Mixpanel's shape `{"code", "status", "error"}`
(ingest/responses.py); on Mixpanel's read paths `{"error": message}`, on the service's own JSON API
`{"error": Name, "detail": message}` (error_content).

No 401 carries `WWW-Authenticate: Basic`: a browser would prompt for the secret and then send it, cached, on
requests other pages make.
"""

from __future__ import annotations

from http import HTTPStatus


class ProfilestoreError(Exception):
    status_code = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    @property
    def status_phrase(self) -> str:
        return HTTPStatus(self.status_code).phrase


class BadRequest(ProfilestoreError):
    status_code = 400


class Unauthorized(ProfilestoreError):
    status_code = 401

    def __init__(self, message: str = "missing or invalid API secret") -> None:
        super().__init__(message)


class Forbidden(ProfilestoreError):
    status_code = 403


class NotFound(ProfilestoreError):
    status_code = 404


class Conflict(ProfilestoreError):
    status_code = 409


class UnprocessableContent(ProfilestoreError):
    status_code = 422


class PayloadTooLarge(ProfilestoreError):
    status_code = 413


class UnsupportedMediaType(ProfilestoreError):
    status_code = 415


class TooManyRequests(ProfilestoreError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class InternalError(ProfilestoreError):
    status_code = 500

    def __init__(self, message: str = "unexpected error; it has been logged") -> None:
        super().__init__(message)


class DatabaseUnavailable(ProfilestoreError):
    status_code = 503

    def __init__(self, message: str = "database unavailable, retry later", *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


# Paths whose errors answer in Mixpanel's read-API shape, {"error": message} (docs/query.md).
MIXPANEL_READ_PATHS = ("/api/2.0/", "/api/query/")


def error_content(path: str, exc: ProfilestoreError) -> dict[str, object]:
    """The JSON body of `exc` answering a request for `path`: Mixpanel's `{"error": message}` on its read
    paths, the service's `{"error": Name, "detail": message}` elsewhere."""
    if path.startswith(MIXPANEL_READ_PATHS):
        return {"error": exc.message}
    return {"error": type(exc).__name__, "detail": exc.message}
