"""Alembic environment. The URL comes from the caller (``rapport db upgrade``) or settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from app.storage.db.engine import make_engine
from app.storage.db.models import Base

# An arbitrary constant: concurrent replicas starting at once upgrade one at a time.
MIGRATION_LOCK_ID = 7_265_712


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import Settings

    settings = Settings()  # the alembic command line, from a checkout
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if postgres:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
