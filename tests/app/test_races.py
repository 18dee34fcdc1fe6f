"""Writes racing each other or a read never answer 500 (on PostgreSQL, whose writers overlap)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import factories
from tests.app.helpers import register
from tests.conftest import LiveServer


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_creates_racing_an_erase_of_their_user_never_answer_500(server: LiveServer) -> None:
    photo = factories.solid_png(8, 8)
    statuses: Counter[int] = Counter()
    with server.client(server.new_key("acme")) as client, ThreadPoolExecutor(6) as pool:
        for round_ in range(25):
            assert register(client, "racer", f"<seed{round_}>", [photo]).status_code == 201
            futures = [
                pool.submit(register, client, "racer", f"<a{round_}>", [photo]),
                pool.submit(client.delete, "/v1/users/racer"),
                pool.submit(register, client, "racer", f"<b{round_}>", [photo]),
            ]
            statuses.update(f.result().status_code for f in futures)
    assert set(statuses) <= {201, 204, 429}, statuses
    assert statuses[204] == 25


def test_a_photo_read_racing_its_deletion_is_404_not_500(server: LiveServer) -> None:
    statuses: Counter[int] = Counter()
    with server.client(server.new_key("acme")) as client, ThreadPoolExecutor(6) as pool:
        for round_ in range(15):
            concept = register(client, "alice", f"<c{round_}>", [factories.photo("dog", 0)]).json()
            url = f"/v1/users/alice/concepts/{concept['id']}/images/{concept['images'][0]['id']}"
            reads = [pool.submit(client.get, url) for _ in range(5)]
            deleted = pool.submit(client.delete, f"/v1/users/alice/concepts/{concept['id']}")
            reads += [pool.submit(client.get, url) for _ in range(5)]
            assert deleted.result().status_code == 204
            statuses.update(r.result().status_code for r in reads)
    assert set(statuses) <= {200, 404}, statuses
