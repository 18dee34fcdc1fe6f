"""Fixtures of the API tests that talk to an MLLM backend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.helpers import openai_settings
from tests.conftest import LiveServer
from tests.fake_openai_server import FakeOpenAI, running_fake_openai


@pytest.fixture
def backend() -> Iterator[FakeOpenAI]:
    with running_fake_openai(deltas=("Yes, ", "<bo>", " is on the beach.")) as server:
        yield server


@pytest.fixture
def openai_server(
    start_server: Any,
    database_url: str,
    tmp_path: Path,
    backend: FakeOpenAI,
    blob_store: dict[str, Any],
) -> LiveServer:
    settings = openai_settings(database_url, tmp_path, backend, **blob_store)
    return start_server(settings)  # type: ignore[no-any-return]


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh SQLite database, for tests where the backend plays no part."""
    path = tmp_path / "rapport.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"
