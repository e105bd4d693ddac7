"""columns.py and plan.py: type inference and conversion of cells, reserved header names, --map, the
identifier rules, and RowMaker's verdict on each row (no database here)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from profilestore.imports.columns import (
    RESERVED,
    BadValue,
    Inference,
    Mapping,
    converter,
    parse_map,
    property_for,
)
from profilestore.imports.plan import ImportOptions, PlanError, RowMaker, make_plan, resolve_types
from profilestore.imports.reading import Problem, Row
from support import make_settings

SETTINGS = make_settings()


def inferred(*values: str) -> str:
    inference = Inference(1, SETTINGS.max_value_depth, SETTINGS.max_import_cell_bytes)
    inference.add_rows([[v] for v in values])
    return inference.type_of(0)


def as_json(kind: str, text: str) -> str:
    """A cell converted as its column's type, written as JSON (what goes to Postgres)."""
    convert = converter(kind, SETTINGS.max_value_depth, SETTINGS.max_import_cell_bytes)
    value = text if convert is None else convert(text)
    return orjson.dumps(value).decode()


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["42", "-12", "0"], "integer"),
        (["123456789012345"], "integer"),  # 15 digits
        (["1234567890123456"], "string"),  # 16: an id, not a number
        (["02139", "10001"], "string"),  # a leading zero: zip codes stay text
        (["00"], "string"),
        (["1.5", "-0.25", "3"], "decimal"),
        (["1e3"], "string"),
        (["NaN"], "string"),
        (["Infinity"], "string"),
        (["+5"], "string"),
        ([".5"], "string"),
        (["5."], "string"),
        (["1,000"], "string"),
        ([" 5"], "string"),
        (["１２"], "string"),  # digits, but not ASCII ones
        (["true", "FALSE", "True", "fAlSe"], "boolean"),
        (["yes", "no"], "string"),
        (["1", "0"], "integer"),
        (["true", "1"], "string"),
        (
            ["2024-01-02", "2024-01-02T10:00:00", "2024-01-02 10:00", "2024-01-02T10:00:00.5+02:00"],
            "datetime",
        ),
        (["2024-02-30"], "string"),  # no such day
        (["2024-02-29"], "datetime"),
        (["2024-01-02T24:00:00"], "string"),
        (["2024-1-2"], "string"),
        (["9999-12-31T23:59:59-05:00"], "string"),  # past year 9999 in UTC: text, not a crash
        (["[1, 2]", "[]", '["a", {"b": null}]'], "list"),
        (['{"a": 1}', "{}"], "object"),
        (["[[[1]]]"], "list"),  # 3 levels: the ingestion limit
        (["[[[[1]]]]"], "string"),  # 4: too deep
        (['{"a": {"b": {"c": {}}}}'], "string"),
        (['["a\\u0000b"]'], "string"),  # a NUL cannot be stored
        (['{"a\\u0000": 1}'], "string"),
        (["[123456789012345678901234567890]"], "string"),  # /engage refuses such a number: so does inference
        (["[1, 2"], "string"),
        (["[1, 2]", '{"a": 1}'], "string"),
        (["42", "x"], "string"),  # one stray value keeps the column text
        (["1", "2.5"], "decimal"),
        (["", "7", ""], "integer"),  # empty cells are not looked at
        (["", ""], "string"),
    ],
)
def test_inference(values: list[str], kind: str) -> None:
    assert inferred(*values) == kind


def test_inference_over_batches_and_columns() -> None:
    """add_rows many times: a column's type is what every batch allows; columns are independent."""
    inference = Inference(3, 3, 1000)
    inference.add_rows([["1", "true", "a"], ["2", "false", "b"]])
    inference.add_rows([["3", "TRUE", ""]])
    assert [inference.type_of(i) for i in range(3)] == ["integer", "boolean", "string"]
    inference.add_rows([["4.5", "maybe", ""]])
    assert [inference.type_of(i) for i in range(3)] == ["decimal", "string", "string"]


def test_inference_of_chosen_columns_only() -> None:
    inference = Inference(2, 3, 1000, indexes=[1])
    inference.add_rows([["1", "2"]])
    assert (inference.type_of(0), inference.type_of(1)) == ("string", "integer")


