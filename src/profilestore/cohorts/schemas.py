"""Cohort definitions (query.md, Cohorts) and the JSON API's bodies, as pydantic models.

A definition is a group: `{"op": "and"|"or", "filters": [...], "negate": false}`; a filter is a nested group
or one of
    {"type": "property", "where": EXPR}
    {"type": "event", "event": NAME, "where": EXPR?, "count": {"op": ">="|"<="|"==", "value": N}?,
     "window": {"last": N, "unit": "day"|"week"|"month"} | {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}?}
    {"type": "cohort", "id": N}
each with an optional `negate`.  `count` defaults to `>= 1` (did the event), `window` to all time.

`parse_definition` validates any JSON value into a `CohortDefinition` (Mixpanel's legacy `selector` +
`behaviors` form is translated first, legacy.py); every error is a 400 that names the path in the
definition, e.g. `filters[1].count.op: must be one of >=, <=, ==`, expression syntax errors included.

Validation parses each `where` once and the filter keeps the tree (`PropertyFilter.node`,
`EventFilter.node`), which is what compile.py compiles; a text used by several filters is parsed once per
definition.  A definition's JSON (`model_dump`) has the texts only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from profilestore.cohorts.legacy import from_legacy
from profilestore.cohorts.paths import join_path
from profilestore.errors import BadRequest
from profilestore.expressions import ExpressionError, Node, parse
from profilestore.storable import FIRST_DAY, LAST_DAY, NUL_MESSAGE, day_in_span, holds_nul

MAX_FILTERS = 200
MAX_WINDOW_DAYS = 36_600

CountOp = Literal[">=", "<=", "=="]
Unit = Literal["day", "week", "month"]


def _storable(value: Any) -> Any:
    """Text Postgres can hold (no NUL anywhere in it: storable.py)."""
    if holds_nul(value):
        raise ValueError(NUL_MESSAGE)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Count(_Strict):
    """How many times: `>=`, `<=` or `==` a non-negative integer."""

    op: CountOp = ">="
    value: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]


class Window(_Strict):
    """`{"last": N, "unit": ...}` (relative to the time of the query) or `{"from": D, "to": D}` (UTC days,
    both inclusive)."""

    last: Annotated[int | None, Field(ge=1, strict=True)] = None
    unit: Unit | None = None
    from_: dt.date | None = Field(None, alias="from")
    to: dt.date | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        relative = self.last is not None or self.unit is not None
        absolute = self.from_ is not None or self.to is not None
        if relative == absolute:
            raise ValueError('give either "last" and "unit", or "from" and "to"')
        if relative:
            if self.last is None or self.unit is None:
                raise ValueError('"last" and "unit" go together')
            days = self.last * {"day": 1, "week": 7, "month": 31}[self.unit]
            if days > MAX_WINDOW_DAYS:
                raise ValueError(f"at most {MAX_WINDOW_DAYS} days back")
        else:
            if self.from_ is None or self.to is None:
                raise ValueError('"from" and "to" go together')
            if self.from_ > self.to:
                raise ValueError('"from" is after "to"')
            if not (day_in_span(self.from_) and day_in_span(self.to)):
                raise ValueError(f'"from" and "to" must be days from {FIRST_DAY} to {LAST_DAY}')
        return self


class Expressions:
    """The trees of the `where`s of one definition being validated, by text (the validation context's
    `"expressions"`): each text is parsed once."""

    def __init__(self) -> None:
        self._trees: dict[str, Node] = {}

    def tree(self, text: str) -> Node:
        """ExpressionError with messages named `where` (parse_definition puts the path instead)."""
        tree = self._trees.get(text)
        if tree is None:
            tree = parse(text, name="where")
            self._trees[text] = tree
        return tree


def _tree(text: str, info: ValidationInfo) -> Node:
    context = info.context
    expressions = context.get("expressions") if isinstance(context, dict) else None
    if not isinstance(expressions, Expressions):
        expressions = Expressions()
    try:
        return expressions.tree(text)
    except ExpressionError as err:
        detail = err.message.removeprefix("where: ")
        raise PydanticCustomError("expression", "{detail}", {"detail": detail}) from None


class PropertyFilter(_Strict):
    """Profiles whose properties satisfy an expression (a distinct_id without a profile never does)."""

    type: Literal["property"]
    where: str
    negate: bool = False
    _node: Node = PrivateAttr()

    @model_validator(mode="after")
    def _parse(self, info: ValidationInfo) -> PropertyFilter:
        self._node = _tree(self.where, info)
        return self

    @property
    def node(self) -> Node:
        """`where`, parsed."""
        return self._node


class EventFilter(_Strict):
    """Did `event` (of those matching `where`, over event properties) `count` times within `window`."""

    type: Literal["event"]
    event: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)]
    where: str | None = None
    count: Count = Count(op=">=", value=1)
    window: Window | None = None
    negate: bool = False
    _node: Node | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _parse(self, info: ValidationInfo) -> EventFilter:
        self._node = None if self.where is None else _tree(self.where, info)
        return self

    @property
    def node(self) -> Node | None:
        """`where`, parsed (None without one)."""
        return self._node


class CohortFilter(_Strict):
    """Membership of another saved cohort of the same project."""

    type: Literal["cohort"]
    id: Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]
    negate: bool = False


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "type" in value:
            kind = value["type"]
            return kind if kind in ("property", "event", "cohort") else "unknown"
        return "group" if "filters" in value or "op" in value else None
    kinds: dict[type, str] = {
        CohortDefinition: "group",
        PropertyFilter: "property",
        EventFilter: "event",
        CohortFilter: "cohort",
    }
    return kinds.get(type(value))


Filter = Annotated[
    Annotated["CohortDefinition", Tag("group")]
    | Annotated[PropertyFilter, Tag("property")]
    | Annotated[EventFilter, Tag("event")]
    | Annotated[CohortFilter, Tag("cohort")],
    Discriminator(
        _kind,
        custom_error_type="filter_kind",
        custom_error_message='a filter needs "type" (property, event or cohort), or "op" and "filters"',
    ),
]


class CohortDefinition(_Strict):
    """A group of filters joined by `op`; groups nest."""

    op: Literal["and", "or"] = "and"
    filters: Annotated[list[Filter], Field(max_length=MAX_FILTERS)]
    negate: bool = False


_TAGS = {"group", "property", "event", "cohort"}


def error_path(loc: tuple[int | str, ...]) -> str:
    """`("filters", 1, "event", "count", "op")` -> `filters[1].count.op` (the union's tags dropped)."""
    out = ""
    after_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            after_index = True
            continue
        if after_index and part in _TAGS:
            after_index = False
            continue
        after_index = False
        out += f".{part}" if out else str(part)
    return out


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return "must be one of " + ", ".join(allowed)
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return "must be an integer"
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "model_type":
        return "must be an object"
    if kind == "list_type":
        return "must be an array"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def parse_definition(value: Any, *, path: str = "") -> CohortDefinition:
    """A validated definition (legacy form translated); BadRequest naming the path on any error: the
    structural ones (up to three) if any, else ExpressionError for the first `where` that does not parse."""
    if isinstance(value, CohortDefinition):
        return value
    if not isinstance(value, dict):
        raise BadRequest(f"{path or 'definition'}: must be a JSON object")
    if "selector" in value or "behaviors" in value:
        value = from_legacy(value, path=path)
    try:
        return CohortDefinition.model_validate(value, context={"expressions": Expressions()})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    structural = [e for e in errors if e["type"] != "expression"]
    if not structural:
        first = errors[0]
        where = join_path(join_path(path, error_path(first["loc"])), "where")
        raise ExpressionError(f"{where}: {(first.get('ctx') or {})['detail']}")
    shown = [f"{join_path(path, error_path(e['loc'])) or 'definition'}: {_message(e)}" for e in structural]
    more = f" (and {len(shown) - 3} more)" if len(shown) > 3 else ""
    raise BadRequest("; ".join(shown[:3]) + more)


def references(group: CohortDefinition, path: str = "") -> Iterator[tuple[int, str]]:
    """Every cohort the definition refers to directly, with its path."""
    for i, item in enumerate(group.filters):
        item_path = join_path(path, f"filters[{i}]")
        if isinstance(item, CohortDefinition):
            yield from references(item, item_path)
        elif isinstance(item, CohortFilter):
            yield item.id, join_path(item_path, "id")


# -- the JSON API's bodies ------------------------------------------------------------------------------

_DEFINITION_DOC = (
    "A cohort definition (query.md, Cohorts): "
    '`{"op": "and", "filters": [{"type": "property", "where": "..."}, '
    '{"type": "event", "event": "Purchase", "count": {"op": ">=", "value": 3}, '
    '"window": {"last": 30, "unit": "day"}}, {"type": "cohort", "id": 12, "negate": true}]}`; '
    "Mixpanel's legacy `selector` + `behaviors` form is accepted too."
)


class CohortCreate(BaseModel):
    """A dynamic cohort (`definition`) or a static one (`distinct_ids`)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)]
    description: Annotated[str, Field(max_length=10_000), AfterValidator(_storable)] = ""
    definition: Annotated[dict[str, Any] | None, AfterValidator(_storable)] = Field(
        None, description=_DEFINITION_DOC
    )
    distinct_ids: list[Annotated[str, Field(max_length=255), AfterValidator(_storable)]] | None = Field(
        None, max_length=1_000_000, description="the members of a static cohort"
    )


class CohortUpdate(BaseModel):
    """Any of the fields; a static cohort's `distinct_ids` replace its members."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)] | None = None
    description: Annotated[str, Field(max_length=10_000), AfterValidator(_storable)] | None = None
    definition: Annotated[dict[str, Any] | None, AfterValidator(_storable)] = Field(
        None, description=_DEFINITION_DOC
    )
    distinct_ids: list[Annotated[str, Field(max_length=255), AfterValidator(_storable)]] | None = Field(
        None, max_length=1_000_000
    )


class CohortOut(BaseModel):
    id: int
    project_id: int
    name: str
    description: str
    is_static: bool
    definition: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime


class Member(BaseModel):
    distinct_id: str
    properties: dict[str, Any] | None = Field(description="the profile's properties; null without a profile")


class MembersPage(BaseModel):
    members: list[Member]
    next_after: str | None = Field(
        description="pass as `after` for the next page; null on the last page", default=None
    )


class CohortCount(BaseModel):
    id: int
    count: int


class MixpanelCohort(BaseModel):
    """One entry of `/api/2.0/cohorts/list`, in Mixpanel's shape."""

    id: int
    name: str
    description: str
    count: int
    is_visible: int = 1
    created: str = Field(description="YYYY-MM-DD HH:MM:SS, UTC")
    project_id: int
