"""The columns of an import: which property each one sets, and as what type.

Reserved names (docs/import.md has the table): a header such as `Email` or `First Name` sets Mixpanel's
reserved property (`$email`, `$first_name`); a header that starts with `$` is kept as it is; any other header
is the property's name.  `--map col=prop[:type]` overrides both.

Types.  `string` keeps every value as the text of its cell (Mixpanel's own CSV import does only this).
`infer` (the default) gives a column a type only when every non-empty cell of it, in the whole file, parses
as that type, so one stray value keeps the column text rather than losing it:
    integer   -12, 0, 42 (at most 15 digits, no leading zeros: zip codes and long ids stay text)
    decimal   3.14, -0.5 (kept exactly: no binary floating point on the way)
    boolean   true / false, in any case
    datetime  ISO 8601: 2026-12-02, 2026-12-02T10:00:00, with a fraction or an offset (Z, +01:00), or a space
              for the T; stored as Mixpanel stores dates: "2026-12-02T09:00:00", in UTC
    list      a JSON array; object: a JSON object (within the ingestion limits on depth and size)
Exponents (1e3), NaN, Infinity, +5, .5 and 1,000 are not inferred: they stay text.  A forced type
(`col=prop:number` etc.) accepts any finite decimal number for `number` and skips a row whose cell does not
parse, with a warning naming its line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from profilestore.ingest.decode import RejectedRecord, read_json
from profilestore.storable import holds_nul

_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,14})\Z")
_DECIMAL = re.compile(r"-?(?:0|[1-9]\d{0,14})(?:\.\d+)?\Z")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?\Z"
)
_BOOLEANS = {"true": True, "false": False}
# A number that a double or a 64-bit integer may not hold as written (ingest/decode.py has the exact test).
_LONG_NUMBER = re.compile(r"\d[\d.]{15,}|[eE]-\d{3}")
# The same as _INTEGER and _DECIMAL over many values at once, each followed by a newline.
_MANY = {
    "integer": re.compile(r"(?:-?(?:0|[1-9]\d{0,14})\n)*"),
    "decimal": re.compile(r"(?:-?(?:0|[1-9]\d{0,14})(?:\.\d+)?\n)*"),
}

# Types a column may be given (`--map col=prop:TYPE`), and what inference may find.
FORCED_TYPES = ("string", "number", "boolean", "datetime", "list", "object")
INFERRED_TYPES = ("integer", "decimal", "boolean", "datetime", "list", "object")


class BadValue(ValueError):
    """A cell that does not parse as its column's type."""


def _datetime(text: str) -> str:
    # The common shapes first: already Mixpanel's (checked by Python's parser, in C), or a bare date.
    if (
        (len(text) == 10 or (len(text) == 19 and text[10] == "T" and text[13] == ":" and text[16] == ":"))
        and text[4] == "-"
        and text[7] == "-"
        and text[:4].isdigit()  # fromisoformat's year is 4 digits (Mixpanel's shape too)
    ):
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise BadValue("is not a valid date or datetime") from None
        return text if len(text) == 19 else text + "T00:00:00"
    if not _DATETIME.match(text):
        raise BadValue("is not an ISO 8601 date or datetime")
    try:
        parsed = datetime.fromisoformat(text.replace(",", "."))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: an offset that moves it past year 1 or 9999
        raise BadValue("is not a valid date or datetime") from None
    return parsed.isoformat(timespec="seconds")  # the year always 4 digits (strftime's %Y may give 3)


def _json(kind: type, name: str, max_depth: int, max_bytes: int) -> Callable[[str], Any]:
    opening = "[" if kind is list else "{"

    def convert(text: str) -> Any:
        if not text.startswith(opening):
            raise BadValue(f"is not a JSON {name}")
        if len(text) > max_bytes:
            raise BadValue(f"is longer than {max_bytes} bytes")
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadValue(f"is not a JSON {name}") from None
        if not isinstance(value, kind):
            raise BadValue(f"is not a JSON {name}")
        # Nesting is at most the number of brackets; only a NUL escape can put a NUL in the text's values.
        if text.count("[") + text.count("{") > max_depth and _depth(value) > max_depth:
            raise BadValue(f"is nested deeper than {max_depth} levels")
        if "\\u0000" in text and holds_nul(value):
            raise BadValue("holds a NUL character (\\u0000), which cannot be stored")
        if _LONG_NUMBER.search(text):
            refused = _inexact(text)
            if refused is not None:
                raise BadValue(f"cannot be stored as it is: {refused}")
        return value

    return convert


