"""The value semantics in plain Python: the reference the SQL compiler (and 0004_expressions.sql) mirror.

Values are JSON as decoded (None, bool, int, float, str, list, dict), `Datetime` (epoch seconds; only
`datetime()`, `now()` and arithmetic on them make one) and `UNDEFINED` (a missing property, or any
operation outside its domain).  Numbers are doubles for arithmetic and ordering; `==` compares them
exactly, as jsonb does (the two differ only for integers beyond 2**53 that no double holds).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Final


class _Undefined:
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final[_Undefined] = _Undefined()


@dataclass(frozen=True)
class Datetime:
    epoch: float


_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]+)?)?"
    r"(?:(Z)|([+-])([0-9]{2}):?([0-9]{2}))?)?"
)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_REPR = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:e([+-][0-9]+))?")
_FALSE = str.maketrans("FALSE", "false")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()
_MIN_EPOCH, _MAX_EPOCH = -62135596800, 253402300800  # 0001-01-01, 10000-01-01


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def to_float(v: Any) -> float | _Undefined:
    """A JSON number as a double (profilestore_number); UNDEFINED for anything else or out of range."""
    if not is_number(v):
        return UNDEFINED
    try:
        f = float(v)
    except OverflowError:
        return UNDEFINED
    return UNDEFINED if math.isinf(f) or math.isnan(f) else f


def json_equal(a: Any, b: Any) -> bool:
    """jsonb equality: same type, numbers by value, lists in order, objects by keys (no bool == 1)."""
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if type(a) is not type(b) or isinstance(a, Datetime):
        return False
    return bool(a == b)


def iso_epoch(s: str) -> float | _Undefined:
    """profilestore_iso_epoch: ISO 8601 text -> epoch seconds, UTC unless an offset is given."""
    m = _ISO.fullmatch(s)
    if m is None:
        return UNDEFINED
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    hh, mi, ss = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
    if y < 1 or not 1 <= mo <= 12 or d < 1 or hh > 23 or mi > 59 or ss > 59:
        return UNDEFINED
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    last = (29 if leap else 28) if mo == 2 else 30 if mo in (4, 6, 9, 11) else 31
    if d > last:
        return UNDEFINED
    offset = 0
    if m[9] is not None:
        oh, om = int(m[10]), int(m[11])
        if oh > 23 or om > 59:
            return UNDEFINED
        offset = (oh * 3600 + om * 60) * (-1 if m[9] == "-" else 1)
    whole = (dt.date(y, mo, d).toordinal() - _EPOCH_DAY) * 86400 + hh * 3600 + mi * 60 + ss - offset
    return float(whole) + (float("0" + m[7]) if m[7] else 0.0)


def iso_text(epoch: float) -> str | _Undefined:
    """profilestore_iso_text: epoch seconds -> "YYYY-MM-DDTHH:MM:SS" in UTC, the fraction dropped."""
    if not _MIN_EPOCH <= epoch < _MAX_EPOCH:
        return UNDEFINED
    t = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=math.floor(epoch))
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def text_number(s: str) -> float | _Undefined:
    """profilestore_text_number: a decimal string -> a double; UNDEFINED where Postgres would refuse it."""
    m = _DECIMAL.fullmatch(s)
    if m is None:
        return UNDEFINED
    f = float(s)
    if math.isinf(f) or (f == 0 and any(c in "123456789" for c in m[1])):
        return UNDEFINED  # float8in refuses overflow and underflow to zero
    return f


def format_number(x: float) -> str:
    """profilestore_format_number: the shortest round-trip digits, laid out as JavaScript does."""
    m = _REPR.fullmatch(repr(float(x)))
    assert m is not None, x
    digits = m[2] + (m[3] or "")
    n = len(m[2]) + int(m[4] or 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if not digits:
        return "0"
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))
    return m[1] + body


def truthy(value: Any) -> bool:
    """What compile_where's truth means: boolean()'s rules, and undefined is false."""
    result = to_boolean(value)
    return result is True


def to_boolean(v: Any) -> bool | _Undefined:
    if isinstance(v, _Undefined):
        return v
    if isinstance(v, bool):
        return v
    if is_number(v):
        return bool(v != 0)
    if isinstance(v, str):
        return bool(v.translate(_FALSE) not in ("", "0", "false"))
    if isinstance(v, list | dict):
        return len(v) > 0
    return isinstance(v, Datetime)  # None -> False


def to_number(v: Any) -> float | _Undefined:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, Datetime):
        return v.epoch
    if isinstance(v, str):
        return text_number(v)
    return to_float(v)


def to_string(v: Any) -> str | _Undefined:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Datetime):
        return iso_text(v.epoch)
    f = to_float(v)
    return UNDEFINED if isinstance(f, _Undefined) else format_number(f)


def to_datetime(v: Any) -> Datetime | _Undefined:
    if isinstance(v, Datetime):
        return v
    e = iso_epoch(v) if isinstance(v, str) else to_float(v)
    return UNDEFINED if isinstance(e, _Undefined) else Datetime(e)


def ascii_lower(s: str) -> str:
    return s.translate(_ASCII_LOWER)


def ascii_upper(s: str) -> str:
    return s.translate(_ASCII_UPPER)


def round_half_away(x: float) -> float:
    """profilestore_round: halves away from zero."""
    ax = abs(x)
    fl = float(math.floor(ax))
    r = float(math.ceil(ax)) if ax - fl >= 0.5 else fl
    return r if x > 0 else -r if x < 0 else 0.0
