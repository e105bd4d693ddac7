"""Random small worlds and random definitions: membership computed by SQL equals a plain Python evaluation
of query.md's semantics (expressions.evaluate for the `where`s; windows computed independently here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from cohort_support import load_world, members_by_subquery, members_of, with_conn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilestore.cohorts.schemas import CohortDefinition, EventFilter, PropertyFilter, parse_definition
from profilestore.cohorts.service import count_cohort
from profilestore.expressions import evaluate, parse, truthy
from support import new_project

Row = dict[str, Any]
NOW = dt.datetime(2026, 3, 10, 15, 30, tzinfo=dt.UTC)
USERS = [f"d{i}" for i in range(6)]
PROPERTY_WHERES = [
    'properties["plan"] == "a"',
    'properties["n"] >= 2',
    'not defined(properties["n"])',
    'properties["n"] in [1, 3]',
]
EVENT_WHERES = [None, 'properties["x"] >= 2', 'user["plan"] == "a"', 'not defined(properties["x"])']

profiles_st = st.dictionaries(
    st.sampled_from(USERS),
    st.fixed_dictionaries({"plan": st.sampled_from(["a", "b"])}, optional={"n": st.integers(0, 3)}),
    max_size=6,
)
event_st = st.tuples(
    st.sampled_from(["A", "B"]),
    st.sampled_from(USERS),
    st.integers(-3600, 60 * 86400).map(lambda s: NOW - dt.timedelta(seconds=s)),
    st.fixed_dictionaries({}, optional={"x": st.integers(0, 3)}),
)
day_st = st.integers(0, 62).map(lambda d: (NOW - dt.timedelta(days=d)).date().isoformat())


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any] | None:
    kind = draw(st.sampled_from(["none", "day", "week", "dates"]))
    if kind == "none":
        return None
    if kind == "dates":
        a, b = sorted([draw(day_st), draw(day_st)])
        return {"from": a, "to": b}
    return {"last": draw(st.integers(1, 60 if kind == "day" else 9)), "unit": kind}


leaf_st = st.one_of(
    st.builds(
        lambda w, n: {"type": "property", "where": w, "negate": n},
        st.sampled_from(PROPERTY_WHERES),
        st.booleans(),
    ),
    st.builds(
        lambda e, op, v, w, win, n: {
            "type": "event",
            "event": e,
            "count": {"op": op, "value": v},
            "where": w,
            "window": win,
            "negate": n,
        },
        st.sampled_from(["A", "B"]),
        st.sampled_from([">=", "<=", "=="]),
        st.integers(0, 3),
        st.sampled_from(EVENT_WHERES),
        windows(),
        st.booleans(),
    ),
)
definition_st = st.recursive(
    leaf_st,
    lambda children: st.builds(
        lambda op, fs, n: {"op": op, "filters": fs, "negate": n},
        st.sampled_from(["and", "or"]),
        st.lists(children, max_size=3),
        st.booleans(),
    ),
    max_leaves=6,
).map(lambda d: d if "filters" in d else {"op": "and", "filters": [d]})


def in_window(window: Any, when: dt.datetime) -> bool:
    if window is None:
        return True
    if window.from_ is not None:
        return window.from_ <= when.date() <= window.to
    days = window.last * (7 if window.unit == "week" else 1)
    return NOW - dt.timedelta(days=days) <= when <= NOW


def reference(group: CohortDefinition, user: str, profiles: dict[str, Row], events: list[Any]) -> bool:
    """query.md's semantics, one user at a time."""
    now = NOW.timestamp()
    results = []
    for item in group.filters:
        if isinstance(item, CohortDefinition):
            results.append(reference(item, user, profiles, events))
            continue
        if isinstance(item, PropertyFilter):
            profile = profiles.get(user)
            ok = profile is not None and truthy(evaluate(parse(item.where), profile, now=now))
        else:
            assert isinstance(item, EventFilter)
            node = parse(item.where) if item.where else None
            count = sum(
                1
                for name, who, when, props in events
                if name == item.event
                and who == user
                and in_window(item.window, when)
                and (node is None or truthy(evaluate(node, props, user=profiles.get(user, {}), now=now)))
            )
            value = item.count.value
            ok = {">=": count >= value, "<=": count <= value, "==": count == value}[item.count.op]
        results.append(ok != item.negate)
    combined = all(results) if group.op == "and" else any(results)
    return combined != group.negate


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(profiles=profiles_st, events=st.lists(event_st, max_size=25), definition=definition_st)
def test_sql_membership_equals_python(
    database_url: str,
    db: psycopg.Connection[Row],
    profiles: dict[str, Row],
    events: list[Any],
    definition: dict[str, Any],
) -> None:
    project_id = _project(database_url)
    load_world(db, project_id, profiles, events)
    parsed = parse_definition(definition)
    everyone = set(profiles) | {who for _, who, _, _ in events}
    expected = {d for d in everyone if reference(parsed, d, profiles, events)}

    async def every_way(conn: psycopg.AsyncConnection[Any]) -> tuple[set[str], set[str], int, int]:
        spec = {"raw_cohort": definition}
        inline = await members_of(conn, project_id, spec, now=NOW.timestamp())
        subquery = await members_by_subquery(conn, project_id, spec, now=NOW.timestamp())
        # The count (which may start from the users who did one event: cohorts/compile.py `candidates`).
        counted = await count_cohort(conn, project_id, parsed, all_users=True, now=NOW.timestamp())
        of_profiles = await count_cohort(conn, project_id, parsed, all_users=False, now=NOW.timestamp())
        return inline, subquery, counted, of_profiles

    inline, subquery, counted, of_profiles = with_conn(database_url, every_way)
    assert inline == expected
    assert subquery == expected
    assert counted == len(expected)
    assert of_profiles == len(expected & set(profiles))


_PROJECTS: dict[str, int] = {}


def _project(database_url: str) -> int:
    if database_url not in _PROJECTS:
        _PROJECTS[database_url] = new_project(database_url)["id"]
    return _PROJECTS[database_url]
