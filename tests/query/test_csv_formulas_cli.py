"""`profilestore export` guards spreadsheet formulas in CSV like the HTTP export, unless `--no-formula-guard`
(issue 10, finding 10)."""

from __future__ import annotations

import os
import subprocess
import sys

from test_csv_formulas import CELLS, EVIL_ID, Row, rows_of, world

CLI = [sys.executable, "-m", "profilestore"]
__all__ = ["world"]  # the fixture, shared


def test_cli_export_guards_unless_told_not_to(world: Row, database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    base = [*CLI, "export", "--token", world["token"], "--columns", "eq,negative"]
    for extra, cell in (([], "'" + CELLS["eq"][0]), (["--no-formula-guard"], CELLS["eq"][0])):
        done = subprocess.run(
            [*base, *extra], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        evil = next(r for r in rows_of(done.stdout) if r["$distinct_id"].endswith(EVIL_ID))
        assert (evil["eq"], evil["negative"]) == (cell, "-5")
