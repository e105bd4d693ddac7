"""Each `where` of a definition is parsed once: validation keeps the tree (`PropertyFilter.node`,
`EventFilter.node`), compiling uses it, and each `where` legacy.py renders from the trees it builds is
parsed once like any other.  The SQL, the stored JSON and the error messages are what they were when every
step parsed the text again (the SQL is compared with that of the stored JSON, whose texts are all parsed)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest
from cohort_support import with_conn
from psycopg import sql

from profilestore.cohorts import compile as cohort_compile
from profilestore.cohorts import legacy, schemas
from profilestore.cohorts.compile import cohort_condition
from profilestore.cohorts.schemas import (
    CohortCreate,
    CohortDefinition,
    EventFilter,
    PropertyFilter,
    parse_definition,
)
from profilestore.cohorts.service import create_cohort
from profilestore.errors import BadRequest
from profilestore.expressions import ExpressionError, Node, SqlParams, parse, parser
from support import new_project

NOW = 1_781_524_800.0
PRO = 'properties["plan"] == "pro"'

NATIVE = {
    "op": "and",
    "filters": [
        {"type": "property", "where": PRO},
        {
            "type": "event",
            "event": "Purchase",
            "where": 'properties["amount"] >= 30',
            "count": {"op": ">=", "value": 2},
            "window": {"last": 30, "unit": "day"},
        },
        {"type": "event", "event": "Login"},
        {
            "op": "or",
            "negate": True,
            "filters": [
                {"type": "property", "where": 'properties["age"] < 30'},
                {"type": "property", "where": PRO, "negate": True},  # the same text again
                {
                    "type": "event",
                    "event": "Signup",
                    "where": 'user["country"] == "US"',
                    "count": {"value": 0},
                },
            ],
        },
    ],
}

# The web app's form: user leaves and an event selector tree are built as trees; b1's selector is a text,
# and b1 is counted twice.
WEB = {
    "selector": {
        "operator": "and",
        "children": [
            {"property": "behaviors", "value": "b0", "operator": ">", "operand": 2},
            {"property": "user", "value": "plan", "operator": "==", "operand": "pro"},
            {
                "operator": "or",
                "children": [
                    {"property": "behaviors", "value": "b1", "operator": "==", "operand": 0},
                    {"property": "user", "value": "tags", "operator": "contains", "operand": "a"},
                    {"property": "user", "value": "age", "operator": "in", "operand": [-1, 2.5, ["x"]]},
                ],
            },
            {"property": "behaviors", "value": "b1", "operator": "<", "operand": 5},
        ],
    },
    "behaviors": {
        "b0": {
            "count": {
                "event_selector": {
                    "event": "Purchase",
                    "selector": {
                        "operator": "and",
                        "children": [
                            {"property": "event", "value": "amount", "operator": ">=", "operand": -30},
                            {
                                "operator": "or",
                                "children": [{"property": "event", "value": "coupon", "operator": "defined"}],
                            },
                        ],
                    },
                },
                "type": "absolute",
            },
            "window": {"unit": "day", "value": 30},
        },
        "b1": {
            "count": {"event_selector": {"event": "Login", "selector": 'properties["day"] > 3'}},
            "window": {"unit": "week", "value": 2},
        },
    },
}

# The engage form: one selector text, parsed once; its parts without counts are rendered from that tree.
ENGAGE = {
    "selector": (
        'behaviors["bought"] >= 3 and not behaviors["bought"] >= 5'
        ' and (properties["plan"] == "pro" or defined(user["vip"]))'
    ),
    "behaviors": [
        {
            "name": "bought",
            "window": "30d",
            "event_selectors": [{"event": "Purchase", "selector": 'properties["amount"] > 10'}],
        }
    ],
}


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """The texts parse() is called with, wherever it was imported to."""
    calls: Counter[str] = Counter()
    real = parser.parse

    def counting(text: str, *, name: str = "where") -> Node:
        calls[text] += 1
        return real(text, name=name)

    for module in list(sys.modules.values()):
        if module.__name__.startswith("profilestore") and getattr(module, "parse", None) is real:
            monkeypatch.setattr(module, "parse", counting)
    assert schemas.parse is counting and legacy.parse is counting
    assert not hasattr(cohort_compile, "parse")  # compile.py compiles trees, it does not parse
    yield calls


def compiled(spec: Any, *, profile: bool = False) -> tuple[str, dict[str, str]]:
    """The SQL condition and its parameters (no database needed without saved cohorts)."""
    params = SqlParams()

    async def run() -> sql.Composable:
        return await cohort_condition(
            cast(Any, None),
            1,
            spec,
            distinct_id=sql.SQL("p.distinct_id"),
            params=params,
            now=NOW,
            profile=profile,
        )

    condition = asyncio.run(run())
    return condition.as_string(None), {k: repr(v) for k, v in params.values.items()}  # Jsonb: no __eq__


def filters(group: CohortDefinition) -> Iterator[PropertyFilter | EventFilter]:
    for item in group.filters:
        if isinstance(item, CohortDefinition):
            yield from filters(item)
        elif isinstance(item, PropertyFilter | EventFilter):
            yield item


def stored(definition: CohortDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)


def test_native_definition_parses_each_where_once(parsed: Counter[str]) -> None:
    definition = parse_definition(NATIVE, path="raw_cohort")
    wheres = {f.where for f in filters(definition) if f.where is not None}
    assert len(wheres) == 4
    assert parsed == Counter(wheres)  # PRO, used twice, once too
    for profile in (False, True):
        compiled(definition, profile=profile)
    assert parsed == Counter(wheres)  # compiling parses nothing


def test_legacy_web_form_parses_each_where_once(parsed: Counter[str]) -> None:
    definition = parse_definition(WEB, path="raw_cohort")
    wheres = {f.where for f in filters(definition) if f.where is not None}
    assert len(wheres) == 5  # four rendered from the trees sent, and the event selector text sent
    assert parsed == Counter(wheres)  # 'properties["day"] > 3', used twice, once too
    compiled(definition)
    assert parsed == Counter(wheres)


def test_legacy_engage_form_parses_its_selector_once(parsed: Counter[str]) -> None:
    definition = parse_definition(ENGAGE, path="behaviors")
    selector = [text for text in parsed if "behavior:bought" in text]  # `behaviors["bought"]` replaced
    assert len(selector) == 1
    # The selector once, each `behaviors["KEY"]`'s key literal, the event selector (used twice) once, and
    # the property part of the selector, rendered as the `where` that is stored, once.
    part = '((properties["plan"] == "pro") or defined(user["vip"]))'
    once = Counter({selector[0]: 1, '"bought"': 2, 'properties["amount"] > 10': 1, part: 1})
    assert parsed == once
    compiled(definition, profile=True)
    assert parsed == once


@pytest.mark.parametrize("form", [NATIVE, WEB, ENGAGE], ids=["native", "web", "engage"])
@pytest.mark.parametrize("profile", [False, True])
def test_kept_trees_are_the_parsed_texts(form: dict[str, Any], profile: bool) -> None:
    """What parse(where) gives, so the SQL is that of the stored JSON (every text parsed), byte for byte."""
    definition = parse_definition(form, path="raw_cohort")
    for item in filters(definition):
        assert item.node == (None if item.where is None else parse(item.where))
    again = parse_definition(stored(definition))
    assert stored(again) == stored(definition)
    assert compiled(definition, profile=profile) == compiled(again, profile=profile)
    assert compiled({"raw_cohort": form}, profile=profile) == compiled(again, profile=profile)


def test_legacy_json_is_the_rendered_trees() -> None:
    """The stored `where`s of a translation: render()'s texts, brackets of one-child groups included."""
    wheres = [f.where for f in filters(parse_definition(WEB))]
    assert wheres == [
        '((properties["amount"] >= (-30)) and (defined(properties["coupon"])))',
        '(properties["plan"] == "pro")',
        'properties["day"] > 3',
        '("a" in properties["tags"])',
        '(properties["age"] in [-1, 2.5, ["x"]])',
        'properties["day"] > 3',
    ]


