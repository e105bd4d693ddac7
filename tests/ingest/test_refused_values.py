"""A value Postgres cannot store fails its own record only, and no answer carries Postgres's own words.

A NUL character (JSONB cannot hold one) is found while the request is decoded and refused there, naming the
field.  Whatever Postgres still refuses is met by the fallback: the batch applied again group by group in one
transaction with a savepoint each, every refused record answered in plain words mapped from the SQLSTATE
(pipeline.refusal), Postgres's text logged instead.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import psycopg
import pytest

from profilestore.ingest.pipeline import REFUSED, refusal
from support import profiles_of


def test_nul_character_fails_only_its_record(
    client: httpx.Client, project: dict[str, Any], db: psycopg.Connection[dict[str, Any]]
) -> None:
    token = project["token"]
    batch = [
        {"$token": token, "$distinct_id": "good-1", "$set": {"a": 1}},
        {"$token": token, "$distinct_id": "bad", "$set": {"name": "nul\u0000here"}},
        {"$token": token, "$distinct_id": "good-2", "$add": {"n": 2}},
        {"$token": token, "$distinct_id": "good-1", "$union": {"tags": ["x"]}},
    ]
    response = client.post("/engage", params={"verbose": "2"}, json=batch)
    assert response.status_code == 400
    body = response.json()
    assert body["num_records_imported"] == 3
    [failure] = body["failed_records"]
    assert (failure["index"], failure["$distinct_id"], failure["field"]) == (1, "bad", "$set.name")
    assert failure["message"] == "must not contain a NUL character (\\u0000): Postgres cannot store one"
    profiles = profiles_of(db, project["id"])
    assert {d: p["properties"] for d, p in profiles.items()} == {
        "good-1": {"a": 1, "tags": ["x"]},
        "good-2": {"n": 2},
    }


# SQL Postgres refuses -> the plain words answered in its place (and Postgres's text, which must not be).
REFUSALS = {
    "timestamp out of range": (
        "SELECT to_timestamp(-1e17)",
        "a time Postgres cannot store (out of range)",
        "timestamp out of range",
    ),
    "numeric out of range": (
        "SELECT 1e308::float8 * 10",
        "a number Postgres cannot store (out of range)",
        "out of range: overflow",
    ),
    "NUL in jsonb": (
        "SELECT '\"a\\u0000b\"'::jsonb",
        "a character Postgres cannot store",
        "unsupported Unicode escape sequence",
    ),
    "another data exception": (
        "SELECT 'x'::int",
        "a value Postgres cannot store",
        "invalid input syntax",
    ),
}


@pytest.mark.parametrize(("statement", "words", "postgres"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_are_answered_in_plain_words(
    db: psycopg.Connection[dict[str, Any]],
    statement: str,
    words: str,
    postgres: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real refusal by the test database: the answer names the kind of value, the log keeps Postgres's
    text for the operator."""
    with pytest.raises(REFUSED) as raised:
        db.execute(statement)
    with caplog.at_level(logging.WARNING, logger="profilestore"):
        message = refusal(raised.value)
    assert message == f"refused by the database: {words}"
    assert postgres not in message
    assert postgres in caplog.text
