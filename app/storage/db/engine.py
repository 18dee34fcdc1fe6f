"""Engine and session factory for one database URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sql_errors
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

CONNECT_TIMEOUT_S = 3
POOL_TIMEOUT_S = 5.0


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings rapport relies on for each backend."""
    if url.startswith("sqlite"):
        _create_private(make_url(url).database)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # Cascading deletes need foreign keys on; WAL lets readers run beside a writer.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # A database that is down or unreachable must fail requests in seconds (503), never hang
    # them: a bounded connect (libpq counts whole seconds, at least 2) and a bounded wait
    # for a pooled connection. A connect_timeout in the URL wins.
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args=connect_args,
        **kwargs,
    )


def _create_private(database: str | None) -> None:
    """Create a SQLite file readable by its owner only (it holds key hashes, names and
    vectors); SQLite gives its -wal and -shm files the same mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists() and path.parent.is_dir():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def shown_url(url: str) -> str:
    """A database URL fit for logs and messages: its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sql_errors.ArgumentError:
        return "<unparsable URL>"
