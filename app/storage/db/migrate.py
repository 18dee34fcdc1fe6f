"""Run Alembic migrations from code (``rapport db upgrade``, ``rapport serve``).

The migrations ship inside the package (``app.storage.db.migrations``), so an installed wheel
migrates exactly as a checkout does; no alembic.ini is needed.
"""

from __future__ import annotations

import logging
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.storage.db.engine import make_engine

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "app.storage.db.migrations"


class SchemaNotCurrent(Exception):
    """The database's schema is not the one this version of rapport needs."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files(MIGRATIONS_PACKAGE)))
    # ConfigParser treats % as interpolation; URLs may carry %-escapes.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (``base``: empty).

    Safe to run from several processes at once on PostgreSQL (an advisory lock).
    """
    current = alembic_config(url)
    if revision == "base":
        command.downgrade(current, "base")
    else:
        command.upgrade(current, revision)
    logger.debug("database schema at %s", revision)


def check_current(url: str) -> None:
    """Return when the database at ``url`` has the newest schema; SchemaNotCurrent otherwise."""
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    if current != heads:
        found = ", ".join(sorted(current)) or "none (an empty database)"
        raise SchemaNotCurrent(
            f"the database schema is at revision {found}, this rapport needs "
            f"{', '.join(sorted(heads))}: run `rapport db upgrade`"
        )
