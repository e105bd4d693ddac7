"""profilestore_apply_groups is profilestore_apply_profiles keyed by (group_key, group_id) instead of
distinct_id, and nothing else: a change to one is a change to both.

Since revision 0007 both are rendered from one template (db/sql/0007_apply.sql, profilestore.db.templates);
the functions of revisions 0001 and 0002 (0001_apply_profiles.sql, 0002_apply_groups.sql) have shipped and
are what a downgrade restores.  For each pair, comments and white space aside, the profiles function with the
key substitutions below applied is the groups function, token for token.
"""

from __future__ import annotations

import re

import pytest

from profilestore.db.migrate import sql_file
from profilestore.db.templates import apply_function, render

# Outputs name the group key and id K_ and D_ so that later rules do not match them again.
SUBS = [
    (r"\bprofilestore_apply_profiles\b", "profilestore_apply_groups"),
    (r"\bprofile_tombstones\b", "group_profile_tombstones"),
    (r"\bprofiles\b", "group_profiles"),
    (r"'profile',(\w+)\.distinct_id\b", r"'group',\1.group_key || '/' || \1.group_id"),
    (r"'profile'", "'group'"),
    (r"\bORDER BY 1,2\b", "ORDER BY 1,2,3"),
    (r"\b(\w+\.)?distinct_id=(\w+)\.distinct_id\b", r"\1group_key=\2.group_key AND \1group_id=\2.group_id"),
    (r"\b(\w+\.)?distinct_id=r\.d\b", r"\1group_key=r.K_ AND \1group_id=r.D_"),
    (r"\b(\w+\.)?distinct_id=e\.value->>'d'", r"\1group_key=e.value->>'K_' AND \1group_id=e.value->>'D_'"),
    (r"\b(\w+)\.d AS distinct_id\b", r"\1.K_ AS group_key,\1.D_ AS group_id"),
    (r"e\.value->>'d' AS distinct_id", "e.value->>'K_' AS group_key,e.value->>'D_' AS group_id"),
    (r"\b(\w+)\.distinct_id\b", r"\1.group_key,\1.group_id"),
    (r"\bdistinct_id\b", "group_key,group_id"),
    (r"\bd text\b", "K_ text,D_ text"),
    (r"e\.value->>'d'", "e.value->>'K_',e.value->>'D_'"),
    (r"\br\.d\b", "r.K_,r.D_"),
    (r"\bK_\b", "k"),
    (r"\bD_\b", "d"),
]


def normalise(text: str) -> str:
    """Without comments, white space collapsed, none around punctuation."""
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s*([(),;=])\s*", r"\1", text)


PAIRS = {
    "revisions 0001 and 0002": (sql_file("0001_apply_profiles.sql"), sql_file("0002_apply_groups.sql")),
    "the template of 0007": (apply_function("profile"), apply_function("group")),
}


def keyed_by_group(profiles: str) -> str:
    text = normalise(profiles)
    for pattern, replacement in SUBS:
        text = re.sub(pattern, replacement, text)
    return text


@pytest.mark.parametrize(("profiles", "groups"), PAIRS.values(), ids=PAIRS.keys())
def test_the_groups_function_is_the_profiles_function_keyed_by_group(profiles: str, groups: str) -> None:
    assert keyed_by_group(profiles).split(";") == normalise(groups).split(";")


@pytest.mark.parametrize(("profiles", "groups"), PAIRS.values(), ids=PAIRS.keys())
def test_a_difference_beyond_the_key_is_found(profiles: str, groups: str) -> None:
    changed = normalise(groups).replace("ORDER BY 1,2,3", "ORDER BY 1,3,2", 1)
    assert changed != normalise(groups)
    assert keyed_by_group(profiles) != changed


def test_the_template_renders_every_mark() -> None:
    for kind in ("profile", "group"):
        text = re.sub(r"--[^\n]*", "", apply_function(kind))  # the marks named in comments aside
        assert "@" not in text
    with pytest.raises(ValueError, match="unknown mark @tabel@"):
        render("SELECT FROM @tabel@", "profile")
