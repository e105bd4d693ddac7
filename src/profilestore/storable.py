"""What a request may hand to Postgres, checked before it gets there (a 400 naming the parameter, never a
500 from the driver): text without NUL, days within the span requests may name.

    holds_nul(value)        a NUL in a string or a name anywhere in a JSON-like value (Postgres text and
                            jsonb cannot hold one, so no stored property, event or id ever does)
    FIRST_DAY, LAST_DAY     the days a date range or a cohort window may name: events are stored from 1971
                            on (docs/ingest.md section 5); the far end leaves room for any "until further
                            notice" without reaching the edge of Python's dates (9999-12-31, whose next day
                            a half-open range needs)
"""

from __future__ import annotations

from datetime import date
from typing import Any

FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
NUL_MESSAGE = "must not contain a NUL character (\\u0000)"


def holds_nul(value: Any) -> bool:
    """Whether a string, or any string or name inside lists and objects, holds a NUL (a walk without
    recursion, whatever the depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if any(isinstance(key, str) and "\x00" in key for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def day_in_span(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY
