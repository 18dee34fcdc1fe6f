"""Concepts without photos: registered with none or left with none, found when named only."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx

from app.usecases.importer import import_concepts
from tests import factories
from tests.app.helpers import data_url, image_urls, matched_names, register, retrieve, stored, texts
from tests.conftest import LiveServer


def test_a_concept_registers_with_no_photo_and_is_found_by_name_only(
    server: LiveServer, api: httpx.Client
) -> None:
    anna = register(api, "alice", "<anna>", [], description="my sister, lives in Oslo")
    assert anna.status_code == 201, anna.text
    assert anna.json()["images"] == [] and anna.json()["description"] == "my sister, lives in Oslo"
    register(api, "alice", "<bo>", [factories.photo("dog", 0)])
    assert stored(server.services) == {"concepts": 2, "images": 1, "vectors": 1, "blobs": 1}

    assert matched_names(retrieve(api, "alice", text="where does <anna> live?")) == ["<anna>"]
    by_photo = retrieve(api, "alice", factories.photo("dog", 1))
    assert "<anna>" not in matched_names(by_photo) and "<bo>" in matched_names(by_photo)
    named_with_photo = retrieve(api, "alice", factories.photo("dog", 1), text="anna?")
    anna_match = [m for m in named_with_photo.json()["matches"] if m["concept"]["name"] == "<anna>"]
    assert [m["source"] for m in anna_match] == ["text"]


def test_deleting_the_last_photo_leaves_a_text_only_concept(
    server: LiveServer, api: httpx.Client
) -> None:
    bo = register(api, "alice", "<bo>", [factories.photo("dog", 0)]).json()
    base = f"/v1/users/alice/concepts/{bo['id']}"
    assert "<bo>" in matched_names(retrieve(api, "alice", factories.photo("dog", 0)))
    assert api.delete(f"{base}/images/{bo['images'][0]['id']}").status_code == 204
    left = api.get(base).json()
    assert left["images"] == [] and left["name"] == "<bo>"
    assert stored(server.services) == {"concepts": 1, "images": 0, "vectors": 0, "blobs": 0}
    assert matched_names(retrieve(api, "alice", factories.photo("dog", 0))) == []
    assert matched_names(retrieve(api, "alice", text="<bo>")) == ["<bo>"]
    # A photo added later makes it visible again.
    added = api.post(f"{base}/images", files=[("images", ("x.jpg", factories.photo("dog", 1)))])
    assert added.status_code == 201, added.text
    assert "<bo>" in matched_names(retrieve(api, "alice", factories.photo("dog", 1)))


def test_a_text_only_concept_goes_into_the_prompt_without_a_reference_photo(
    api: httpx.Client,
) -> None:
    register(api, "alice", "<anna>", [], description="my sister, lives in Oslo")
    query = factories.photo("dog", 3)
    response = api.post(
        "/v1/users/alice/chat", json={"question": "Is this <anna>'s dog?", "image": data_url(query)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(c["name"], c["source"]) for c in body["concepts"]] == [("<anna>", "text")]
    assert "Name: <anna>, Info: my sister, lives in Oslo" in texts(body["prompt"])
    assert len(image_urls(body["prompt"])) == 1  # the query photo only


def test_a_text_only_concept_survives_export_and_import(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    register(api, "alice", "<anna>", [], description="lives in Oslo", category="person")
    response = api.get("/v1/users/alice/export")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    (folder,) = {name.split("/")[0] for name in archive.namelist() if "/" in name}
    assert archive.namelist() == ["history.json", f"{folder}/concept.json"]
    archive.extractall(tmp_path / "unpacked")
    report = import_concepts(
        server.services, tenant_name="globex", external_user_id="alice2", root=tmp_path / "unpacked"
    )
    assert report.created == ["<anna>"] and not report.failures, report.lines()
    other = server.client(server.new_key("globex"))
    (copy,) = other.get("/v1/users/alice2/concepts").json()["items"]
    assert (copy["name"], copy["description"], copy["category"], copy["images"]) == (
        "<anna>",
        "lives in Oslo",
        "person",
        [],
    )
    assert json.loads(archive.read(f"{folder}/concept.json"))["name"] == "<anna>"
