"""The expression language against fixed profiles (expr_support.PROFILES): each expression's matching ids
as written here, by the SQL filter, and by the Python evaluator, and its SQL and Python values row by row.
Every example in query.md is here; see docs/expressions.md for the semantics being pinned."""

from __future__ import annotations

import pytest
from expr_support import PROFILES, Profiles

ALL = set(PROFILES)
NONE: set[str] = set()

CASES: list[tuple[str, set[str]]] = [
    # query.md's examples
    ('properties["plan"] == "pro"', {"alice"}),
    ('properties["$last_seen"] > "2026-01-01T00:00:00"', {"alice", "bob", "erin", "gina"}),
    ('"vip" in properties["tags"]', {"alice", "carol", "gina"}),
    ('properties["plan"] in ["pro", "team"]', {"alice", "bob"}),
    ('not defined(properties["email"])', {"carol", "dave", "frank", "gina"}),
    ('not "vip" in properties["tags"]', {"bob", "dave", "erin", "frank"}),
    ('datetime(properties["created"]) - 86400 > datetime("2026-01-14")', {"alice", "erin", "gina"}),
    ('datetime(properties["$last_seen"]) > now() - 7 * 86400', {"alice", "erin"}),
    ('properties["n"] > 10', NONE),
    ('defined(properties["z"])', {"alice", "bob"}),
    # equality: typed, either order, != its negation
    ('properties["plan"] != "pro"', ALL - {"alice"}),
    ('"pro" == properties["plan"]', {"alice"}),
    ('properties["plan"] not in ["pro", "team"]', ALL - {"alice", "bob"}),
    ('"vip" not in properties["tags"]', {"bob", "dave", "erin", "frank"}),
    ('defined(properties["email"])', {"alice", "bob", "erin"}),
    ('properties["z"] == null', {"alice"}),
    ('properties["missing"] == null', NONE),
    ('properties["missing"] != 1', ALL),
    ('properties["n"] == 10', {"alice"}),
    ('properties["n"] == 7', {"erin"}),
    ('properties["n"] == "10"', {"frank"}),
    ('properties["f"] == 3', {"gina"}),
    ('properties["n"] == properties["f"]', {"gina"}),
    ('properties["ok"] == true', {"alice"}),
    ('properties["ok"] == 1', {"carol"}),
    ('properties["z"] == 0', {"bob"}),
    ('properties["z"] == false', NONE),
    ('properties["tags"] == ["vip", "beta"]', {"alice"}),
    ('properties["tags"] == []', {"bob"}),
    ('properties["tags"] in [["vip", "beta"], []]', {"alice", "bob"}),
    ('properties["plan"] in [["pro"], "team"]', {"bob", "carol"}),
    ('properties["n"] in [10, 7]', {"alice", "erin"}),
    ('properties["ok"] in [true, 1]', {"alice", "carol"}),
    ('properties["plan"] in []', NONE),
    ('1 in properties["tags"]', {"erin"}),
    ("1.0 in properties['tags']", {"erin"}),
    ('null in properties["tags"]', {"erin"}),
    ('"" in properties["name"]', {"alice", "bob", "carol", "erin", "frank"}),
    ('"example" in properties["email"]', {"alice"}),
    # ordering
    ('properties["n"] > 5', {"alice", "erin"}),
    ('properties["n"] >= 0', {"alice", "carol", "erin", "gina"}),
    ('properties["n"] < 0', {"bob"}),
    ('properties["n"] <= -3', {"bob"}),
    ('properties["n"] > "5"', NONE),
    ('properties["name"] > "B"', {"bob", "erin", "frank"}),
    ('properties["name"] < "a"', {"alice", "carol", "erin"}),
    ('properties["email"] > properties["name"]', {"alice", "bob", "erin"}),
    ('properties["created"] < "2026"', {"bob"}),
    ('not properties["n"] > 5', ALL - {"alice", "erin"}),
    # datetimes
    ('properties["$last_seen"] > now() - 86400', {"alice", "erin"}),
    ('datetime(properties["$last_seen"]) >= now() - 7 * 86400', {"alice", "erin", "gina"}),
    ('defined(properties["$last_seen"])', {"alice", "bob", "dave", "erin", "gina"}),
    ('datetime(properties["created"]) < datetime("2026-01-01")', {"bob"}),
    ('datetime(properties["created"]) == datetime("2026-01-01T00:00:00Z")', {"frank"}),
    ('datetime(properties["created"]) == "2025-12-31T00:00:00"', {"bob"}),
    ('defined(datetime(properties["created"]))', ALL - {"carol", "dave"}),
    ('datetime(properties["created"]) > "2026-02-01"', {"erin", "gina"}),
    ('string(datetime(properties["created"])) == "2026-03-01T10:00:00"', {"erin"}),
    ('datetime(properties["$last_seen"]) - datetime(properties["created"]) > 300 * 86400', {"alice", "bob"}),
    ('datetime(properties["created"]) in ["2026-01-15T10:00:00", "2025-12-31"]', {"alice", "bob"}),
    (
        'datetime(properties["n"]) < datetime("1970-01-01T00:00:11")',
        {"alice", "bob", "carol", "erin", "gina"},
    ),
    ('number(datetime("1970-01-02")) == 86400', ALL),
    ('datetime(1767225600) == datetime("2026-01-01")', ALL),
    ('defined(datetime("2026-02-30"))', NONE),
    ('defined(datetime("2024-02-29"))', ALL),
    ('now() > datetime("2026-11-20T11:59:59")', ALL),
    ('string(now()) == "2026-11-20T12:00:00"', ALL),
    ('datetime(properties["created"]) + datetime(properties["created"]) > 0', NONE),
    # arithmetic
    ('properties["n"] + 1 == 11', {"alice"}),
    ('properties["n"] * 2 > 10', {"alice", "erin"}),
    ('defined(properties["n"] / 0)', NONE),
    ('defined(properties["n"] / 4)', {"alice", "bob", "carol", "erin", "gina"}),
    ('properties["n"] % 4 == -3', {"bob"}),
    ('properties["n"] % 4 == 2', {"alice"}),
    ('properties["f"] % 1 == 0.5', {"alice", "carol"}),
    ('properties["f"] * 1e10 > 1e300', NONE),
    ('defined(properties["f"] * 1e10)', ALL - {"dave", "frank"}),
    ('properties["f"] + properties["n"] == 11.5', {"alice"}),
    ('-properties["n"] == 3', {"bob"}),
    ('-(properties["n"]) < -5', {"alice", "erin"}),
    ('properties["name"] + "x" == "Alicex"', NONE),
    ("2 + 3 * 4 == 14 and (2 + 3) * 4 == 20 and 10 - 2 - 3 == 5 and -2 * -3 == 6", ALL),
    ("7 % -3 == 1 and -7 % 3 == -1 and 0.1 + 0.2 != 0.3", ALL),
    # functions
    ('floor(properties["f"]) == 1', {"alice"}),
    ('ceil(properties["f"]) == -2', {"erin"}),
    ('round(properties["f"]) == 3', {"carol", "gina"}),
    ('round(properties["f"]) == -3', {"erin"}),
    ('round(properties["f"]) == 2', {"alice"}),
    ('length(properties["tags"]) == 2', {"alice", "gina"}),
    ('length(properties["tags"]) == 3', {"carol", "erin"}),
    ('length(properties["name"]) > 4', {"alice", "erin", "frank"}),
    ('length(properties["obj"]) == 2', {"frank"}),
    ('length(properties["city"]) == 5', {"alice"}),
    ('lower(properties["name"]) == "alice"', {"alice"}),
    ('upper(properties["name"]) == "BOB"', {"bob"}),
    ('lower(properties["plan"]) == "pro"', {"alice", "erin"}),
    ('upper(properties["city"]) == "CITTà"', {"alice"}),
    ('has_prefix(properties["email"], "alice@")', {"alice"}),
    ('has_suffix(lower(properties["email"]), "@example.com")', {"alice", "erin"}),
    ('has_suffix(properties["email"], "@example.com")', {"alice"}),
    ('has_prefix(properties["n"], "1")', {"frank"}),
    ('number(properties["n"]) == 10', {"alice", "frank"}),
    ('number(properties["code"]) > 40', {"alice", "bob"}),
    ('defined(number(properties["code"]))', {"alice", "bob", "erin"}),
    ('number(properties["ok"]) == 1', {"alice", "carol"}),
    ('string(properties["n"]) == "10"', {"alice", "frank"}),
    ('string(properties["n"]) == "7"', {"erin"}),
    ('string(properties["f"]) == "0.1"', {"bob"}),
    ('string(properties["f"]) == "1e+300"', {"frank"}),
    ('string(properties["ok"]) == "false"', {"bob"}),
    ('defined(string(properties["tags"]))', {"carol"}),
    ('string(1e21) == "1e+21" and string(0.000001) == "0.000001" and string(1e-7) == "1e-7"', ALL),
    ('string(123456789012345680000) == "123456789012345680000" and string(-1.5) == "-1.5"', ALL),
    # truthiness
    ('boolean(properties["ok"])', {"alice", "carol", "erin"}),
    ('properties["ok"]', {"alice", "carol", "erin"}),
    ('not properties["ok"]', {"bob", "dave", "frank", "gina"}),
    ('not not properties["ok"]', {"alice", "carol", "erin"}),
    ('boolean(properties["flag"])', {"carol"}),
    ('boolean(properties["z"])', NONE),
    ('properties["tags"]', {"alice", "carol", "erin", "frank", "gina"}),
    ('properties["obj"]', {"alice", "frank"}),
    ("true", ALL),
    ("false", NONE),
    ("null", NONE),
    ('"0"', NONE),
    ("[]", NONE),
    ("[0]", ALL),
    # and / or / not, undefined as false
    ('properties["plan"] == "pro" and properties["n"] > 5 or properties["plan"] == "team"', {"alice", "bob"}),
    ('properties["plan"] == "pro" and (properties["n"] > 5 or properties["plan"] == "team")', {"alice"}),
    ('properties["n"] > 5 or not defined(properties["n"])', {"alice", "erin", "dave"}),
    ('defined(properties["missing"]) or defined(user["missing"])', NONE),
    # names and sources
    ('properties["we\'ird\\"key\\\\%_$"] == "x"', {"gina"}),
    ('defined(properties["we\'ird\\"key\\\\%_$"])', {"gina"}),
    ('properties["$email"] == "g@x.com"', {"gina"}),
    ('properties["name"] == "dave\'s \\"quote\\" \\\\ 100%_$"', {"frank"}),
    ("has_prefix(properties['name'], 'dave\\'s')", {"frank"}),
    ('user["plan"] == "pro"', {"alice"}),
    ('event["plan"] == "pro"', {"alice"}),
]


def test_enough_cases() -> None:
    assert len(CASES) >= 80
    assert len({text for text, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[text for text, _ in CASES])
def test_expression(profiles: Profiles, text: str, expected: set[str]) -> None:
    profiles.check(text, expected)
