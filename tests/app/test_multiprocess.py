"""Several server processes on one PostgreSQL: each sees the others' writes at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import factories
from tests.app.helpers import matched_names, register_subject, retrieve
from tests.app.processes import ServeProcess, rapport_env, run_cli

pytestmark = pytest.mark.postgres

EXACT = 0.9999


@pytest.fixture
def postgres_env(postgres_url: str, tmp_path: Path) -> dict[str, str]:
    return rapport_env(tmp_path / "data", RAPPORT_DATABASE_URL=postgres_url)


@pytest.fixture
def two_processes(postgres_env: dict[str, str], tmp_path: Path) -> Iterator[list[ServeProcess]]:
    servers = [ServeProcess(postgres_env, tmp_path / f"serve{n}.log") for n in range(2)]
    try:
        yield [server.wait_ready() for server in servers]
    finally:
        for server in servers:
            server.stop()


def test_a_write_in_one_process_is_read_by_another_on_the_next_request(
    two_processes: list[ServeProcess], postgres_env: dict[str, str]
) -> None:
    key = run_cli(["keys", "create", "--tenant", "acme"], postgres_env).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    a, b = (httpx.Client(base_url=s.url, headers=headers, timeout=30) for s in two_processes)
    with a, b:
        query = factories.photo("dog", 0)
        # Both processes cache alice's (empty) index first.
        assert retrieve(a, "alice", query).json()["matches"] == []
        assert retrieve(b, "alice", query).json()["matches"] == []
        dog = register_subject(a, "alice", "dog")
        assert matched_names(retrieve(b, "alice", query, min_score=EXACT)) == ["dog"]
        # b now caches alice's concept summaries too; a rename through a reaches b.
        url = f"/v1/users/alice/concepts/{dog['id']}"
        assert a.patch(url, json={"name": "bo", "description": "a corgi"}).status_code == 200
        found = retrieve(b, "alice", query, min_score=EXACT).json()["matches"]
        assert [(m["concept"]["name"], m["concept"]["description"]) for m in found] == [
            ("bo", "a corgi")
        ]
        assert b.delete(f"/v1/users/alice/concepts/{dog['id']}").status_code == 204
        assert retrieve(a, "alice", query).json()["matches"] == []
        # A key revoked by another process stops working in every process within
        # RAPPORT_KEY_CACHE_S (1 s by default).
        assert run_cli(["keys", "revoke", key], postgres_env).returncode == 0
        revoked_at = time.monotonic()
        for client in (a, b):
            while client.get("/v1/users/alice/concepts").status_code != 401:
                assert time.monotonic() - revoked_at < 1.0 + 2.0  # the cache time, plus slack
        assert time.monotonic() - revoked_at < 3.0


def test_serve_with_several_workers(postgres_env: dict[str, str], tmp_path: Path) -> None:
    server = ServeProcess(postgres_env, tmp_path / "serve.log", "--workers", "2").wait_ready()
    try:
        key = run_cli(["keys", "create", "--tenant", "acme"], postgres_env).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            register_subject(client, "alice", "dog")
        # A new connection for each request: the kernel spreads them over the workers.
        for _ in range(6):
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
                found = retrieve(client, "alice", factories.photo("dog", 0), min_score=EXACT)
                assert matched_names(found) == ["dog"]
    finally:
        server.stop()
    assert server.process.returncode == 0