def _inexact(text: str) -> str | None:
    """Why /engage would refuse a number of this JSON text (one orjson reads differently: an integer past 64
    bits, more digits than a double holds), or None."""
    screened = read_json(text.encode())
    for item in screened if isinstance(screened, list) else [screened]:
        if isinstance(item, RejectedRecord):
            return item.message
    return None


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _number(text: str) -> orjson.Fragment:
    """Any finite decimal number, written as JSON exactly (no float on the way)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise BadValue("is not a number") from None
    if not number.is_finite() or abs(number.adjusted()) > 1000 or len(number.as_tuple().digits) > 1000:
        raise BadValue("is not a finite number of a storable size")
    return orjson.Fragment(str(number))


def _boolean(text: str) -> bool:
    value = _BOOLEANS.get(text.lower())
    if value is None:
        raise BadValue("is not true or false")
    return value


def converter(kind: str, max_depth: int, max_bytes: int) -> Callable[[str], Any] | None:
    """The function that turns a cell into its JSON value; None for text (the cell as it is)."""
    if kind == "string":
        return None
    if kind in ("integer", "decimal"):
        return orjson.Fragment  # inference checked the text is a JSON number already
    if kind == "number":
        return _number
    if kind == "boolean":
        return _boolean
    if kind == "datetime":
        return _datetime
    if kind == "list":
        return _json(list, "list", max_depth, max_bytes)
    if kind == "object":
        return _json(dict, "object", max_depth, max_bytes)
    raise ValueError(f"unknown type {kind!r}")


def _fits(check: Callable[[str], Any], text: str) -> bool:
    try:
        check(text)
    except BadValue:
        return False
    return True


class Inference:
    """Finds each column's type from every non-empty cell (one pass over the file: `add` each row)."""

    def __init__(
        self, columns: int, max_depth: int, max_bytes: int, indexes: list[int] | None = None
    ) -> None:
        looked_at = range(columns) if indexes is None else indexes
        checks: dict[str, Callable[[str], bool]] = {
            "integer": lambda text: _INTEGER.match(text) is not None,
            "decimal": lambda text: _DECIMAL.match(text) is not None,
        }
        for kind in ("boolean", "datetime", "list", "object"):
            convert = converter(kind, max_depth, max_bytes)
            assert convert is not None
            checks[kind] = lambda text, convert=convert: _fits(convert, text)  # type: ignore[misc]
        self.checks = checks
        # [index, the types every cell so far fits, in order of preference]; a column none fits is dropped.
        self.live: list[list[Any]] = [[i, list(INFERRED_TYPES)] for i in looked_at]
        self.kinds: dict[int, list[str]] = {i: kinds for i, kinds in self.live}
        self.filled: set[int] = set()

    def add(self, cells: list[str]) -> None:
        self.add_rows([cells])

    def add_rows(self, rows: list[list[str]]) -> None:
        """Rows of the file's width, many at a time: a column's distinct non-empty values are checked once
        each, and integers and decimals by one regular expression over all of them (in C)."""
        if not rows or not self.live:
            return
        columns = list(zip(*rows, strict=True))
        for entry in self.live:
            values = set(columns[entry[0]])
            values.discard("")
            if not values:
                continue
            self.filled.add(entry[0])
            kept = [kind for kind in entry[1] if self._all_fit(kind, values)]
            if len(kept) != len(entry[1]):
                entry[1] = self.kinds[entry[0]] = kept
        # Columns already known to be text are no longer looked at.
        self.live = [entry for entry in self.live if entry[1]]

    def _all_fit(self, kind: str, values: set[str]) -> bool:
        many = _MANY.get(kind)
        if many is not None:
            return many.fullmatch("\n".join(values) + "\n") is not None
        check = self.checks[kind]
        return all(check(text) for text in values)

    def type_of(self, index: int) -> str:
        """The column's type: the first type every non-empty cell fits, else text ("string")."""
        kinds = self.kinds.get(index)
        if not kinds or index not in self.filled:
            return "string"
        return str(kinds[0])


# ---- reserved names ---------------------------------------------------------------------------------------

# A header, lower-cased without spaces, dashes, underscores or dots, to the reserved property it sets.
RESERVED: dict[str, str] = {
    "distinctid": "$distinct_id",
    "groupid": "$group_id",
    "email": "$email",
    "emailaddress": "$email",
    "firstname": "$first_name",
    "givenname": "$first_name",
    "lastname": "$last_name",
    "surname": "$last_name",
    "familyname": "$last_name",
    "name": "$name",
    "fullname": "$name",
    "username": "$username",
    "phone": "$phone",
    "phonenumber": "$phone",
    "mobile": "$phone",
    "telephone": "$phone",
    "avatar": "$avatar",
    "avatarurl": "$avatar",
    "created": "$created",
    "createdat": "$created",
    "city": "$city",
    "region": "$region",
    "countrycode": "$country_code",
    "timezone": "$timezone",
}
_NOT_NAME = re.compile(r"[\s\-_.]+")


def property_for(header: str) -> str:
    """The property a column sets by default: its reserved name, else its header (trimmed)."""
    name = header.strip()
    if name.startswith("$"):
        return name
    return RESERVED.get(_NOT_NAME.sub("", name.lower()), name)


@dataclass(frozen=True)
class Mapping:
    prop: str
    kind: str | None  # a forced type, or None: the import's --types


def parse_map(item: str) -> tuple[str, Mapping]:
    """`col=prop` or `col=prop:type` (the type only when it is one of FORCED_TYPES)."""
    column, sep, target = item.partition("=")
    if not sep or not column.strip() or not target.strip():
        raise ValueError(f"--map {item!r}: expected COLUMN=PROPERTY or COLUMN=PROPERTY:TYPE")
    target = target.strip()
    prop, colon, kind = target.rpartition(":")
    if colon and kind in FORCED_TYPES and prop:
        return column.strip(), Mapping(prop.strip(), kind)
    if colon and kind and kind not in FORCED_TYPES and prop and " " not in kind and kind.isalpha():
        raise ValueError(f"--map {item!r}: unknown type {kind!r} (one of {', '.join(FORCED_TYPES)})")
    return column.strip(), Mapping(target.strip(), None)
