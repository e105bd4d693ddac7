"""Templates (Jinja2, autoescaped, from the installed package) and how values show on a page.

Every page answers with a Content-Security-Policy that allows only the service's own scripts, styles and
forms (images also from https: a profile's `$avatar`), is never framed, and is not cached.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; script-src 'self'; style-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CLIP = 80  # characters of a text cell shown in a table


def kind_of(value: Any) -> str:
    """A property value's type, as the page names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str) and len(value) == 19 and value[4] == "-" and value[10] == "T":
        return "datetime"
    return "string"


def cell(value: Any, clip: bool = True) -> Markup:
    """A property value as a table cell shows it: types told apart, long text clipped (whole on hover)."""
    kind = kind_of(value)
    if kind == "null":
        return Markup('<span class="v-null">null</span>')
    if kind == "boolean":
        return Markup('<span class="v-bool">{}</span>').format("true" if value else "false")
    if kind == "number":
        return Markup('<span class="v-num">{}</span>').format(_number(value))
    if kind == "list":
        chips = Markup("").join(Markup('<span class="chip">{}</span>').format(_short(v)) for v in value[:8])
        more = Markup('<span class="v-more">+{}</span>').format(len(value) - 8) if len(value) > 8 else ""
        return Markup('<span class="v-list">{}{}</span>').format(chips, more)
    if kind == "object":
        text = orjson.dumps(value).decode()
        return Markup('<code class="v-obj" title="{}">{}</code>').format(text, _clip(text) if clip else text)
    text = str(value)
    if clip and len(text) > CLIP:
        return Markup('<span class="v-str" title="{}">{}</span>').format(text, _clip(text))
    return Markup('<span class="v-str">{}</span>').format(text)


def _number(value: float) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return _clip(text, 30)


def _clip(text: str, n: int = CLIP) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def when(value: dt.datetime | str | None) -> Markup:
    """A time as "3 hours ago", with the exact UTC time on hover (and in the markup for machines)."""
    if value is None:
        return Markup('<span class="v-null">never</span>')
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        except ValueError:
            return escape(value)
    exact = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(), exact, _relative(value)
    )


def _relative(value: dt.datetime) -> str:
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            n = int(seconds // size)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def query_string(base: dict[str, Any], **changes: Any) -> str:
    """`base` with `changes` (None removes a key), as a query string for a link: the URL is the state."""
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v is not None and v != ""}, doseq=True)


environment = Environment(
    loader=PackageLoader("profilestore.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["cell"] = cell
environment.filters["when"] = when
environment.filters["kind"] = kind_of
environment.globals["query_string"] = query_string


def page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    html = environment.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)
