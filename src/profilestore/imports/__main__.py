"""`python -m profilestore.imports JOB_ID`: the process that runs one queued API import job (jobs.launch
starts it, with DATABASE_URL set).  Its own entry point, importing only what an import needs (not the web
app), so it starts faster than the `profilestore` command.  Exit status 0: done or interrupted."""

from __future__ import annotations

import os
import sys

from profilestore.imports.jobs import run_queued
from profilestore.settings import get_settings


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit() or not os.environ.get("DATABASE_URL"):
        print("usage: DATABASE_URL=... python -m profilestore.imports JOB_ID", file=sys.stderr)
        return 2
    state = run_queued(os.environ["DATABASE_URL"], get_settings(), int(argv[1]))
    return 0 if state in ("done", "interrupted") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
