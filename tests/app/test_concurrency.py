"""The event loop never blocks; overload is refused, not queued forever; metrics tell the story."""

from __future__ import annotations

import gc
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from retrieval.encoder import Encoder
from tests import factories
from tests.app.helpers import (
    assert_problem,
    openai_settings,
    register,
    register_subject,
    retrieve,
    stored,
)
from tests.conftest import LiveServer, make_settings
from tests.fake_openai_server import running_fake_openai
from tests.retrieval.test_batching import GatedEncoder

TENANTS = ("acme", "globex", "initech")


def test_health_answers_quickly_while_heavy_registrations_run(server: LiveServer) -> None:
    key = server.new_key("acme")
    photos = [factories.photo(s, i) for s in ("dog", "cat", "backpack") for i in range(3)]

    def register_many(worker: int) -> list[int]:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            return [
                register(client, f"user{worker}", f"thing{n}", photos[n % 3 * 3 :][:3]).status_code
                for n in range(4)
            ]

    latencies = []
    # The server shares this process with the whole test session (~700k objects): one
    # full garbage collection of that heap stops every thread for 0.4-0.6 s, which says
    # nothing of the service's event loop. Collections wait until the measurement ends.
    gc.disable()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool, server.client() as health:
            futures = [pool.submit(register_many, worker) for worker in range(8)]
            while not all(f.done() for f in futures):
                started = time.perf_counter()
                assert health.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
            statuses = [status for f in futures for status in f.result()]
    finally:
        gc.enable()
    assert statuses == [201] * 32
    assert len(latencies) >= 5, "the registrations ended before health could be measured"
    assert max(latencies) < 0.5, sorted(latencies)[-5:]


