"""A served rapport for the client's tests: SQLite, the tiny encoder, and an MLLM backend
(a real OpenAI-compatible server on loopback)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.app.helpers import openai_settings
from tests.clients.driver import FLAVOURS, Driver, Flavour, drive
from tests.conftest import LiveServer
from tests.fake_openai_server import FakeOpenAI, running_fake_openai

T = TypeVar("T")
REPLY = ("Yes, ", "<bo>", " is on the beach.")


class Drive(Protocol):
    def __call__(self, scenario: Any, *, key: str | None = None, **options: Any) -> Any: ...


@pytest.fixture
def backend() -> Iterator[FakeOpenAI]:
    with running_fake_openai(deltas=REPLY) as server:
        yield server


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "rapport.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def live(start_server: Any, sqlite_url: str, tmp_path: Path, backend: FakeOpenAI) -> LiveServer:
    server: LiveServer = start_server(openai_settings(sqlite_url, tmp_path, backend))
    return server


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Each test runs once with the sync client and once with the async one."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def run(live: LiveServer, flavour: Flavour) -> Drive:
    """Run a scenario (an async function of a Driver) against ``live`` with this flavour's
    client, on a key of tenant 'acme' unless another key is given."""
    default_key = live.new_key("acme")

    def run_scenario(scenario: Any, *, key: str | None = None, **options: Any) -> Any:
        return drive(flavour, live.url, key or default_key, scenario, **options)

    return run_scenario


__all__ = ["Drive", "Driver"]
