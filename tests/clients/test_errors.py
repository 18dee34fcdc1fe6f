"""Typed errors, retries on 429 and timeouts, with both clients against real servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rapport_client as rc

from tests import factories
from tests.clients.conftest import Drive
from tests.clients.driver import Driver, Flavour, drive
from tests.conftest import LiveServer, make_settings


def test_each_problem_raises_its_own_class(run: Drive, live: LiveServer) -> None:
    photo = factories.photo("dog", 0)

    async def scenario(api: Driver) -> None:
        concept = await api.create_concept("alice", "<bo>", [photo])
        with pytest.raises(rc.ConceptNameTaken) as taken:
            await api.create_concept("alice", "<bo>", [photo])
        with pytest.raises(rc.InvalidRequest) as invalid:
            await api.update_concept("alice", concept.id, name="")
        with pytest.raises(rc.CorruptImage) as corrupt:
            await api.add_photos("alice", concept.id, [photo[: len(photo) // 3]])
        with pytest.raises(rc.UnsupportedImage) as unsupported:
            await api.add_photos("alice", concept.id, [b"plain text, not a photo"])
        with pytest.raises(rc.NotFound) as missing:
            await api.get_user("nobody")
        for raised, status in (
            (taken, 409),
            (invalid, 422),
            (corrupt, 422),
            (unsupported, 415),
            (missing, 404),
        ):
            error = raised.value
            assert isinstance(error, rc.APIError) and error.status == status
            assert error.title == type(error).title and error.detail
        assert [e["loc"] for e in invalid.value.body["errors"]] == [["body", "name"]]
        # None of the refused photos was stored.
        assert len((await api.get_concept("alice", concept.id)).images) == 1

    run(scenario)

    async def wrong_key(api: Driver) -> None:
        with pytest.raises(rc.Unauthorized) as refused:
            await api.get_user("alice")
        assert refused.value.status == 401

    run(wrong_key, key="rk_notakey_0000000000000000")


@pytest.fixture
def limited(start_server: Any, sqlite_url: str, tmp_path: Path) -> LiveServer:
    """A server that lets each app make 2 requests a second, after a burst of one."""
    settings = make_settings(sqlite_url, tmp_path / "data", rate_limit_rps=2, rate_limit_burst=1)
    server: LiveServer = start_server(settings)
    return server


# No backoff of its own to speak of: only by waiting for Retry-After can a retry succeed.
PATIENT = rc.Retries(attempts=3, backoff_s=0.001)


def test_reads_wait_for_retry_after_and_writes_are_retried_only_when_asked(
    limited: LiveServer, flavour: Flavour
) -> None:
    key = limited.new_key("acme")
    photo = factories.photo("dog", 0)

    async def impatient(api: Driver) -> None:
        await api.users_page()
        with pytest.raises(rc.RateLimited) as limited_error:
            await api.users_page()
        assert limited_error.value.status == 429 and limited_error.value.retry_after == 1.0

    async def reads(api: Driver) -> None:
        await api.users_page()
        assert (await api.users_page()).items == []

    async def writes(api: Driver) -> None:
        await api.users_page()
        with pytest.raises(rc.RateLimited):
            await api.create_concept("alice", "<bo>", [photo])

    async def asked(api: Driver) -> None:
        await api.users_page()
        assert (await api.create_concept("alice", "<bo>", [photo])).name == "<bo>"

    drive(flavour, limited.url, key, impatient, retries=rc.NO_RETRIES)
    drive(flavour, limited.url, key, reads, retries=PATIENT)
    drive(flavour, limited.url, key, writes, retries=PATIENT)
    retry_writes = rc.Retries(attempts=3, backoff_s=0.001, non_idempotent=True)
    drive(flavour, limited.url, key, asked, retries=retry_writes)


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_no_answer_in_time_is_a_timeout(silent_port: str, flavour: Flavour) -> None:
    async def scenario(api: Driver) -> None:
        with pytest.raises(rc.Timeout):
            await api.get_user("alice")

    drive(flavour, silent_port, "rk_x", scenario, timeout=0.2)


def test_a_server_that_is_not_there_is_a_transport_error(flavour: Flavour) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"

    async def scenario(api: Driver) -> None:
        with pytest.raises(rc.TransportError) as failed:
            await api.health()
        assert not isinstance(failed.value, rc.Timeout)

    drive(flavour, url, "rk_x", scenario, retries=rc.Retries(attempts=2, backoff_s=0.001))


def test_readiness_of_a_silent_server_is_a_timeout_not_an_httpx_error(
    silent_port: str, flavour: Flavour
) -> None:
    async def scenario(api: Driver) -> None:
        with pytest.raises(rc.Timeout):
            await api.ready()

    drive(flavour, silent_port, "rk_x", scenario, timeout=0.2)
