"""Mixpanel-shaped answers of the ingestion endpoints, produced in one place (docs/ingest.md section 2).

This module owns how an ingestion outcome is rendered: `verbose=0` (`1`/`0`), `verbose=1`
(`{"status", "error"}`), `verbose=2`/`strict=1` (`{"code", "status", "num_records_imported",
"failed_records"}` with 200/400), and the transport wrappers `img=1` (a 1x1 transparent GIF) and
`callback=NAME` (JSONP). Error statuses (401, 413, 415, 429, 503) answer `{"code", "status", "error"}` with
the error's headers (`Retry-After`, `WWW-Authenticate`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from fastapi.responses import Response

from profilestore.errors import ProfilestoreError

__all__ = ["Outcome", "RecordError", "ingest_error_response", "ingest_response"]

# A 1x1 transparent GIF, for `img=1` (tracking pixels).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

# A JavaScript name path: identifiers joined by dots, optionally indexed by a number — the browser SDK's JSONP
# callbacks look like `mixpanel._jsc[12345678]`. Nothing else can reach the script text.
_CALLBACK = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[\d{1,20}\])*", re.ASCII)
_CALLBACK_MAX = 200

_MAX_LISTED = 10  # failures named in a verbose=1 message
_STRICT_ERROR = "some data points in the request failed validation"
_NO_RECORDS = "no records in the request"
_JSON = "application/json"


@dataclass
class RecordError:
    """One rejected record: its index in the request, its id, the field path and the rule it broke."""

    index: int
    id_field: str  # "$distinct_id" (engage/groups/track) or "$insert_id" (import)
    id_value: str | None
    field: str  # e.g. "$add.score" or "$distinct_id"; "" for the record as a whole
    message: str  # e.g. "must be a number"


@dataclass
class Outcome:
    """What became of a request's records."""

    total: int  # records in the request (0 when unreadable)
    failures: list[RecordError]  # records rejected
    body_error: str | None = None  # body unreadable
    project_ids: set[int] = field(default_factory=set)  # the projects whose records were applied


def ingest_response(params: Mapping[str, str], outcome: Outcome, *, strict_default: bool = False) -> Response:
    """Render an outcome in the mode the request's `verbose`/`strict`/`img`/`callback` parameters ask for."""
    failed = len({f.index for f in outcome.failures})
    imported = max(outcome.total - failed, 0)
    error = outcome.body_error
    if error is None and outcome.total == 0:
        error = _NO_RECORDS

    if _strict(params, strict_default):
        if error is None and not outcome.failures:
            body: Any = {"code": 200, "status": "OK", "num_records_imported": imported}
            return _render(params, orjson.dumps(body), 200, _JSON)
        body = {
            "code": 400,
            "status": "Bad Request",
            "error": error if error is not None else _STRICT_ERROR,
            "num_records_imported": 0 if error is not None else imported,
            "failed_records": [] if error is not None else [_failed_record(f) for f in outcome.failures],
        }
        return _render(params, orjson.dumps(body), 400, _JSON)

    if _verbose(params) == 1:
        if error is not None:
            body = {"status": 0, "error": error}
        elif outcome.failures:
            body = {"status": 1 if imported else 0, "error": _summary(outcome, failed)}
        else:
            body = {"status": 1, "error": None}
        return _render(params, orjson.dumps(body), 200, _JSON)

    ok = error is None and imported > 0
    return _render(params, b"1" if ok else b"0", 200, _JSON)


def ingest_error_response(params: Mapping[str, str], exc: ProfilestoreError) -> Response:
    """A request-level error (401/413/415/429/503): `{"code", "status", "error"}` and the error's headers."""
    status = exc.status_code
    body = {"code": status, "status": HTTPStatus(status).phrase, "error": exc.message}
    return _render(params, orjson.dumps(body), status, _JSON, exc.headers)


def options_response() -> Response:
    """Plain OPTIONS (a CORS preflight proper is answered by the CORS middleware before it gets here)."""
    return Response(status_code=200, headers={"Allow": "GET, POST, OPTIONS"})


# --- modes --------------------------------------------------------------------------------------------------


def _strict(params: Mapping[str, str], strict_default: bool) -> bool:
    strict = params.get("strict", "").strip().lower()
    if strict in ("1", "true"):
        return True
    if strict_default and strict not in ("0", "false"):
        return True
    return _verbose(params) == 2


def _verbose(params: Mapping[str, str]) -> int:
    verbose = params.get("verbose", "").strip().lower()
    if verbose == "2":
        return 2
    if verbose in ("1", "true"):
        return 1
    return 0


def _summary(outcome: Outcome, failed: int) -> str:
    listed = [_describe(f) for f in outcome.failures[:_MAX_LISTED]]
    if len(outcome.failures) > _MAX_LISTED:
        listed.append("...")
    return f"{failed} of {outcome.total} records failed: " + "; ".join(listed)


def _describe(failure: RecordError) -> str:
    if failure.field:
        return f"[{failure.index}] {failure.field}: {failure.message}"
    return f"[{failure.index}] {failure.message}"


def _failed_record(failure: RecordError) -> dict[str, Any]:
    return {
        "index": failure.index,
        failure.id_field: failure.id_value,
        "field": failure.field,
        "message": failure.message,
    }


# --- transport wrappers -------------------------------------------------------------------------------------


def _render(
    params: Mapping[str, str],
    content: bytes,
    status: int,
    media_type: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Apply `img=1` (the GIF, status kept) or a valid `callback=NAME` (JSONP, status 200), else as is."""
    if params.get("img", "").strip() == "1":
        return Response(PIXEL_GIF, status_code=status, media_type="image/gif", headers=_no_store(headers))
    callback = _callback(params)
    if callback is not None:
        script = b"%s(%s)" % (callback.encode("ascii"), content)
        jsonp_headers = _no_store(headers)
        jsonp_headers["X-Content-Type-Options"] = "nosniff"
        return Response(script, status_code=200, media_type="text/javascript", headers=jsonp_headers)
    return Response(content, status_code=status, media_type=media_type, headers=dict(headers or {}))


def _callback(params: Mapping[str, str]) -> str | None:
    name = params.get("callback")
    if not name or len(name) > _CALLBACK_MAX or _CALLBACK.fullmatch(name) is None:
        return None
    return name


def _no_store(headers: Mapping[str, str] | None) -> dict[str, str]:
    result = dict(headers or {})
    result.setdefault("Cache-Control", "no-cache, no-store, must-revalidate")
    return result