@pytest.mark.parametrize(
    ("kind", "text", "json"),
    [
        ("integer", "-12", "-12"),
        ("decimal", "0.1", "0.1"),
        ("decimal", "12345.678901234567890123", "12345.678901234567890123"),  # exactly, no float
        ("number", "1e3", "1E+3"),
        ("number", " 7 ", "7"),
        ("number", "-0.50", "-0.50"),
        ("boolean", "TRUE", "true"),
        ("boolean", "False", "false"),
        ("datetime", "2024-01-02", '"2024-01-02T00:00:00"'),
        ("datetime", "2024-01-02T10:00:00", '"2024-01-02T10:00:00"'),
        ("datetime", "2024-01-02 10:00", '"2024-01-02T10:00:00"'),
        ("datetime", "2024-01-02T10:00:00+02:00", '"2024-01-02T08:00:00"'),
        ("datetime", "2024-01-02T10:00+01", '"2024-01-02T09:00:00"'),
        ("datetime", "2024-01-02T23:30:00-05:00", '"2024-01-03T04:30:00"'),
        ("datetime", "2024-01-02T10:00:00.999Z", '"2024-01-02T10:00:00"'),
        ("datetime", "2024-01-02T10:00:00,5+0530", '"2024-01-02T04:30:00"'),
        ("datetime", "0999-06-01T10:00:00+01:00", '"0999-06-01T09:00:00"'),  # four digits of year
        ("list", '[1, "a", null, {"b": [true]}]', '[1,"a",null,{"b":[true]}]'),
        ("object", '{"plan": "pro", "seats": 3}', '{"plan":"pro","seats":3}'),
        ("string", "  as is  ", '"  as is  "'),
    ],
)
def test_conversion(kind: str, text: str, json: str) -> None:
    assert as_json(kind, text) == json


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("number", "12abc", "is not a number"),
        ("number", "NaN", "is not a finite number of a storable size"),
        ("number", "1e5000", "is not a finite number of a storable size"),
        ("boolean", "yes", "is not true or false"),
        ("datetime", "2024-02-30", "is not a valid date or datetime"),
        ("datetime", "02/01/2024", "is not an ISO 8601 date or datetime"),
        ("datetime", "0001-01-01T00:30:00+01:00", "is not a valid date or datetime"),
        ("list", '{"a": 1}', "is not a JSON list"),
        ("list", "[1,", "is not a JSON list"),
        ("object", "[]", "is not a JSON object"),
        ("list", "[[[[1]]]]", "is nested deeper than 3 levels"),
        ("object", '{"a": "\\u0000"}', "holds a NUL character (\\u0000), which cannot be stored"),
        (
            "list",
            "[18446744073709551616]",
            "cannot be stored as it is: the number 18446744073709551616 cannot be stored exactly;"
            " send it as a string",
        ),
    ],
)
def test_bad_values(kind: str, text: str, message: str) -> None:
    with pytest.raises(BadValue) as caught:
        as_json(kind, text)
    assert str(caught.value) == message


def test_a_json_value_over_the_cell_limit() -> None:
    convert = converter("list", 3, 100)
    assert convert is not None
    with pytest.raises(BadValue, match="is longer than 100 bytes"):
        convert("[" + "1," * 60 + "1]")


@pytest.mark.parametrize(
    ("header", "prop"),
    [
        ("Email", "$email"),
        ("E-mail", "$email"),
        ("email_address", "$email"),
        ("First Name", "$first_name"),
        ("first_name", "$first_name"),
        ("Last Name", "$last_name"),
        ("Name", "$name"),
        ("Phone", "$phone"),
        ("Phone Number", "$phone"),
        ("Avatar", "$avatar"),
        ("Created", "$created"),
        ("created_at", "$created"),
        ("City", "$city"),
        ("Country Code", "$country_code"),
        ("Timezone", "$timezone"),
        ("distinct_id", "$distinct_id"),
        ("Distinct ID", "$distinct_id"),
        ("$anything", "$anything"),
        ("  plan  ", "plan"),
        ("Plan", "Plan"),
        ("emails", "emails"),
    ],
)
def test_property_for(header: str, prop: str) -> None:
    assert property_for(header) == prop


def test_every_reserved_name_is_a_dollar_property() -> None:
    assert all(prop.startswith("$") for prop in RESERVED.values())


