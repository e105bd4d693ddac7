"""profilestore_apply_groups (0002_apply_groups.sql) is profilestore_apply_profiles (0001_apply_profiles.sql)
keyed by (group_key, group_id) instead of distinct_id, and nothing else: a change to one is a change to both.

Both files belong to migrations that have shipped, so they are not edited; the next migration that touches
them renders both from one template.  Until then this test keeps them in step: comments and white space
aside, the profiles function with the key substitutions below applied is the groups function, token for token.
"""

from __future__ import annotations

import re

from profilestore.db.migrate import sql_file

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


def test_the_groups_function_is_the_profiles_function_keyed_by_group() -> None:
    profiles = normalise(sql_file("0001_apply_profiles.sql"))
    for pattern, replacement in SUBS:
        profiles = re.sub(pattern, replacement, profiles)
    groups = normalise(sql_file("0002_apply_groups.sql"))
    assert profiles.split(";") == groups.split(";")


def test_a_difference_beyond_the_key_is_found() -> None:
    groups = normalise(sql_file("0002_apply_groups.sql"))
    changed = groups.replace("ORDER BY 1,2,3", "ORDER BY 1,3,2", 1)
    profiles = normalise(sql_file("0001_apply_profiles.sql"))
    for pattern, replacement in SUBS:
        profiles = re.sub(pattern, replacement, profiles)
    assert profiles != changed
