"""CSV exports guard spreadsheet formulas by default (issue 10, finding 10; OWASP's CSV injection): a string
cell starting with =, +, -, @, a tab or a carriage return gets a `'` before it; numbers stay as they are;
`csv_formula_guard=false` (`--no-formula-guard` on the command line) writes the values untouched."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import orjson
import pytest

Row = dict[str, Any]

# property -> (value, the cell guarded, the cell unguarded)
CELLS: dict[str, tuple[Any, str, str]] = {
    "eq": (
        '=HYPERLINK("http://evil","click")',
        '\'=HYPERLINK("http://evil","click")',
        '=HYPERLINK("http://evil","click")',
    ),
    "plus": ("+1+2", "'+1+2", "+1+2"),
    "minus": ("-2+3", "'-2+3", "-2+3"),
    "minus_text_number": ("-5", "'-5", "-5"),
    "at": ("@SUM(A1)", "'@SUM(A1)", "@SUM(A1)"),
    "tab": ("\tx", "'\tx", "\tx"),
    "cr": ("\rx", "'\rx", "\rx"),
    "negative": (-5, "-5", "-5"),
    "negative_float": (-2.5, "-2.5", "-2.5"),
    "list": (["=x"], '["=x"]', '["=x"]'),
    "inner": ("a=b", "a=b", "a=b"),
    "plain": ("plain", "plain", "plain"),
}
EVIL_ID = "=cmd|' /C calc'!A0"
EVIL_NAME = "=name"


@pytest.fixture
def world(client: httpx.Client, project: Row) -> Row:
    props = {name: value for name, (value, _, _) in CELLS.items()}
    updates = [
        {"$token": project["token"], "$distinct_id": EVIL_ID, "$set": {**props, EVIL_NAME: "-1"}},
        {"$token": project["token"], "$distinct_id": "u2", "$set": {"plain": "x"}},
    ]
    response = client.post("/engage", params={"verbose": "2"}, content=orjson.dumps(updates))
    assert response.status_code == 200, response.text
    return project


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def export(client: httpx.Client, project: Row, **params: Any) -> str:
    response = client.get("/api/profiles/export", params=params, auth=(project["api_secret"], ""))
    assert response.status_code == 200, response.text
    return response.text


def test_formulas_are_guarded_by_default(client: httpx.Client, world: Row) -> None:
    rows = rows_of(export(client, world, format="csv"))
    evil = next(r for r in rows if r["$distinct_id"] == "'" + EVIL_ID)
    for name, (_, guarded, _) in CELLS.items():
        assert evil[name] == guarded, name
    assert evil["'" + EVIL_NAME] == "'-1"
    other = next(r for r in rows if r["$distinct_id"] == "u2")
    assert other["plain"] == "x" and other["eq"] == ""


def test_chosen_columns_are_guarded_too(client: httpx.Client, world: Row) -> None:
    rows = rows_of(export(client, world, format="csv", columns="minus,negative"))
    assert rows[0] == {"$distinct_id": "'" + EVIL_ID, "minus": "'-2+3", "negative": "-5"}


def test_the_guard_can_be_turned_off(client: httpx.Client, world: Row) -> None:
    guarded = rows_of(export(client, world, format="csv", csv_formula_guard="true"))
    rows = rows_of(export(client, world, format="csv", csv_formula_guard="false"))
    assert guarded != rows
    evil = next(r for r in rows if r["$distinct_id"] == EVIL_ID)
    for name, (_, _, raw) in CELLS.items():
        assert evil[name] == raw, name
    assert evil[EVIL_NAME] == "-1"


def test_jsonl_is_never_changed(client: httpx.Client, world: Row) -> None:
    """JSONL keeps every value as stored, while the same export as CSV is guarded."""
    lines = [orjson.loads(line) for line in export(client, world, format="jsonl").splitlines()]
    evil = next(line for line in lines if line["$distinct_id"] == EVIL_ID)
    assert evil["$properties"]["minus"] == "-2+3" and evil["$properties"]["negative"] == -5
    assert rows_of(export(client, world, format="csv", columns="minus"))[0]["minus"] == "'-2+3"
