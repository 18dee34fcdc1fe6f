"""Several server processes on one PostgreSQL: each sees the others' writes at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

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
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = postgres_env | {"TMPDIR": str(temp)}
    server = ServeProcess(env, tmp_path / "serve.log", "--workers", "2").wait_ready()
    try:
        # The workers share their metrics through a private directory of this run.
        assert [path.name[:16] for path in temp.iterdir()] == ["rapport-metrics-"]
        key = run_cli(["keys", "create", "--tenant", "acme"], postgres_env).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            register_subject(client, "alice", "dog")
        # A new connection for each request: the kernel spreads them over the workers.
        for _ in range(6):
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
                found = retrieve(client, "alice", factories.photo("dog", 0), min_score=EXACT)
                assert matched_names(found) == ["dog"]
        deadline = time.monotonic() + 10
        while _scrape(server.url)[0] != 6:
            assert time.monotonic() < deadline, f"{_scrape(server.url)[0]} retrievals counted"
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert list(temp.iterdir()) == []
    # Each worker logs as the parent does: its start-up line, at INFO.
    started = [line for line in server.log.read_text().splitlines() if " INFO app.main: " in line]
    assert sum("encoder rapport-test-tiny" in line for line in started) == 2, started


RETRIEVE_ROUTE = "/v1/users/{user_id}/retrieve"


def _counted(families: Iterable[Metric], route: str, method: str, status: str = "200") -> float:
    """The requests to ``route`` counted in a set of metric families."""
    return sum(
        sample.value
        for family in families
        if family.name == "rapport_http_requests"
        for sample in family.samples
        if sample.name == "rapport_http_requests_total"
        and sample.labels == {"route": route, "method": method, "status": status}
    )


def _scrape(url: str) -> tuple[float, float]:
    """Retrievals counted and user indexes cached, as one scrape answers them."""
    # A connection of its own: any worker may answer.
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    cached = next(f for f in families if f.name == "rapport_index_cache_entries")
    return _counted(families, RETRIEVE_ROUTE, "POST"), sum(s.value for s in cached.samples)


def _workers_that_counted(metrics_dir: Path, route: str, method: str) -> set[int]:
    """The processes whose own counter file (``counter_<pid>.db``) counts ``route``."""
    return {
        int(path.stem.removeprefix("counter_"))
        for path in metrics_dir.glob("counter_*.db")
        if _counted(MultiProcessCollector.merge([str(path)]), route, method) > 0
    }


def _live_gauge_pids(metrics_dir: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("gauge_livesum_*.db")}


def _leave_stale_counter(metrics_dir: Path) -> None:
    """What a killed earlier run leaves behind: 1000 retrievals of a process long gone."""
    stale = MmapedDict(str(metrics_dir / "counter_999999.db"))
    labels = {"route": RETRIEVE_ROUTE, "method": "POST", "status": "200"}
    key = mmap_key(
        "rapport_http_requests",
        "rapport_http_requests_total",
        list(labels),
        list(labels.values()),
        "HTTP requests by route template, method and status",
    )
    stale.write_value(key, 1000.0, 0.0)
    stale.close()


def test_metrics_of_two_workers_add_up_whichever_answers(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    _leave_stale_counter(metrics_dir)
    assert _workers_that_counted(metrics_dir, RETRIEVE_ROUTE, "POST") == {999999}
    env = postgres_env | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    server = ServeProcess(env, tmp_path / "serve.log", "--workers", "2").wait_ready()
    try:
        key = run_cli(["keys", "create", "--tenant", "acme"], env).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            register_subject(client, "alice", "dog")
        query = factories.photo("dog", 0)

        def one_retrieval(_: int) -> int:
            # A connection each, four at a time: the kernel hands them to both workers.
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
                return retrieve(client, "alice", query).status_code

        sent = 0
        with ThreadPoolExecutor(4) as pool:
            while len(_workers_that_counted(metrics_dir, RETRIEVE_ROUTE, "POST")) < 2:
                assert sent < 400, "every retrieval went to one worker"
                assert list(pool.map(one_retrieval, range(8))) == [200] * 8
                sent += 8
        # A request is counted just after its response went out: wait for the last ones.
        deadline = time.monotonic() + 10
        while _scrape(server.url) != (sent, 2):
            assert time.monotonic() < deadline, f"{_scrape(server.url)} != {(sent, 2)}"
        scrapes = 0
        while len(_workers_that_counted(metrics_dir, "/metrics", "GET")) < 2:
            assert scrapes < 200, "every scrape went to one worker"
            # Whichever worker answers, it counts the retrievals of both (and none of the
            # earlier run), and both workers' cached copy of alice's index.
            assert _scrape(server.url) == (sent, 2)
            scrapes += 1
        # A worker killed outright is replaced by uvicorn; the replacement drops the dead
        # worker's live gauges, and the run's counters keep what the dead worker counted.
        workers = _live_gauge_pids(metrics_dir)
        assert len(workers) == 2
        killed = workers.pop()
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while killed in _live_gauge_pids(metrics_dir) or len(_live_gauge_pids(metrics_dir)) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        assert _scrape(server.url) == (sent, 1)
    finally:
        server.stop()
    assert server.process.returncode == 0
    # Each worker marked itself dead on its way out: no live gauge of a gone process stays.
    assert list(metrics_dir.glob("gauge_live*.db")) == []