NUL = "a\x00b"


def nested_selector(groups: int) -> dict[str, Any]:
    """An event selector in `groups` groups of one child each: brackets in the text, no node once parsed."""
    tree: dict[str, Any] = {"property": "event", "value": "q", "operator": ">=", "operand": 1}
    for _ in range(groups):
        tree = {"operator": "and", "children": [tree]}
    return {
        "selector": 'behaviors["b"]',
        "behaviors": [{"name": "b", "event_selectors": [{"event": "E", "selector": tree}]}],
    }


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (
            {"filters": [{"type": "property", "where": PRO}, {"type": "event", "event": "E", "where": "x("}]},
            ExpressionError,
            "raw_cohort.filters[1].where: syntax error at the end: expected",
        ),
        (
            {"filters": [{"op": "or", "filters": [{"type": "property", "where": "nope(1)"}]}]},
            ExpressionError,
            "raw_cohort.filters[0].filters[0].where: at column 1: unknown function 'nope'",
        ),
        (  # a structural error first, as before: the `where`s are not reported with it
            {"filters": [{"type": "property", "where": "x("}, {"type": "event", "event": ""}]},
            BadRequest,
            "raw_cohort.filters[1].event: string should have at least 1 character",
        ),
        (
            {"filters": [{"type": "property", "where": "(" * 65 + "1" + ")" * 65}]},
            ExpressionError,
            "raw_cohort.filters[0].where: nested deeper than 64 levels",
        ),
        (  # the translation's `where`, rendered from a tree: parse's limits and messages
            {
                "selector": {
                    "operator": "or",
                    "children": [
                        {"property": "user", "value": "k", "operator": "in", "operand": ["v" * 30] * 300}
                    ],
                }
            },
            ExpressionError,
            "raw_cohort.filters[0].where: expression longer than 10,000 characters (10,221)",
        ),
        (nested_selector(62), None, ""),
        (nested_selector(63), ExpressionError, "raw_cohort.filters[0].where: nested deeper than 64 levels"),
        (
            {
                "selector": 'behaviors["b"]',
                "behaviors": [{"name": "b", "event_selectors": [{"event": "E", "selector": "x("}]}],
            },
            ExpressionError,
            "raw_cohort.filters[0].where: syntax error at the end: expected",
        ),
        (  # a string a tree is built with names the JSON value (was: a column of the rendered text)
            {"selector": {"property": "user", "value": "a", "operator": "==", "operand": NUL}},
            ExpressionError,
            "raw_cohort.selector.operand: a NUL character (\\u0000) cannot be stored in Postgres",
        ),
        (
            {
                "selector": {
                    "operator": "and",
                    "children": [{"property": "user", "value": NUL, "operator": "set"}],
                }
            },
            ExpressionError,
            "raw_cohort.selector.children[0].value: a NUL character (\\u0000) cannot be stored in Postgres",
        ),
    ],
)
def test_error_paths(value: dict[str, Any], error: type[BadRequest] | None, message: str) -> None:
    if error is None:
        parse_definition(value, path="raw_cohort")
        return
    with pytest.raises(BadRequest) as raised:
        parse_definition(value, path="raw_cohort")
    assert type(raised.value) is error
    assert raised.value.message.startswith(message), raised.value.message


def test_a_saved_cohort_is_parsed_once_per_compile(database_url: str, parsed: Counter[str]) -> None:
    project_id = new_project(database_url)["id"]
    saved = {"op": "and", "filters": [{"type": "property", "where": 'properties["saved"] == 1'}]}

    async def work(conn: psycopg.AsyncConnection[Any]) -> None:
        made = await create_cohort(conn, project_id, CohortCreate(name="saved", definition=saved))
        twice = {
            "filters": [{"type": "cohort", "id": made.id}, {"type": "cohort", "id": made.id, "negate": True}]
        }
        parsed.clear()
        params = SqlParams()
        await cohort_condition(
            conn, project_id, {"raw_cohort": twice}, distinct_id=sql.SQL("d"), params=params, now=NOW
        )

    with_conn(database_url, work)
    assert parsed == Counter({'properties["saved"] == 1': 1})
