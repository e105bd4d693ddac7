"""profilestore_put (db/sql/0007_fold.sql) never takes a profile past its limits.

When an operation does not fit as a whole, its properties are taken one by one against a bound of the
profile's size worked out without rebuilding the profile (so the work stays linear); this checks on random
profiles and operations that the bound never falls short of the true size, whatever the values' types,
lengths and alignment, and that the property count is exact.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Row = dict[str, Any]

names = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
# Text jsonb holds (no NUL, no lone surrogate), with multi-byte characters.
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


def size(db: psycopg.Connection[Row], value: str) -> int:
    row = db.execute("SELECT pg_column_size(%s::jsonb) AS n", (value,)).fetchone()
    assert row is not None
    return int(row["n"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    props=st.dictionaries(names, values, max_size=25),
    entries=st.dictionaries(names, values, min_size=1, max_size=12),
    slack=st.integers(-40, 40),
    max_props=st.integers(1, 30),
)
def test_a_put_never_passes_a_limit(
    props: Row, entries: Row, slack: int, max_props: int, db: psycopg.Connection[Row]
) -> None:
    before = orjson.dumps(props).decode()
    max_bytes = max(size(db, before), size(db, orjson.dumps({**props, **entries}).decode())) // 2 + slack
    max_bytes = max(max_bytes, size(db, before))  # the profile is within the limits to begin with
    max_props = max(max_props, len(props))
    row = db.execute(
        "SELECT p.merged, p.applied, pg_column_size(p.merged) AS size,"
        " (SELECT count(*) FROM jsonb_object_keys(p.merged)) AS n,"
        " %s::jsonb || p.applied = p.merged AS consistent"
        " FROM profilestore_put(%s::jsonb, %s::jsonb, %s, %s, -1, 'profile', 'u', '$set') AS p",
        (before, before, orjson.dumps(entries).decode(), max_props, max_bytes),
    ).fetchone()
    assert row is not None
    assert row["size"] <= max_bytes
    assert row["n"] <= max_props
    assert row["consistent"]
    assert set(row["applied"]) <= set(entries)
    db.execute("DELETE FROM ingestion_warnings WHERE project_id = -1")
