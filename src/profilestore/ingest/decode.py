"""JSON text -> records that can be stored as they were decoded, or refused one by one with the field and
the reason (docs/ingest.md sections 1 and 3).

orjson reads a body (a `data` value, an NDJSON line) in one call; each record it yields is then screened for
what would not reach Postgres as it was sent:
* a number orjson changed while reading it (an integer beyond 64 bits, more significant digits than a double
  holds, an exponent that underflows: `1e-400` reads as 0): refused, never rounded;
* a NUL character (`\\u0000`) in a string or a name: Postgres text and jsonb cannot hold one.
Both screens are skipped, at the cost of one search of the text each, when the text has no long number and no
`\\u0000` (nearly every request).

When orjson refuses the text as a whole and it is a complete JSON array (or one object), each element is read
alone, so that a record holding a lone surrogate (`\\ud800`), bytes that are not UTF-8, a number beyond a
double (`1e400`) or nesting past what a JSON reader takes costs only itself.  A text that is not JSON (a
syntax error, a body cut short) stays unreadable as a whole, and nothing in it is applied.

Every walk here is iterative, so a record nested a thousand levels deep exhausts no stack.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from profilestore.storable import first_bad, has_nul, key_path

__all__ = ["NUL_MESSAGE", "RejectedRecord", "read_json"]

NUL_MESSAGE = "must not contain a NUL character (\\u0000): Postgres cannot store one"
TOO_DEEP = "nests too deeply to be read"
NOT_UTF8 = "must be valid UTF-8 text (no lone surrogate \\ud800-\\udfff)"


@dataclass
class RejectedRecord:
    """A record refused while it was decoded: validation reports it as a failure of its own, naming the
    field (`path`, "" for the record as a whole) and the reason."""

    record: Any  # the record as far as it could be read (for the id in the report); None when unreadable
    path: str
    message: str


def read_json(raw: bytes) -> Any:
    """The value of one JSON text with its records screened: the elements of an array, or the object itself
    (a record refused is a RejectedRecord in its place).  orjson.JSONDecodeError when the text is not JSON."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _read_apart(raw, exc)
    if not isinstance(value, list | dict):
        return value
    nul = b"\\u0000" in raw
    numbers = _has_changed_number(raw)
    if not (nul or numbers):
        return value
    records = value if isinstance(value, list) else [value]
    exact = _exact(raw) if numbers else None
    exacts: list[Any] = [None] * len(records)
    if numbers and exact is None:  # too deep for Python's reader as a whole: each element alone
        parts = _elements(raw) if isinstance(value, list) else [raw]
        if parts is not None and len(parts) == len(records):  # always, for a text orjson read
            exacts = [_exact(p) for p in parts]
    elif numbers:
        exacts = exact if isinstance(exact, list) and isinstance(value, list) else [exact]
    screened = [_screen(r, e, nul, numbers) for r, e in zip(records, exacts, strict=True)]
    return screened if isinstance(value, list) else screened[0]


def _screen(record: Any, exact: Any, nul: bool, numbers: bool) -> Any:
    """The record, or a RejectedRecord naming its first inexact number or NUL.  `exact` is None when the
    record was too deep for Python's reader: it is then refused later for its depth wherever it is stored."""
    if numbers and exact is not None:
        found = _first_inexact(record, exact)
        if found is not None:
            return RejectedRecord(record, found[0], _inexact(found[1]))
    if nul:
        found_nul = first_bad(record, has_nul)
        if found_nul is not None:
            return RejectedRecord(record, found_nul[0], NUL_MESSAGE)
    return record


# --- numbers a double or a 64-bit integer does not hold -------------------------------------------------

# Any number that could read differently has 16 or more digits in a row (or split by points), or a negative
# exponent of three digits (which may underflow: 1e-400 reads as 0).  Bodies without such a run -- nearly
# all -- are told apart by two searches of the text with every digit and point mapped to "1" (a quarter of
# the time of a regular expression over the text); the others are searched for the numbers themselves.
_DIGITS = bytes.maketrans(b"0123456789.E", b"11111111111e")
_LONG_RUN, _SMALL_EXPONENT = b"1" * 16, b"1e-111"
_NUMBER_RUNS = re.compile(rb"\d[\d.]{15,}(?:[eE][-+]?\d+)?|\d[\d.]*[eE]-\d{3,}")


def _inexact(number: str) -> str:
    return f"the number {number} cannot be stored exactly; send it as a string"


def _has_changed_number(raw: bytes) -> bool:
    mapped = raw.translate(_DIGITS)
    if _LONG_RUN not in mapped and _SMALL_EXPONENT not in mapped:
        return False
    return any(_may_change(m.group()) for m in _NUMBER_RUNS.finditer(raw))


def _may_change(token: bytes) -> bool:
    """Whether a run of digits (maybe a number, maybe inside a string) could read differently as a double.
    Float seconds such as 1732300000.123456 -- in nearly every event -- come back as they were sent."""
    try:
        number = float(token)
    except ValueError:
        return True
    if not math.isfinite(number):
        return True
    text = repr(number)
    return text.encode() != token and Decimal(text) != Decimal(token.decode())


class _Sent(Decimal):
    """A number as Python's reader read it, exactly, with its text as sent (for messages)."""

    text: str


