from __future__ import annotations

import logging

import httpx
import pytest

from tests import factories
from tests.app.helpers import assert_problem, register, register_subject, stored
from tests.conftest import BOTH_BLOB_STORES, LiveServer


def test_register_returns_the_concept_with_its_photos(api: httpx.Client) -> None:
    photos = [factories.photo("dog", i) for i in range(3)]
    response = register(api, "alice", "<bo>", photos, description="my corgi", category="dog")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "<bo>"
    assert body["description"] == "my corgi"
    assert body["category"] == "dog"
    assert [(i["width"], i["height"], i["media_type"]) for i in body["images"]] == [
        (512, 512, "image/jpeg")
    ] * 3
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    fetched = api.get(f"/v1/users/alice/concepts/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_duplicate_name_for_the_same_user_is_a_conflict(api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    same_name_other_form = register(api, "alice", "<DOG>", [factories.photo("cat", 0)])
    assert_problem(same_name_other_form, 409)
    # Another user may use the name.
    assert register(api, "bob", "dog", [factories.photo("cat", 0)]).status_code == 201


def test_list_is_paginated_oldest_first(api: httpx.Client) -> None:
    names = [f"thing{i}" for i in range(5)]
    for name in names:
        assert register(api, "alice", name, [factories.solid_png()]).status_code == 201
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/users/alice/concepts", params=params).json()
        assert len(page["items"]) <= 2
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names


def test_patch_renames_and_refuses_a_taken_name(api: httpx.Client) -> None:
    bo = register_subject(api, "alice", "dog")
    register_subject(api, "alice", "cat")
    url = f"/v1/users/alice/concepts/{bo['id']}"
    renamed = api.patch(url, json={"name": "<bo>", "description": "a corgi"})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["description"]) == ("<bo>", "a corgi")
    assert renamed.json()["category"] == "dog"
    assert_problem(api.patch(url, json={"name": "Cat"}), 409)
    assert_problem(api.patch(url, json={"unknown": 1}), 422)
    assert api.get(url).json()["name"] == "<bo>"


@BOTH_BLOB_STORES
@pytest.mark.parametrize("user", ["alice", "zoë-渡辺 🐕"])
def test_photos_can_be_added_read_and_deleted_down_to_none(
    api: httpx.Client, server: LiveServer, user: str
) -> None:
    concept = register(api, user, "bo", [factories.photo("dog", 0)]).json()
    base = f"/v1/users/{user}/concepts/{concept['id']}"
    added = api.post(f"{base}/images", files=[("images", ("x.jpg", factories.photo("dog", 1)))])
    assert added.status_code == 201, added.text
    images = added.json()["images"]
    assert len(images) == 2
    photo = api.get(f"{base}/images/{images[1]['id']}")
    assert photo.status_code == 200
    assert photo.content == factories.photo("dog", 1)
    assert photo.headers["content-type"] == "image/jpeg"
    assert api.delete(f"{base}/images/{images[1]['id']}").status_code == 204
    assert_problem(api.get(f"{base}/images/{images[1]['id']}"), 404)
    assert len(api.get(base).json()["images"]) == 1
    assert stored(server.services)["blobs"] == 1  # the deleted photo's blob went with it
    assert api.delete(f"{base}/images/{images[0]['id']}").status_code == 204
    assert api.get(base).json()["images"] == []  # a text-only concept now
    assert stored(server.services)["blobs"] == 0


@BOTH_BLOB_STORES
def test_a_photo_whose_file_is_gone_answers_a_clear_500(
    api: httpx.Client, server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    concept = register(api, "alice", "bo", [factories.photo("dog", 0)]).json()
    url = f"/v1/users/alice/concepts/{concept['id']}/images/{concept['images'][0]['id']}"
    blobs = server.services.blobs
    for file in list(blobs.files()):
        blobs.remove_file(file.key)
    with caplog.at_level(logging.ERROR, logger="app.usecases.photos"):
        body = assert_problem(api.get(url), 500)
    assert body["title"] == "Photo file missing" and "rapport doctor" in body["detail"]
    assert blobs.description.split()[-1] not in body["detail"]  # no server paths or URLs
    assert any("rapport doctor" in record.getMessage() for record in caplog.records)


def test_delete_concept(api: httpx.Client) -> None:
    concept = register_subject(api, "alice", "dog")
    url = f"/v1/users/alice/concepts/{concept['id']}"
    assert api.delete(url).status_code == 204
    assert_problem(api.get(url), 404)
    assert_problem(api.delete(url), 404)
    assert api.get("/v1/users/alice/concepts").json()["items"] == []


def test_validation_errors_are_problem_documents(api: httpx.Client) -> None:
    body = assert_problem(api.post("/v1/users/alice/concepts", data={"description": "x"}), 422)
    assert "name" in body["detail"]
    assert_problem(register(api, "alice", "   ", [factories.solid_png()]), 422)
    assert_problem(register(api, "alice", "n" * 101, [factories.solid_png()]), 422)
    assert_problem(api.get("/v1/users/alice/concepts", params={"limit": 0}), 422)


@BOTH_BLOB_STORES
def test_health_and_readiness(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["encoder"] == "rapport-test-tiny:none"
        assert ready.json()["photo_store"] == "ok"
        # Probes that use HEAD get the status without a body.
        for path in ("/healthz", "/readyz"):
            head = client.head(path)
            assert (head.status_code, head.content) == (200, b"")
        assert client.get("/openapi.json").json()["info"]["title"] == "rapport"
