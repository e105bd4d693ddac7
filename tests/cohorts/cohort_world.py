"""The fixed world of the cohort tests: 32 users, ~650 events over 90 days, built from simple rules so that
every expected membership can be derived by hand from the rules (test_membership.py does so).

NOW is 2026-06-15 12:00:00 UTC.
- Profiles: u00..u24 and n30, n31 (n30/n31 have no events at all); u25..u29 have events but no profile.
  u_i: plan "pro" when i % 3 == 0 else "free"; age 20 + i; country US/DE/FR/JP by i % 4; vip for 0, 5, 10.
- Purchase: u_i buys i % 5 times, 1, 8, 15 and 22 days ago (amount 10, 20, 30, 40); the even ones also once
  60 days ago (amount 100).
- Login: u_i logs in d days and 2 hours ago for each d in 0..89 with d % k == 0, k = i % 6 + 3.
- Signup: u_i once, 89 - i days ago (so 2026-03-18 + i days, at 12:00).
- Edge: one event each, on the edges of the windows (EDGES).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

NOW = dt.datetime(2026, 6, 15, 12, 0, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)

USERS = [f"u{i:02d}" for i in range(30)]
PROFILED = range(25)
EXTRA = {
    "n30": {"plan": "pro", "age": 50, "country": "US"},
    "n31": {"plan": "free", "age": 51, "country": "DE"},
}
EVERYONE = {*USERS, *EXTRA}

EDGES = {
    "u01": NOW - 30 * DAY,
    "u02": NOW - 30 * DAY - SECOND,
    "u03": dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
    "u04": dt.datetime(2026, 4, 30, 23, 59, 59, tzinfo=dt.UTC),
    "u05": dt.datetime(2026, 5, 31, 23, 59, 59, tzinfo=dt.UTC),
    "u06": dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
    "u07": dt.datetime(2026, 5, 15, 12, 0, 0, tzinfo=dt.UTC),
    "u08": dt.datetime(2026, 5, 15, 11, 59, 59, tzinfo=dt.UTC),
    "u09": NOW + dt.timedelta(minutes=30),
    "u10": NOW - 14 * DAY,
    "u11": NOW - 14 * DAY - SECOND,
}


def u(i: int) -> str:
    return f"u{i:02d}"


def login_step(i: int) -> int:
    return i % 6 + 3


def profiles() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in PROFILED:
        props: dict[str, Any] = {
            "plan": "pro" if i % 3 == 0 else "free",
            "age": 20 + i,
            "country": ["US", "DE", "FR", "JP"][i % 4],
        }
        if i in (0, 5, 10):
            props["vip"] = True
        out[u(i)] = props
    out.update(EXTRA)
    return out


def events() -> list[tuple[str, str, dt.datetime, dict[str, Any]]]:
    out: list[tuple[str, str, dt.datetime, dict[str, Any]]] = []
    for i in range(30):
        for j in range(i % 5):
            out.append(("Purchase", u(i), NOW - (7 * j + 1) * DAY, {"amount": 10 * (j + 1)}))
        if i % 2 == 0:
            out.append(("Purchase", u(i), NOW - 60 * DAY, {"amount": 100}))
        for d in range(0, 90, login_step(i)):
            out.append(("Login", u(i), NOW - d * DAY - dt.timedelta(hours=2), {"day": d}))
        out.append(("Signup", u(i), NOW - (89 - i) * DAY, {}))
    for user, when in EDGES.items():
        out.append(("Edge", user, when, {}))
    out.append(("Purchase", "", NOW - DAY, {"amount": 5}))  # an event with no user: nobody's
    return out


def logins_since(i: int, start: dt.datetime) -> int:
    """u_i's logins at or after `start` (and not after NOW)."""
    return sum(1 for d in range(0, 90, login_step(i)) if NOW - d * DAY - dt.timedelta(hours=2) >= start)