def _sent(text: str) -> Decimal:
    number = _Sent(text)
    number.text = text
    return number


def _exact(raw: bytes) -> Any:
    """The text read with every number exact (Decimal); None when it nests too deeply for Python's reader."""
    try:
        return json.loads(raw, parse_float=_sent)
    except RecursionError:
        return None


def _first_inexact(parsed: Any, exact: Any) -> tuple[str, str] | None:
    """(path, the number as sent) of the first number orjson read differently, in document order."""
    stack: list[tuple[Any, Any, str]] = [(parsed, exact, "")]
    while stack:
        got, sent, path = stack.pop()
        if isinstance(sent, dict):
            stack.extend((got[k], v, key_path(path, k)) for k, v in reversed(sent.items()))
        elif isinstance(sent, list):
            stack.extend((got[i], v, f"{path}[{i}]") for i, v in reversed(list(enumerate(sent))))
        elif isinstance(sent, bool) or sent is None or isinstance(sent, str):
            continue
        elif isinstance(sent, int):
            if not (isinstance(got, int) and got == sent):
                return path, str(sent)
        elif isinstance(sent, Decimal) and Decimal(repr(got)) != sent:
            return path, getattr(sent, "text", str(sent))
    return None


# --- strings Postgres cannot hold -----------------------------------------------------------------------


def _not_utf8(text: str) -> bool:
    """A lone surrogate: from a `\\ud800` escape, or from bytes that are not UTF-8 (surrogateescape)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# --- a text orjson refused --------------------------------------------------------------------------------


def _read_apart(raw: bytes, error: orjson.JSONDecodeError) -> Any:
    """A complete array (or one object) whose elements are read one by one; `error` again when it is not."""
    start = _skip_space(raw, 0)
    if start < len(raw) and raw[start] == ord("{"):
        parts: list[bytes] | None = [raw]
    else:
        parts = _elements(raw)
    if parts is None:
        raise error
    records: list[Any] = []
    for part in parts:
        try:
            value = orjson.loads(part)
        except orjson.JSONDecodeError as exc:
            rejected = _diagnose(part, exc)
            if rejected is None:
                raise error from None
            records.append(rejected)
            continue
        records.append(read_json(part) if isinstance(value, dict | list) else value)
    return records if raw[start] == ord("[") else records[0]


def _diagnose(part: bytes, error: orjson.JSONDecodeError) -> RejectedRecord | None:
    """Why orjson refused one element, if it is JSON all the same (else None: a syntax error)."""
    text = part.decode("utf-8", "surrogateescape")  # bytes that are not UTF-8 become lone surrogates
    try:
        value = json.loads(text, parse_float=_sent, parse_int=_sent, parse_constant=_no_constant)
    except RecursionError:
        return RejectedRecord(None, "", TOO_DEEP)
    except ValueError:
        return None
    found = first_bad(value, _not_utf8)
    if found is not None:
        return RejectedRecord(value, found[0], NOT_UTF8)
    found = first_bad(value, has_nul)
    if found is not None:
        return RejectedRecord(value, found[0], NUL_MESSAGE)
    number = _first_unreadable_number(value)
    if number is not None:
        return RejectedRecord(value, number[0], _inexact(number[1]))
    return RejectedRecord(value, "", f"is not valid JSON: {error}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _first_unreadable_number(value: Any) -> tuple[str, str] | None:
    """(path, number) of the first number beyond a double (orjson refuses `1e400`)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, Decimal) and not math.isfinite(float(item)):
            return path, getattr(item, "text", str(item))
        if isinstance(item, dict):
            stack.extend((v, key_path(path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


# One token of JSON's structure: a string (the group is its closing quote: None when it is cut short), or a
# bracket or a comma.  Everything else (numbers, literals, white space) lies between tokens.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*(")?|[\[\]{},]', re.DOTALL)
_OPEN, _CLOSE, _COMMA, _QUOTE = frozenset(b"[{"), frozenset(b"]}"), ord(","), ord('"')


def _elements(raw: bytes) -> list[bytes] | None:
    """The elements of a top-level JSON array as texts; None unless the array is complete (its closing
    bracket last) and no element is empty.  Their own syntax is left to the reader."""
    start = _skip_space(raw, 0)
    end = len(raw.rstrip(b" \t\r\n"))
    if start >= end or raw[start] != ord("[") or raw[end - 1] != ord("]"):
        return None  # not an array, or one cut short: not worth a scan
    parts: list[bytes] = []
    depth = 0
    begin = start + 1
    for match in _TOKENS.finditer(raw, start, end):
        byte = raw[match.start()]
        if byte == _QUOTE:
            if match.group(1) is None:
                return None
        elif byte in _OPEN:
            depth += 1
        elif byte in _CLOSE:
            depth -= 1
            if depth == 0:
                if match.end() != end:
                    return None
                parts.append(raw[begin : match.start()])
                break
        elif byte == _COMMA and depth == 1:
            parts.append(raw[begin : match.start()])
            begin = match.end()
    else:
        return None
    blank = [not p.strip(b" \t\r\n") for p in parts]
    if blank == [True]:
        return []  # `[ ]`
    return None if any(blank) else parts


def _skip_space(raw: bytes, index: int) -> int:
    while index < len(raw) and raw[index] in b" \t\r\n":
        index += 1
    return index
