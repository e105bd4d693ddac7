"""The read API's parameters (docs/query.md): from the query string, a form or a JSON body, merged (body
wins).

Values that are JSON (lists, objects) arrive as JSON text; anything that is not JSON is a 400 naming the
parameter.  Each endpoint then validates its own parameters into a pydantic model (schemas.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request

from profilestore.errors import BadRequest, PayloadTooLarge
from profilestore.expressions import Node, parse

MAX_PARAMS_BYTES = 10_000_000


async def read_params(request: Request) -> dict[str, Any]:
    """Query string, then the body's parameters over it.  JSON bodies keep their JSON values."""
    params: dict[str, Any] = dict(request.query_params)
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
        params.update(parsed)
        return params
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the form body is not UTF-8") from None
    params.update(parse_qsl(text, keep_blank_values=True))
    return params


def json_param(params: dict[str, Any], name: str) -> Any:
    """A JSON-valued parameter: already decoded (JSON body) or JSON text; None when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{name}: not valid JSON") from None


def text_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    return value


def int_param(params: dict[str, Any], name: str, *, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadRequest(f"{name}: must be an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise BadRequest(f"{name}: must be an integer, got {str(value)[:40]!r}") from None


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
