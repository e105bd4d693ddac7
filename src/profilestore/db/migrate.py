"""Running Alembic from code: `profilestore migrate`, `serve` (which migrates first) and the tests.

The migrations and the SQL they run are package data (`profilestore/db/migrations/`, `profilestore/db/sql/`),
found through the import system, so an installed wheel migrates as well as a checkout does.  `alembic.ini` at
the repository root points Alembic's own command line at the same directory, for developers.
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config

SCRIPT_LOCATION = "profilestore.db:migrations"


def sql_file(name: str) -> str:
    """The text of one of the migrations' SQL files (`profilestore/db/sql/NAME`).  Each file belongs to the
    revision named in it: a later change gets a new file and a new revision, never an edit of these."""
    return (resources.files("profilestore.db") / "sql" / name).read_text(encoding="utf-8")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raises if the metadata and the migrated database differ (`alembic check`)."""
    command.check(alembic_config(database_url))
