"""Run Alembic migrations from code (``rapport db upgrade``, ``rapport serve``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
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
