"""Logging levels: the chatty libraries stay at warnings unless the operator asks for debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from app import logs


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("faiss", "alembic", "")}
    filters = {handler: list(handler.filters) for handler in root.handlers}
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name or None).setLevel(level)
        for handler, kept in filters.items():
            handler.filters = kept


def test_debug_reaches_the_chatty_loggers_and_info_keeps_them_quiet(restored: None) -> None:
    logs.configure("info")
    assert logging.getLogger("faiss").level == logging.WARNING
    logs.configure("debug")
    assert logging.getLogger("faiss").level == logging.DEBUG
    assert logging.getLogger("alembic").level == logging.DEBUG


def test_an_unknown_level_is_refused(restored: None) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure("loud")
