from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.storage.db.migrate import upgrade
from app.storage.db.models import Base


def test_migrations_create_exactly_the_models_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_and_upgrade_again(database_url: str) -> None:
    upgrade(database_url, "base")
    engine = create_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)
    assert {"tenants", "api_keys", "users", "concepts", "images", "embeddings"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()
