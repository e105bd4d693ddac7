"""The session's scratch table of fixed profiles (expr_support.PROFILES)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from expr_support import PROFILES, Profiles, make_profiles


@pytest.fixture(scope="session")
def profiles(db: psycopg.Connection[dict[str, Any]]) -> Iterator[Profiles]:
    yield from make_profiles(db, PROFILES)
