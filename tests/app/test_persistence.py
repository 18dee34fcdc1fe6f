"""SQL and the photo folder are the truth: restarts and other processes see every write."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from tests import factories
from tests.app.helpers import matched_names, register_subject, retrieve, stored
from tests.conftest import LiveServer, make_settings

EXACT = 0.9999


def test_a_restarted_service_keeps_everything(start_server: object, settings: Settings) -> None:
    first: LiveServer = start_server(settings)  # type: ignore[operator]
    key = first.new_key("acme")
    client = first.client(key)
    dog = register_subject(client, "alice", "dog")
    register_subject(client, "alice", "cat")
    before = stored(first.services)
    first.stop()

    second: LiveServer = start_server(settings)  # type: ignore[operator]
    client = second.client(key)
    assert stored(second.services) == before
    assert matched_names(retrieve(client, "alice", factories.photo("dog", 2), min_score=EXACT)) == [
        "dog"
    ]
    photo = client.get(f"/v1/users/alice/concepts/{dog['id']}/images/{dog['images'][0]['id']}")
    assert photo.content == factories.photo("dog", 0)


def test_two_instances_on_one_database_see_each_others_writes(
    start_server: object, database_url: str, tmp_path: Path
) -> None:
    # Two services with separate caches (as two processes have), one database and photo folder.
    settings = make_settings(database_url, tmp_path / "data")
    a: LiveServer = start_server(settings)  # type: ignore[operator]
    b: LiveServer = start_server(settings)  # type: ignore[operator]
    key = a.new_key("acme")
    on_a, on_b = a.client(key), b.client(key)
    query = factories.photo("dog", 0)
    # Warm both caches first, so that staleness, not a cold load, is what is tested.
    assert retrieve(on_a, "alice", query).json()["matches"] == []
    assert retrieve(on_b, "alice", query).json()["matches"] == []

    dog = register_subject(on_a, "alice", "dog")
    assert matched_names(retrieve(on_b, "alice", query, min_score=EXACT)) == ["dog"]

    base = f"/v1/users/alice/concepts/{dog['id']}"
    extra = on_b.post(f"{base}/images", files=[("images", ("x.jpg", factories.photo("dog", 4)))])
    assert extra.status_code == 201
    assert matched_names(retrieve(on_a, "alice", factories.photo("dog", 4), min_score=EXACT)) == [
        "dog"
    ]
    assert on_b.patch(base, json={"name": "<bo>"}).status_code == 200
    assert matched_names(retrieve(on_a, "alice", None, text="hi bo")) == ["<bo>"]

    assert on_b.delete(base).status_code == 204
    assert retrieve(on_a, "alice", query).json()["matches"] == []
    register_subject(on_a, "alice", "cat")
    assert on_b.delete("/v1/users/alice").status_code == 204
    assert retrieve(on_a, "alice", factories.photo("cat", 0)).json()["matches"] == []
