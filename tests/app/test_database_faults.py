"""PostgreSQL down or unreachable: quick 503s, not ready, and recovery without a restart.

The server reaches PostgreSQL through a loopback TCP proxy that the test cuts
(connections closed, new ones refused, or accepted and never answered) and
restores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests import factories
from tests.app.helpers import assert_problem, matched_names, register_subject, retrieve
from tests.conftest import LiveServer, make_settings
from tests.tcp_proxy import TcpProxy, running_proxy

pytestmark = pytest.mark.postgres

EXACT = 0.9999
BOUND_S = 5.0  # the longest a request may take to fail while the database is away


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    with running_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied_server(
    proxy: TcpProxy, postgres_url: str, start_server: Any, tmp_path: Path
) -> LiveServer:
    # The engine's own connect timeout (none in the URL) is what keeps a hang short.
    url = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(url.render_as_string(hide_password=False), tmp_path / "data")
    return start_server(settings)  # type: ignore[no-any-return]


def timed(call: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.monotonic()
    response = call()
    assert time.monotonic() - started < BOUND_S, f"took {time.monotonic() - started:.1f} s"
    return response


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_requests_fail_fast_while_the_database_is_away_and_recover_after(
    proxied_server: LiveServer, proxy: TcpProxy, mode: Any
) -> None:
    client = proxied_server.client(proxied_server.new_key("acme"))
    register_subject(client, "alice", "dog")
    query = factories.photo("dog", 0)
    assert matched_names(retrieve(client, "alice", query, min_score=EXACT)) == ["dog"]

    proxy.cut(mode)
    calls: list[Callable[[], httpx.Response]] = [
        lambda: retrieve(client, "alice", query, min_score=EXACT),
    ]
    if mode == "refuse":  # each hanging call costs the connect timeout: one is enough
        calls += [
            lambda: client.get("/v1/users/alice/concepts"),
            lambda: client.post(
                "/v1/users/alice/concepts",
                data={"name": "cat"},
                files=[("images", ("cat.jpg", factories.photo("cat", 0), "image/jpeg"))],
            ),
        ]
    for call in calls:
        response = timed(call)
        problem = assert_problem(response, 503)
        assert problem["detail"] == "the database is unavailable; retry shortly"
        assert int(response.headers["retry-after"]) >= 1
    ready = timed(lambda: client.get("/readyz"))
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"

    proxy.restore()
    assert client.get("/readyz").status_code == 200
    # Acknowledged before the cut, still there; writes work again, without a restart.
    assert matched_names(retrieve(client, "alice", query, min_score=EXACT)) == ["dog"]
    register_subject(client, "alice", "cat")
    assert len(client.get("/v1/users/alice/concepts").json()["items"]) == 2


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_authentication_while_the_database_is_away_is_a_503_with_retry_after(
    proxy: TcpProxy, postgres_url: str, start_server: Any, tmp_path: Path, mode: Any
) -> None:
    url = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    # No key cache: every request asks the database who is calling (the auth gate).
    settings = make_settings(
        url.render_as_string(hide_password=False), tmp_path / "d", key_cache_s=0
    )
    server: LiveServer = start_server(settings)
    client = server.client(server.new_key("acme"))
    assert client.get("/v1/users/alice/concepts").status_code == 200
    proxy.cut(mode)
    response = timed(lambda: client.get("/v1/users/alice/concepts"))
    problem = assert_problem(response, 503)  # once a 500 with a traceback
    assert problem["detail"] == "the database is unavailable; retry shortly"
    assert int(response.headers["retry-after"]) >= 1
    proxy.restore()
    assert client.get("/v1/users/alice/concepts").status_code == 200
