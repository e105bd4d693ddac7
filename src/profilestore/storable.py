"""What a request may hand to Postgres, checked before it gets there (a 400 naming the parameter, never a
500 from the driver): text without NUL, days within the span requests may name.

    first_bad(value, bad)   (path, text) of the first string or name in a JSON-like value for which `bad`
                            holds (ingestion names the field of a record with it)
    holds_nul(value)        a NUL in a string or a name anywhere in a JSON-like value (Postgres text and
                            jsonb cannot hold one, so no stored property, event or id ever does)
    FIRST_DAY, LAST_DAY     the days a date range or a cohort window may name: events are stored from 1971
                            on (docs/ingest.md section 5); the far end leaves room for any "until further
                            notice" without reaching the edge of Python's dates (9999-12-31, whose next day
                            a half-open range needs)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
NUL_MESSAGE = "must not contain a NUL character (\\u0000)"


def first_bad(value: Any, bad: Callable[[str], bool]) -> tuple[str, str] | None:
    """(path, the text) of the first name or string for which `bad(text)` holds, in document order (a walk
    without recursion, whatever the depth)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if bad(item):
                return path, item
        elif isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and bad(key):
                    return key_path(path, key), key
            stack.extend((v, key_path(path, str(k))) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def key_path(path: str, key: str) -> str:
    """`path.key`, the key escaped where it is not valid text."""
    key = key.encode("utf-8", "backslashreplace").decode() if not key.isascii() else key
    return f"{path}.{key}" if path else key


def has_nul(text: str) -> bool:
    return "\x00" in text


def holds_nul(value: Any) -> bool:
    return first_bad(value, has_nul) is not None


def day_in_span(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY
