"""An `$add` result obeys the rule of numbers sent directly (docs/ingest.md section 3; issue 10, finding
8): a sum that /engage would refuse as sent -- one no double or 64-bit integer holds exactly -- leaves the
property as it was, with an ingestion warning, and the rest of the update applies.  Each case is checked both
ways: the sum sent directly, and the sum reached by `$add`; the two must agree, and agree with the rule."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from model import ProfileModel

Row = dict[str, Any]
DB = psycopg.Connection[Row]

# (stored, operand, their sum, whether /engage stores that sum as sent), all as JSON text.
CASES = [
    pytest.param("1e308", "1e308", "2e308", False, id="past the largest double"),
    pytest.param("18446744073709551615", "1", "18446744073709551616", False, id="past 2^64-1"),
    pytest.param("-9223372036854775808", "-1", "-9223372036854775809", False, id="below -2^63"),
    pytest.param("9007199254740992", "1.0", "9007199254740993.0", False, id="a float no double holds"),
    pytest.param("0.1", "1e-17", "0.10000000000000001", False, id="more digits than a double"),
    pytest.param("9223372036854775807", "1", "9223372036854775808", True, id="2^63, an integer orjson reads"),
    pytest.param("0.1", "0.2", "0.3", True, id="short decimals"),
    pytest.param("1e16", "1", "10000000000000001", True, id="an integer"),
    pytest.param("1e300", "1e300", "2e300", True, id="a double"),
    pytest.param("5e-324", "5e-324", "1e-323", True, id="subnormal"),
]


def body(token: str, distinct_id: str, operations: str, path: str) -> str:
    key = '"$group_key": "company", "$group_id"' if path == "/groups" else '"$distinct_id"'
    return f'[{{"$token": "{token}", {key}: "{distinct_id}", {operations}}}]'


def send(client: httpx.Client, path: str, text: str) -> httpx.Response:
    return client.post(
        path, params={"verbose": "2"}, content=text, headers={"content-type": "application/json"}
    )


def stored(db: DB, project: Row, distinct_id: str) -> Row:
    row = db.execute(
        "SELECT properties::text AS p FROM profiles WHERE project_id = %(p)s AND distinct_id = %(d)s"
        " UNION ALL"
        " SELECT properties::text FROM group_profiles WHERE project_id = %(p)s AND group_id = %(d)s",
        {"p": project["id"], "d": distinct_id},
    ).fetchone()
    assert row is not None
    result: Row = json.loads(row["p"], parse_float=Decimal, parse_int=Decimal)
    return result


@pytest.mark.parametrize("path", ["/engage", "/groups"])
@pytest.mark.parametrize(("base", "operand", "total", "exact"), CASES)
def test_a_sum_is_stored_exactly_when_it_could_be_sent(
    base: str, operand: str, total: str, exact: bool, path: str, client: httpx.Client, project: Row, db: DB
) -> None:
    token = project["token"]
    # The sum sent directly: /engage's own rule.
    direct = send(client, path, body(token, "direct", f'"$set": {{"n": {total}}}', path))
    assert direct.status_code == (200 if exact else 400), direct.text
    for failure in direct.json().get("failed_records", []):
        assert "cannot be stored exactly" in failure["message"]

    # The same sum by $add, beside other operations of the same update.
    assert send(client, path, body(token, "u1", f'"$set": {{"n": {base}}}', path)).status_code == 200
    update = f'"$add": {{"n": {operand}, "m": 1}}, "$set": {{"s": 1}}'
    response = send(client, path, body(token, "u1", update, path))
    assert response.status_code == 200, response.text
    assert response.json()["num_records_imported"] == 1
    props = stored(db, project, "u1")
    assert props["n"] == Decimal(total if exact else base)
    assert props["m"] == 1 and props["s"] == 1
    warnings = db.execute(
        "SELECT operation, property, reason FROM ingestion_warnings WHERE project_id = %s", (project["id"],)
    ).fetchall()
    if exact:
        assert warnings == []
    else:
        [warning] = warnings
        assert (warning["operation"], warning["property"]) == ("$add", "n")
        assert "cannot be stored exactly" in warning["reason"]


def test_repeated_adds_stop_at_the_last_exact_sum(client: httpx.Client, project: Row, db: DB) -> None:
    """Adds of 2^62 from 0 in one request: up to 2^64 - 2^62 they are integers /engage reads; past 2^64 - 1
    each is refused, and the value stays the last exact sum."""
    step = 2**62
    batch = [{"$token": project["token"], "$distinct_id": "u1", "$add": {"n": step}} for _ in range(6)]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 200, response.text
    assert stored(db, project, "u1") == {"n": 3 * step}
    reasons = db.execute(
        "SELECT reason FROM ingestion_warnings WHERE project_id = %s ORDER BY id", (project["id"],)
    ).fetchall()
    assert len(reasons) == 3
    assert reasons[0]["reason"].startswith(f"the sum {4 * step} cannot be stored exactly")
    model = ProfileModel()
    for update in batch:
        model.apply({**update, "$time": 1_700_000_000})
    assert model.profiles()["u1"]["properties"] == {"n": 3 * step}
    assert len(model.warnings) == 3