@pytest.mark.parametrize(
    ("item", "parsed"),
    [
        ("plan=tier", ("plan", Mapping("tier", None))),
        ("score=score:number", ("score", Mapping("score", "number"))),
        (" a = b:datetime ", ("a", Mapping("b", "datetime"))),
        ("url=link:https://x", ("url", Mapping("link:https://x", None))),  # not a type: part of the name
        ("t=a:b:list", ("t", Mapping("a:b", "list"))),
        ("uid=$distinct_id", ("uid", Mapping("$distinct_id", None))),
    ],
)
def test_parse_map(item: str, parsed: tuple[str, Mapping]) -> None:
    assert parse_map(item) == parsed


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("plan", "expected COLUMN=PROPERTY"),
        ("=x", "expected COLUMN=PROPERTY"),
        ("x=", "expected COLUMN=PROPERTY"),
        ("score=score:float", "unknown type 'float'"),
    ],
)
def test_parse_map_refuses(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_map(item)


# ---- the plan -------------------------------------------------------------------------------------------


def plan_of(headers: list[str], **options: Any) -> tuple[str, list[tuple[str, str, str | None]], Any]:
    """(identifier rule, [(column, property, forced type)], the plan)."""
    plan = make_plan(headers, ImportOptions(**options), SETTINGS)
    return plan.id_rule, [(t.header, t.prop, t.kind) for t in plan.targets], plan


@pytest.mark.parametrize(
    ("headers", "options", "rule", "id_index"),
    [
        (["Email", "distinct_id", "x"], {}, "column 'distinct_id' ($distinct_id)", 1),
        (["$distinct_id", "x"], {}, "column '$distinct_id' ($distinct_id)", 0),
        (["user", "Email"], {"id_column": "user"}, "column 'user'", 0),
        (["user", "x"], {"map": ["user=$distinct_id"]}, "column 'user' ($distinct_id)", 0),
        (["x", "E-mail"], {}, "column 'E-mail' ($email)", 1),
        (["x", "y"], {}, "a random UUID per row (no identifier or $email column)", None),
        (["company", "plan"], {"group_key": "company"}, "column 'company' (the group key)", 0),
        (["plan", "$group_id"], {"group_key": "company"}, "column '$group_id' ($group_id)", 1),
        (["org", "plan"], {"group_key": "company", "id_column": "org"}, "column 'org'", 0),
    ],
)
def test_identifier_rules(
    headers: list[str], options: dict[str, Any], rule: str, id_index: int | None
) -> None:
    found, _, plan = plan_of(headers, **options)
    assert (found, plan.id_index) == (rule, id_index)


def test_columns_and_their_properties() -> None:
    _, targets, plan = plan_of(
        ["distinct_id", "Email", "First Name", "score", "secret", "", "$last_seen", "joined"],
        skip=["secret"],
        map=["score=points:number", "joined=signup"],
    )
    assert targets == [
        ("Email", "$email", None),
        ("First Name", "$first_name", None),
        ("score", "points", "number"),
        ("joined", "signup", None),
    ]
    assert plan.notes == [
        "column 6 has no name: not imported",
        "column '$last_seen' sets $last_seen, which the service maintains: not imported",
    ]


def test_the_id_column_is_a_property_too_unless_it_is_the_id_property() -> None:
    assert plan_of(["user", "Email"], id_column="Email")[1] == [
        ("user", "user", None),
        ("Email", "$email", None),
    ]
    assert plan_of(["company", "x"], group_key="company")[1] == [
        ("company", "company", None),
        ("x", "x", None),
    ]


@pytest.mark.parametrize(
    ("headers", "options", "message"),
    [
        (["a"], {"id_column": "nope"}, "no column is named 'nope'"),
        (["a"], {"skip": ["nope"]}, "no column is named 'nope'"),
        (["a"], {"map": ["nope=x"]}, "no column is named 'nope'"),
        (["distinct_id", "a"], {"skip": ["distinct_id"]}, "column 'distinct_id' is the identifier"),
        (["Email", "E-mail"], {}, "columns 'Email' and 'E-mail' both set '$email'"),
        (["id", "a", "b"], {"id_column": "id", "map": ["b=a"]}, "columns 'a' and 'b' both set 'a'"),
        (["distinct_id", "$distinct_id"], {}, "column '$distinct_id': only the identifier column"),
        (["plan"], {"group_key": "company"}, "group profiles need an identifier column"),
        (["id", "x" * 256], {"id_column": "id"}, "property names are at most 255 characters"),
    ],
)
def test_plans_refused(headers: list[str], options: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("$", r"\$")):
        make_plan(headers, ImportOptions(**options), SETTINGS)


def test_too_many_columns() -> None:
    with pytest.raises(PlanError, match="the file has 3 columns; at most 2 can be imported"):
        make_plan(["a", "b", "c"], ImportOptions(), make_settings(max_import_columns=2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "merge"}, "mode"),
        ({"types": "auto"}, "types"),
        ({"header": False}, "needs its column names"),
        ({"delimiter": ";;"}, "one character"),
        ({"delimiter": '"'}, "one character"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
        ({"map": ["a=b:float"]}, "unknown type 'float'"),
        ({"cohort": "c", "group_key": "company"}, "cohorts hold users"),
        ({"cohort": ""}, "cohort"),
        ({"group_key": "k" * 256}, "group_key"),
    ],
)
def test_options_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImportOptions(**options)


def test_options_delimiter_and_encoding_spelled_loosely() -> None:
    assert ImportOptions(delimiter="\\t").delimiter == "\t"
    assert ImportOptions(delimiter="tab").delimiter == "\t"
    assert ImportOptions(encoding="Latin1").encoding == "iso8859-1"


