"""Random update sequences sent through the HTTP API give exactly the reference model's profiles.

The strategies (tests/strategies.py) make collisions the rule: few distinct_ids repeated within and across
batches, few property names, JSON-equal values, a narrow band of `$time`s so that ties and out-of-order
delivery are common, and `$delete`s.  The sequence is cut into randomly sized requests, sent in order.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import ProfileModel, normalize
from strategies import TOKEN, update_sequences


@pytest.mark.parametrize("kind", ["profile", "group"])
@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=update_sequences(max_ids=4, max_len=40), cuts=st.lists(st.integers(1, 12), max_size=20))
def test_random_sequences_match_the_model(
    kind: str,
    sequence: list[dict[str, Any]],
    cuts: list[int],
    client: httpx.Client,
    project: dict[str, Any],
    db: psycopg.Connection[dict[str, Any]],
) -> None:
    prefix = uuid.uuid4().hex[:8] + "-"  # one project for all examples; fresh ids for each
    records = [
        {**r, "$token": project["token"], "$distinct_id": prefix + r["$distinct_id"]}
        for r in sequence
        if r.get("$token") == TOKEN
    ]
    model = ProfileModel()
    for record in records:
        model.apply(record)

    if kind == "group":  # the same updates to group profiles: /groups, keyed by (group_key, group_id)
        records = [{**r, "$group_key": "company", "$group_id": r.pop("$distinct_id")} for r in records]
    start = 0
    for size in [*cuts, len(records)]:
        chunk = records[start : start + size]
        if not chunk:
            break
        path = "/groups" if kind == "group" else "/engage"
        response = client.post(path, params={"verbose": "2"}, json=chunk)
        assert response.status_code == 200, response.text
        start += size

    rows = db.execute(
        "SELECT distinct_id, properties, extract(epoch FROM last_seen)::float8 AS last_seen"
        " FROM profiles WHERE project_id = %s AND distinct_id LIKE %s"
        " UNION ALL"
        " SELECT group_id, properties, extract(epoch FROM last_seen)::float8"
        " FROM group_profiles WHERE project_id = %s AND group_id LIKE %s",
        (project["id"], prefix + "%", project["id"], prefix + "%"),
    ).fetchall()
    got = {r["distinct_id"]: (normalize(r["properties"]), r["last_seen"]) for r in rows}
    expected = {d: (normalize(p["properties"]), p["last_seen"]) for d, p in model.profiles().items()}
    assert got == expected
    # Conflicts are recorded once each, as the model finds them (ingestion warnings).
    warnings = db.execute(
        "SELECT replace(entity, 'company/', '') AS entity, operation, property FROM ingestion_warnings"
        " WHERE project_id = %s AND replace(entity, 'company/', '') LIKE %s",
        (project["id"], prefix + "%"),
    ).fetchall()
    assert sorted((w["entity"], w["operation"], w["property"]) for w in warnings) == sorted(
        (w.distinct_id, w.operation, w.property) for w in model.warnings
    )
