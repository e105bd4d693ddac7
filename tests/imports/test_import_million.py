"""A million-row CSV file through `profilestore import-csv` (types inferred): every row becomes a profile,
and a sample of them holds exactly the values of its line, with their types."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROWS = 1_000_000
SAMPLE = 100
PLANS = ["free", "starter", "pro", "team", "enterprise"]


def cells(i: int) -> tuple[str, str, str, str, str, str]:
    """Line i's cells: distinct_id, Email, plan, logins, revenue, Created."""
    created = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i * 7 % 60:02d}"
    revenue = f"{i % 10000}.{i % 100:02d}"
    return f"u{i:07d}", f"user{i}@example.com", PLANS[i % 5], str(i % 1000), revenue, created


def expected(i: int) -> dict[str, Any]:
    _, email, plan, logins, revenue, created = cells(i)
    return {
        "$email": email,
        "plan": plan,
        "logins": int(logins),
        "revenue": Decimal(revenue),
        "$created": created.replace(" ", "T"),
    }


def write_csv(path: Path) -> None:
    with path.open("w") as out:
        out.write("distinct_id,Email,plan,logins,revenue,Created\n")
        for start in range(0, ROWS, 100_000):
            out.write("".join(",".join(cells(i)) + "\n" for i in range(start, min(ROWS, start + 100_000))))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_million_rows(tmp_path: Path, database_url: str, project: dict[str, Any]) -> None:
    path = tmp_path / "million.csv"
    write_csv(path)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTORE_")}
    environ.update({"DATABASE_URL": database_url, "COLUMNS": "200", "NO_COLOR": "1"})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "profilestore", "import-csv", str(path), "--token", project["token"]],
        capture_output=True,
        env=environ,
        timeout=850,
    )
    seconds = time.monotonic() - started
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    print(f"import-csv: {ROWS:,} rows in {seconds:.1f} s ({ROWS / seconds:,.0f} rows/s)")

    with psycopg.connect(database_url, autocommit=True) as conn:
        job = conn.execute(
            "SELECT state, summary FROM import_jobs WHERE project_id = %s ORDER BY id DESC LIMIT 1",
            (project["id"],),
        ).fetchone()
        assert job is not None
        state, summary = job
        assert state == "done"
        assert {k: summary[k] for k in ("rows", "created", "updated", "unchanged", "skipped")} == {
            "rows": ROWS,
            "created": ROWS,
            "updated": 0,
            "unchanged": 0,
            "skipped": 0,
        }
        assert summary["warnings_by_kind"] == {}
        assert {c["column"]: (c["property"], c["type"]) for c in summary["columns"]} == {
            "Email": ("$email", "string"),
            "plan": ("plan", "string"),
            "logins": ("logins", "integer"),
            "revenue": ("revenue", "decimal"),
            "Created": ("$created", "datetime"),
        }

        count = conn.execute("SELECT count(*) FROM profiles WHERE project_id = %s", (project["id"],))
        assert count.fetchone() == (ROWS,)

        lines = [0, *random.Random(20261201).sample(range(1, ROWS - 1), SAMPLE - 2), ROWS - 1]
        stored = conn.execute(
            "SELECT distinct_id, properties::text, jsonb_typeof(properties->'logins'),"
            " jsonb_typeof(properties->'revenue') FROM profiles"
            " WHERE project_id = %s AND distinct_id = ANY(%s)",
            (project["id"], [cells(i)[0] for i in lines]),
        ).fetchall()
    by_id = {ident: (json.loads(text, parse_float=Decimal), types) for ident, text, *types in stored}
    assert len(by_id) == SAMPLE
    for i in lines:
        properties, types = by_id[cells(i)[0]]
        assert properties == expected(i), (i, properties)
        assert types == ["number", "number"], (i, types)
