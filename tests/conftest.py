"""Shared fixtures: the tiny encoder, migrated databases (SQLite and PostgreSQL), live servers."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.main import build_services, create_app
from app.security.keys import create_key
from app.services import Services
from app.settings import Settings
from app.storage.db.migrate import upgrade
from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from tests.s3_server import S3Server

TINY = EncoderConfig(model="rapport-test-tiny", pretrained="none", device="cpu")
POSTGRES_URL = os.environ.get(
    "RAPPORT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def _collect_after_each_test() -> Iterator[None]:
    """With RAPPORT_TEST_GC_EACH=1, a full collection after each test (after its other
    fixtures are torn down): an object that a test leaks, such as an unclosed socket held
    in a reference cycle, is then reported by that test rather than by a later one."""
    yield
    if os.environ.get("RAPPORT_TEST_GC_EACH"):
        gc.collect()


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return Encoder.from_config(TINY)


def _postgres_admin() -> object:
    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis (``RAPPORT_TEST_REDIS_URL``); skipped where there is none, except in CI."""
    import redis

    url = os.environ.get("RAPPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis at {url} is not reachable: {error}")
    return url


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight LLaVA saved as a checkpoint folder, loaded like a real one."""
    from tests.tiny_mllm import save_tiny_llava

    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "rapport.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    name = f"rapport_template_{uuid.uuid4().hex[:8]}"
    admin = _postgres_admin()
    try:
        with admin.connect() as connection:  # type: ignore[attr-defined]
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}")
    upgrade(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    yield name
    with admin.connect() as connection:  # type: ignore[attr-defined]
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()  # type: ignore[attr-defined]


@contextmanager
def fresh_postgres(template: str) -> Iterator[str]:
    """A new database copied from the migrated template; dropped afterwards."""
    name = f"rapport_test_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin()
    with admin.connect() as connection:  # type: ignore[attr-defined]
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:  # type: ignore[attr-defined]
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of each backend, private to one test."""
    if request.param == "sqlite":
        path = tmp_path / "rapport.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    with fresh_postgres(request.getfixturevalue("postgres_template")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A freshly migrated PostgreSQL database, for what only PostgreSQL does (several hosts)."""
    with fresh_postgres(postgres_template) as url:
        yield url


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "clip_model": TINY.model,
        "clip_pretrained": TINY.pretrained,
        "device": "cpu",
        # Random weights put every photo close to every other: tests choose thresholds.
        "min_score": 0.0,
        # Tests send many bad keys from one address on purpose; test_auth_gate limits them.
        "auth_failures_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class LiveServer:
    """A real uvicorn server on a loopback port, in a background thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(services=services), log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]})
        self._clients: list[httpx.Client] = []

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def client(self, key: str | None = None) -> httpx.Client:
        """A client of this server (closed when the server stops)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self._clients.append(client)
        return client

    def new_key(self, tenant: str) -> str:
        with self.services.sessions() as session:
            key = create_key(
                session=session, tenant_name=tenant, secret=self.services.settings.key_secret
            )
            session.commit()
        return key


@pytest.fixture
def start_server(encoder: Encoder) -> Iterator[object]:
    """Start servers on given settings; all are stopped at the end of the test."""
    servers: list[LiveServer] = []

    def start(settings: Settings, **overrides: Any) -> LiveServer:
        """``encoder=None`` in ``overrides`` builds the encoder the settings name."""
        built = build_services(settings, **({"encoder": encoder} | overrides))
        server = LiveServer(built).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        server.services.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The S3 API on a loopback port (moto's server), shared by the session's tests."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def blob_store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of the photo store: the local folder, or (param "s3") a fresh bucket on
    the loopback S3 server. Tests opt into both with ``BOTH_BLOB_STORES``."""
    if getattr(request, "param", "folder") == "folder":
        return {}
    s3: S3Server = request.getfixturevalue("s3_server")
    return s3.settings(s3.new_bucket())


# Runs a test on the local photo folder and on S3 (through the fixtures above).
BOTH_BLOB_STORES = pytest.mark.parametrize("blob_store", ["folder", "s3"], indirect=True)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, blob_store: dict[str, Any]) -> Settings:
    return make_settings(database_url, tmp_path / "data", **blob_store)


@pytest.fixture
def server(start_server: object, settings: Settings) -> LiveServer:
    return start_server(settings)  # type: ignore[operator,no-any-return]


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """A client of tenant 'acme', authenticated."""
    with server.client(server.new_key("acme")) as client:
        yield client


@pytest.fixture
def llava_server(
    start_server: Any, database_url: str, tmp_path: Path, tiny_llava_dir: Path
) -> LiveServer:
    """A served rapport whose generator is the tiny random-weight LLaVA, on the CPU."""
    settings = make_settings(
        database_url,
        tmp_path / "data",
        generator="transformers",
        generator_model=str(tiny_llava_dir),
        generator_device="cpu",
    )
    server: LiveServer = start_server(settings)
    return server
