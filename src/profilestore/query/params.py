"""The read API's parameters (docs/query.md): from the query string, a form or a JSON body, merged (body
wins).

Values that are JSON (lists, objects) arrive as JSON text; anything that is not JSON is a 400 naming the
parameter.  Each endpoint then validates its own parameters into a pydantic model (schemas.py).

Every value is checked before it can reach Postgres or a stream: a NUL character anywhere (Postgres text
cannot hold one) is a 400 naming the parameter, and so is an integer outside Postgres's bigint.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request

from profilestore.errors import BadRequest, PayloadTooLarge
from profilestore.expressions import Node, parse
from profilestore.storable import FIRST_DAY, LAST_DAY, NUL_MESSAGE, day_in_span, holds_nul

MAX_PARAMS_BYTES = 10_000_000
# Every integer parameter is a Postgres bigint (or smaller).
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"[-+]?[0-9]+")


async def read_params(request: Request) -> dict[str, Any]:
    """Query string, then the body's parameters over it.  JSON bodies keep their JSON values."""
    params: dict[str, Any] = dict(request.query_params)
    for name, value in params.items():
        refuse_nul(name, value)
    if request.method != "POST":
        return params
    body = await request.body()
    if len(body) > MAX_PARAMS_BYTES:
        raise PayloadTooLarge(f"request body over {MAX_PARAMS_BYTES} bytes")
    if not body.strip():
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and body.lstrip()[:1] == b"{"):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the JSON body is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise BadRequest("the JSON body must be an object of parameters")
        for name, value in parsed.items():
            refuse_nul(name, value)
        params.update(parsed)
        return params
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the form body is not UTF-8") from None
    fields = parse_qsl(text, keep_blank_values=True)
    for name, value in fields:
        refuse_nul(name, value)
    params.update(fields)
    return params


def body_project_id(content_type: str, body: bytes) -> Any:
    """The `project_id` a POST body carries, as sent (JSON: its value; a form: its text), for authentication
    to check against the secret's project (auth.check_project_id); None when there is none, or when the body
    is not readable (the route answers that).  Bodies that do not hold the name are not parsed."""
    if b"project_id" not in body:
        return None
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json" or (not media_type and body.lstrip()[:1] == b"{"):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return parsed.get("project_id") if isinstance(parsed, dict) else None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    found = [value for name, value in parse_qsl(text, keep_blank_values=True) if name == "project_id"]
    return found[-1] if found else None


def refuse_nul(name: str, value: Any) -> None:
    """A BadRequest naming the parameter when `value` (or any string or name inside it, or the parameter's
    own name) holds a NUL: Postgres text cannot, so no property, event or id ever does."""
    if "\x00" in name:
        raise BadRequest(f"parameter names {NUL_MESSAGE}")
    if holds_nul(value):
        raise BadRequest(f"{name}: {NUL_MESSAGE}")


def json_param(params: dict[str, Any], name: str) -> Any:
    """A JSON-valued parameter: already decoded (JSON body) or JSON text; None when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        refuse_nul(name, value)
        return value
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{name}: not valid JSON") from None
    refuse_nul(name, decoded)
    return decoded


def text_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    refuse_nul(name, value)
    return value


def int_param(
    params: dict[str, Any],
    name: str,
    *,
    default: int | None = None,
    minimum: int = BIGINT_MIN,
    maximum: int = BIGINT_MAX,
) -> int | None:
    """An integer parameter from `minimum` to `maximum` (by default Postgres's bigint), else a BadRequest."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadRequest(f"{name}: must be an integer")
    out_of_range = BadRequest(f"{name}: must be an integer from {minimum} to {maximum}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if _INTEGER.fullmatch(text) is None:
            raise BadRequest(f"{name}: must be an integer, got {text[:40]!r}")
        if len(text) > 40:  # past any bigint: not even converted
            raise out_of_range
        number = int(text)
    if not minimum <= number <= maximum:
        raise out_of_range
    return number


def day_range(from_date: date, to_date: date) -> None:
    """A BadRequest naming the parameter unless FIRST_DAY <= from_date <= to_date <= LAST_DAY (storable.py:
    the days a request may name)."""
    for name, day in (("from_date", from_date), ("to_date", to_date)):
        if not day_in_span(day):
            raise BadRequest(f"{name}: must be a day from {FIRST_DAY} to {LAST_DAY}, got {day}")
    if to_date < from_date:
        raise BadRequest("to_date: must not be before from_date")


def bool_param(params: dict[str, Any], name: str, *, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}: must be true or false, got {str(value)[:40]!r}")


def where_param(name: str, text: str | None) -> Node | None:
    """The expression of parameter `name` (None when absent or blank); its errors (a BadRequest) name the
    parameter once: `where: syntax error at ...`."""
    if text is None or not text.strip():
        return None
    try:
        return parse(text, name=name)
    except BadRequest as exc:
        raise BadRequest(exc.message) from None