# ---- rows -----------------------------------------------------------------------------------------------


def maker(headers: list[str], kinds: dict[str, str] | None = None, **options: Any) -> RowMaker:
    plan = make_plan(headers, ImportOptions(**options), SETTINGS)
    inference = Inference(len(headers), 3, SETTINGS.max_import_cell_bytes)
    resolve_types(plan, ImportOptions(**options), inference, SETTINGS)
    for target in plan.targets:  # as if inferred
        if kinds and target.header in kinds:
            target.kind = kinds[target.header]
            target.convert = converter(target.kind, 3, SETTINGS.max_import_cell_bytes)
    return RowMaker(plan, SETTINGS)


def made(m: RowMaker, line: int, cells: list[str]) -> Any:
    result = m.make(Row(line, cells))
    if isinstance(result, Problem):
        return (result.line, result.kind, result.column, result.message)
    ident, props, notes = result
    return ident, orjson.loads(orjson.dumps(props)), [(p.line, p.kind, p.column, p.message) for p in notes]


def test_a_row_is_a_set_of_its_non_empty_cells() -> None:
    m = maker(["distinct_id", "age", "plan", "tags"], kinds={"age": "integer", "tags": "list"})
    assert made(m, 2, ["u1", "31", "", '["a"]']) == ("u1", {"age": 31, "tags": ["a"]}, [])
    assert made(m, 3, ["u2", "", "", ""]) == ("u2", {}, [])


def test_rows_skipped_with_their_reason() -> None:
    m = maker(["distinct_id", "when"], map=["when=when:datetime"])
    assert made(m, 2, ["u1"]) == (2, "ragged", None, "line 2: 1 cells where the header has 2; skipped")
    assert made(m, 3, [" ", "2024-01-01"]) == (
        3,
        "empty_id",
        "distinct_id",
        "line 3: the identifier ('distinct_id') is empty; skipped",
    )
    assert made(m, 4, ["x" * 256, ""]) == (
        4,
        "bad_id",
        "distinct_id",
        "line 4: the identifier is over 255 characters; skipped",
    )
    assert made(m, 5, ["u1", "2024-13-01"]) == (
        5,
        "bad_value",
        "when",
        "line 5, column 'when': '2024-13-01' is not a valid date or datetime; skipped",
    )
    assert made(m, 6, ["x" * 255, ""]) == ("x" * 255, {}, [])


def test_a_cell_over_the_limit_in_bytes() -> None:
    """The limit is in UTF-8 bytes: 100,000 euro signs are 300,000 bytes."""
    m = maker(["distinct_id", "note"])
    limit = SETTINGS.max_import_cell_bytes
    assert made(m, 2, ["u1", "€" * 100_000]) == (
        2,
        "too_large",
        "note",
        f"line 2, column 'note': a cell over {limit} bytes; skipped",
    )
    assert made(m, 3, ["u1", "€" * (limit // 3)])[0] == "u1"


def test_a_phone_without_plus_is_imported_with_a_warning() -> None:
    m = maker(["distinct_id", "Phone"])
    assert made(m, 2, ["u1", "+14155550100"]) == ("u1", {"$phone": "+14155550100"}, [])
    assert made(m, 3, ["u2", "415 555 0100"]) == (
        "u2",
        {"$phone": "415 555 0100"},
        [
            (
                3,
                "phone",
                "Phone",
                "line 3, column 'Phone': '415 555 0100' has no leading '+' (an international number needs"
                " one); imported as it is",
            )
        ],
    )


def test_random_ids_when_there_is_no_identifier() -> None:
    m = maker(["plan"])
    first, second = made(m, 2, ["pro"]), made(m, 3, ["pro"])
    assert first[1] == second[1] == {"plan": "pro"}
    assert first[0] != second[0] and len(first[0]) == 36


def test_a_row_over_the_limit_of_one_update() -> None:
    """/engage refuses a record over max_record_bytes: an import skips such a row (each cell within its own
    limit), so no profile is made larger than /engage would make it."""
    settings = make_settings(max_record_bytes=100)
    plan = make_plan(["distinct_id", "a", "b"], ImportOptions(), settings)
    resolve_types(plan, ImportOptions(), None, settings)
    m = RowMaker(plan, settings)
    assert made(m, 2, ["u1", "x" * 40, "y" * 40]) == ("u1", {"a": "x" * 40, "b": "y" * 40}, [])
    assert made(m, 3, ["u1", "x" * 60, "y" * 60]) == (
        3,
        "too_large",
        None,
        "line 3: the row is over 100 bytes as JSON; skipped",
    )
