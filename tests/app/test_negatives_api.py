"""Corrections through the API: "that is not <bo>" stops the claim, at once, and only it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests import factories
from tests.app.helpers import matched_names, mobilenet_settings, register_subject, retrieve
from tests.conftest import LiveServer


def mark_not(client: httpx.Client, user: str, concept_id: str, *photos: bytes) -> httpx.Response:
    files = [("images", (f"not{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    return client.post(f"/v1/users/{user}/concepts/{concept_id}/negatives", files=files)


def test_a_correction_stops_the_claim_for_photos_like_it(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # A low fixed threshold (this test's own) makes dog claim every other dog's photo;
    # corrections hold whatever the threshold.
    settings = mobilenet_settings(database_url, tmp_path / "data")
    server: LiveServer = start_server(settings, encoder=None)
    client = server.client(server.new_key("acme"))
    dog = register_subject(client, "alice", "dog")
    register_subject(client, "alice", "backpack")
    stranger = [factories.photo("dog2", i) for i in range(factories.photo_count("dog2"))]
    assert "dog" in matched_names(retrieve(client, "alice", stranger[1], min_score=0.3))

    marked = mark_not(client, "alice", dog["id"], stranger[0])
    assert marked.status_code == 201, marked.text
    (negative,) = marked.json()["items"]
    # The very next retrieval sees it; so do the other photos of that dog.
    for photo in stranger[1:]:
        assert "dog" not in matched_names(retrieve(client, "alice", photo, min_score=0.3))
    # And by the default decision too; the user's own dog is still found.
    for photo in stranger[1:]:
        assert "dog" not in matched_names(retrieve(client, "alice", photo))
    own = factories.photo("dog", factories.photo_count("dog") - 1)
    assert matched_names(retrieve(client, "alice", own))[:1] == ["dog"]

    listed = client.get(f"/v1/users/alice/concepts/{dog['id']}/negatives")
    assert listed.status_code == 200 and listed.json()["items"] == [negative]
    read = client.get(f"/v1/users/alice/concepts/{dog['id']}/images/{negative['id']}")
    assert read.status_code == 200 and read.content == stranger[0]
    # A negative is not one of the concept's photos.
    concept = client.get(f"/v1/users/alice/concepts/{dog['id']}").json()
    assert negative["id"] not in {image["id"] for image in concept["images"]}

    removed = client.delete(f"/v1/users/alice/concepts/{dog['id']}/negatives/{negative['id']}")
    assert removed.status_code == 204
    assert "dog" in matched_names(retrieve(client, "alice", stranger[1], min_score=0.3))
    assert client.get(f"/v1/users/alice/concepts/{dog['id']}/negatives").json()["items"] == []


def test_corrections_refuse_the_concepts_own_photo_and_foreign_ids(api: httpx.Client) -> None:
    dog = register_subject(api, "alice", "dog")
    own = mark_not(api, "alice", dog["id"], factories.photo("dog", 1))
    assert own.status_code == 409, own.text
    assert "own photos" in own.json()["detail"]
    assert api.get(f"/v1/users/alice/concepts/{dog['id']}/negatives").json()["items"] == []
    # Another user's concept answers as a missing one, for every verb.
    other = factories.photo("cat", 0)
    missing = mark_not(api, "alice", "0193a1b2-0000-7000-8000-000000000000", other)
    foreign = mark_not(api, "bob", dog["id"], other)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["title"] == missing.json()["title"]
    assert api.get(f"/v1/users/bob/concepts/{dog['id']}/negatives").status_code == 404
    added = mark_not(api, "alice", dog["id"], other).json()["items"][0]
    gone = api.delete(f"/v1/users/bob/concepts/{dog['id']}/negatives/{added['id']}")
    assert gone.status_code == 404
    # A photo id is not a negative id.
    photo_id = dog["images"][0]["id"]
    assert api.delete(f"/v1/users/alice/concepts/{dog['id']}/negatives/{photo_id}").status_code == (
        404
    )
    assert len(api.get(f"/v1/users/alice/concepts/{dog['id']}").json()["images"]) == 3


def test_corrections_count_in_the_photo_quota_before_decoding(
    start_server: Any, settings: Any, tmp_path: Path
) -> None:
    # This test's own quota: two negatives per concept.
    server: LiveServer = start_server(settings.model_copy(update={"max_photos_per_concept": 3}))
    client = server.client(server.new_key("acme"))
    dog = register_subject(client, "alice", "dog")
    photos = [factories.photo("cat", i) for i in range(4)]
    assert mark_not(client, "alice", dog["id"], *photos[:3]).status_code == 201
    over = mark_not(client, "alice", dog["id"], photos[3])
    assert over.status_code == 409
    assert "at most 3" in over.json()["detail"]
    # Erasing the user erases the corrections with the rest.
    assert client.delete("/v1/users/alice").status_code == 204
    assert client.get(f"/v1/users/alice/concepts/{dog['id']}/negatives").status_code == 404


def test_corrections_are_exported_and_imported_back(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    import io
    import zipfile

    from app.usecases.importer import import_concepts

    dog = register_subject(api, "alice", "dog")
    not_dog = [factories.photo("cat", 0), factories.photo("dog2", 0)]
    assert mark_not(api, "alice", dog["id"], *not_dog).status_code == 201
    archive = zipfile.ZipFile(io.BytesIO(api.get("/v1/users/alice/export").content))
    folder = f"dog-{dog['id'][-8:]}"
    assert archive.read(f"{folder}/not/001.jpg") == not_dog[0]
    assert archive.read(f"{folder}/not/002.jpg") == not_dog[1]
    # The corrections are not photos of the concept in the export either.
    assert sorted(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".jpg")) == [
        f"{folder}/00{i}.jpg" for i in (1, 2, 3)
    ]
    archive.extractall(tmp_path / "unpacked")
    report = import_concepts(
        server.services, tenant_name="acme", external_user_id="alice2", root=tmp_path / "unpacked"
    )
    assert report.created == ["dog"] and not report.failures
    (copy,) = api.get("/v1/users/alice2/concepts").json()["items"]
    assert len(copy["images"]) == 3
    negatives = api.get(f"/v1/users/alice2/concepts/{copy['id']}/negatives").json()["items"]
    copied = [
        api.get(f"/v1/users/alice2/concepts/{copy['id']}/images/{n['id']}").content
        for n in negatives
    ]
    assert copied == not_dog