def test_a_full_encoder_queue_answers_429_and_stores_nothing(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # A queue shorter than one request is refused at start-up; model_copy (which does not
    # validate) stands in for a queue that concurrent requests have filled.
    settings = make_settings(database_url, tmp_path / "data")
    server: LiveServer = start_server(settings.model_copy(update={"encode_queue_size": 2}))
    client = server.client(server.new_key("acme"))
    before = stored(server.services)
    response = register(client, "alice", "bo", [factories.photo("dog", i) for i in range(3)])
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "1"
    assert stored(server.services) == before
    assert register(client, "alice", "bo", [factories.photo("dog", 0)]).status_code == 201


def test_an_app_over_its_share_of_the_queue_answers_429_while_another_is_served(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # As above, model_copy stands in for a share that the app's own requests have filled.
    settings = make_settings(database_url, tmp_path / "data")
    server: LiveServer = start_server(settings.model_copy(update={"encode_queue_per_app": 2}))
    acme = server.client(server.new_key("acme"))
    response = register(acme, "alice", "bo", [factories.photo("dog", i) for i in range(3)])
    assert_problem(response, 429)
    assert "this app" in response.json()["detail"]
    globex = server.client(server.new_key("globex"))
    assert register(globex, "alice", "bo", [factories.photo("dog", 0)]).status_code == 201


def test_each_app_has_its_own_share_of_the_encoder_queue_through_http(
    start_server: Any, database_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    gated = GatedEncoder(encoder)  # holds every forward pass until the gate opens
    settings = make_settings(database_url, tmp_path / "data")
    gated.gate.set()  # the decision rule's background photos pass at start-up
    server: LiveServer = start_server(
        settings.model_copy(update={"encode_queue_per_app": 2}), encoder=gated
    )
    gated.gate.clear()
    gated.entered.clear()
    queue = server.services.encoder
    acme, globex, initech = (server.client(server.new_key(name)) for name in TENANTS)

    def queued(depth: int) -> bool:
        with queue._ready:
            return queue._ready.wait_for(lambda: queue.queue_depth == depth, timeout=30)

    def later(client: httpx.Client, photos: int) -> Future[httpx.Response]:
        return pool.submit(register, client, "alice", "bo", [factories.photo("dog", 0)] * photos)

    with ThreadPoolExecutor(3) as pool:
        try:
            busy = later(initech, 1)  # the pass the worker holds
            assert gated.entered.wait(timeout=30)
            waiting = later(acme, 2)  # acme's whole share, waiting
            assert queued(2)
            assert_problem(register(acme, "bob", "bo", [factories.photo("dog", 1)]), 429)
            # Another app's photo is still taken: the queue tells the apps apart.
            other = later(globex, 1)
            assert queued(3)
        finally:
            gated.gate.set()
        assert [f.result(timeout=30).status_code for f in (busy, waiting, other)] == [201] * 3


def test_an_app_with_its_limit_of_requests_in_progress_gets_429_while_others_are_served(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    with running_fake_openai() as backend:
        backend.behaviour = "hang"  # the generator holds the first request until released
        settings = openai_settings(
            database_url, tmp_path / "data", backend, max_requests_in_flight_per_app=1
        )
        server: LiveServer = start_server(settings)
        acme = server.client(server.new_key("acme"))
        globex = server.client(server.new_key("globex"))
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(acme.post, "/v1/users/alice/chat", json={"question": "hi"})
            assert backend.received.wait(timeout=30)
            refused = acme.get("/v1/users/alice/concepts")
            assert_problem(refused, 429)
            assert "in progress" in refused.json()["detail"]
            assert globex.get("/v1/users/alice/concepts").status_code == 200
            backend.release.set()
            assert held.result(timeout=30).status_code in (502, 504)
        # The held request's place is given back when it ends, whatever its answer.
        assert acme.get("/v1/users/alice/concepts").status_code == 200


def test_two_apps_holding_requests_leave_pool_threads_for_a_third(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # Before: each app could hold half of the pool (3 of 6 threads here), so two apps with
    # slow requests held every thread and a third app's one-row GET waited for one of them.
    with running_fake_openai() as backend:
        backend.behaviour = "hang"  # each chat holds a pool thread until released
        settings = openai_settings(database_url, tmp_path / "data", backend, threadpool_size=6)
        server: LiveServer = start_server(settings)
        acme = server.client(server.new_key("acme"))
        globex = server.client(server.new_key("globex"))
        initech = server.client(server.new_key("initech"))
        with ThreadPoolExecutor(6) as pool:
            held = [
                pool.submit(client.post, "/v1/users/alice/chat", json={"question": "hi"})
                for client in (acme, acme, acme, globex, globex, globex)
            ]
            deadline = time.monotonic() + 30
            while len(backend.requests) + sum(f.done() for f in held) < len(held):
                assert time.monotonic() < deadline, "the chats did not all arrive"
                time.sleep(0.01)
            answer = initech.get("/v1/users/alice/concepts", timeout=10)
            backend.release.set()
            statuses = sorted(f.result(timeout=60).status_code for f in held)
        assert answer.status_code == 200
        # The apps' shares shrank as both got busy (2 each of 6 threads, or 3 for the first
        # to arrive): the requests beyond them were refused at once.
        assert 4 <= len(backend.requests) <= 5
        assert statuses.count(429) == len(held) - len(backend.requests)


def test_metrics(server: LiveServer, api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    # Queries that find the concept (random weights: the decision rule finds none).
    retrieve(api, "alice", factories.photo("dog", 1), min_score=0)
    retrieve(api, "alice", factories.photo("dog", 2), min_score=0)
    api.get("/v1/users/alice/concepts/missing")
    for path in ("/docs", "/openapi.json", "/no/such/path"):
        server.client().get(path)
    text = server.client().get("/metrics").text

    def value(name: str, **labels: str) -> float:
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = rf"^{re.escape(name)}{re.escape('{' + selector + '}') if labels else ''} (\S+)$"
        match = re.search(pattern, text, re.MULTILINE)
        assert match, (name, labels)
        return float(match.group(1))

    route = "/v1/users/{user_id}/concepts"
    assert value("rapport_http_requests_total", method="POST", route=route, status="201") == 1
    retrieve_route = "/v1/users/{user_id}/retrieve"
    assert (
        value("rapport_http_requests_total", method="POST", route=retrieve_route, status="200") == 2
    )
    assert (
        value(
            "rapport_http_requests_total", method="GET", route=route + "/{concept_id}", status="404"
        )
        == 1
    )
    assert (
        value("rapport_http_request_duration_seconds_count", method="POST", route=retrieve_route)
        == 2
    )
    # FastAPI's own pages count under their routes; only a path no route takes is "unmatched".
    for route in ("/docs", "/openapi.json"):
        assert value("rapport_http_requests_total", method="GET", route=route, status="200") == 1
    assert value("rapport_http_requests_total", method="GET", route="unmatched", status="404") == 1
    # 3 registered photos, 2 queries, and the decision rule's background, once at start-up.
    background = len(server.services.background.get())
    assert value("rapport_encoder_batch_size_sum") == 5 + background
    assert value("rapport_encoder_batch_seconds_count") >= 1
    assert value("rapport_encoder_queue_depth") == 0
    assert value("rapport_index_cache_entries") == 1
    # Loaded once (by the first query), then served from memory (the second).
    assert value("rapport_index_cache_misses_total") == 1
    assert value("rapport_index_cache_hits_total") == 1
    # The concept summaries come from SQL once, then from memory.
    assert value("rapport_concept_cache_entries") == 1
    assert value("rapport_concept_cache_misses_total") == 1
    assert value("rapport_concept_cache_hits_total") == 1
    assert "alice" not in text and "missing" not in text


def test_index_cache_memory_is_bounded_and_reloads_from_sql(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    dim = 64
    per_user = 3 * (dim * 4 + 8 + 120 + 48)  # three vectors each, as UserIndex.nbytes counts
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", index_cache_bytes=2 * per_user)
    )
    client = server.client(server.new_key("acme"))
    subjects = ["dog", "cat", "backpack", "can", "candle"]
    for n, subject in enumerate(subjects):
        register_subject(client, f"user{n}", subject)
    cache = server.services.user_index_cache
    # (A registration loads its user's index too: its look-alike check searches it.)
    before = cache.stats().misses
    for _ in range(2):
        for n, subject in enumerate(subjects):
            found = retrieve(client, f"user{n}", factories.photo(subject, 1), min_score=0.9999)
            assert [m["concept"]["name"] for m in found.json()["matches"]] == [subject]
            stats = cache.stats()
            assert stats.nbytes <= 2 * per_user and stats.entries <= 2
    # More users than fit: every retrieval after the first round reloaded its index.
    assert cache.stats().misses - before == 10
