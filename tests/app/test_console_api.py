"""The API the console uses: users with counts, thumbnails, look-alike flags, the playground
(a dry run of /chat) and the user export that `rapport import` reads back."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from app.usecases.importer import import_concepts
from tests import factories
from tests.app.helpers import assert_problem, register, register_subject
from tests.app.test_limits import photos_encoded
from tests.conftest import LiveServer, make_settings


def test_users_are_listed_by_id_with_their_counts_page_by_page(
    server: LiveServer, api: httpx.Client
) -> None:
    for user in ("bob", "alice", "al_x", "carol"):
        register_subject(api, user, "dog", count=2 if user == "alice" else 1)
    register_subject(api, "alice", "cat", count=1)
    other = server.client(server.new_key("globex"))
    register_subject(other, "zed", "dog", count=1)

    first = api.get("/v1/users", params={"limit": 2}).json()
    assert [u["user_id"] for u in first["items"]] == ["al_x", "alice"]
    alice = first["items"][1]
    photo_bytes = len(factories.photo("dog", 0)) + len(factories.photo("dog", 1))
    photo_bytes += len(factories.photo("cat", 0))
    assert (alice["concepts"], alice["photos"], alice["bytes"]) == (2, 3, photo_bytes)
    assert alice["changed_at"] >= alice["created_at"]
    rest = api.get("/v1/users", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [u["user_id"] for u in rest["items"]] == ["bob", "carol"]
    assert rest["next_cursor"] is None
    # "_" in a prefix is a character, not a wildcard; another tenant's users never show.
    assert [u["user_id"] for u in api.get("/v1/users?prefix=al_").json()["items"]] == ["al_x"]
    assert [u["user_id"] for u in api.get("/v1/users?prefix=z").json()["items"]] == []
    assert api.get("/v1/users/alice").json()["photos"] == 3
    assert_problem(api.get("/v1/users/zed"), 404)

    assert api.delete("/v1/users/bob").status_code == 204
    assert "bob" not in [u["user_id"] for u in api.get("/v1/users").json()["items"]]


def test_a_thumbnail_is_downscaled_upright_cached_and_never_larger_than_the_photo(
    server: LiveServer, api: httpx.Client
) -> None:
    small = factories.encode(factories.gradient(40, 30), "PNG")
    big = factories.photo("dog", 0)
    concept = register(api, "alice", "bo", [big, small]).json()
    big_id, small_id = (image["id"] for image in concept["images"])
    url = f"/v1/users/alice/concepts/{concept['id']}/images"

    response = api.get(f"{url}/{big_id}", params={"size": 128})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumbnail = Image.open(io.BytesIO(response.content))
    assert max(thumbnail.size) == 128 and len(response.content) < len(big)
    original = Image.open(io.BytesIO(big))
    assert abs(thumbnail.width / thumbnail.height - original.width / original.height) < 0.02
    etag = response.headers["etag"]
    asked = server.services.thumbnails.hits, server.services.thumbnails.misses
    assert api.get(f"{url}/{big_id}?size=128", headers={"If-None-Match": etag}).status_code == 304
    # A 304 reads and makes nothing: the thumbnail cache is not even asked.
    assert (server.services.thumbnails.hits, server.services.thumbnails.misses) == asked
    assert api.get(f"{url}/{big_id}", params={"size": 128}).content == response.content
    assert server.services.thumbnails.hits >= 1

    # A photo already within the size comes back as it is (bytes and type).
    same = api.get(f"{url}/{small_id}", params={"size": 256})
    assert same.content == small and same.headers["content-type"] == "image/png"
    assert_problem(api.get(f"{url}/{big_id}", params={"size": 4}), 422)
    stranger = server.client(server.new_key("globex"))
    assert_problem(stranger.get(f"{url}/{big_id}", params={"size": 128}), 404)


def test_thumbnail_sizes_round_up_to_six_so_walking_every_size_makes_six(
    server: LiveServer, api: httpx.Client
) -> None:
    concept = register(api, "alice", "bo", [factories.photo("dog", 0)]).json()
    url = f"/v1/users/alice/concepts/{concept['id']}/images/{concept['images'][0]['id']}"
    made = server.services.thumbnails.misses  # each miss decodes the photo once

    asked = api.get(url, params={"size": 65})
    assert max(Image.open(io.BytesIO(asked.content)).size) == 128
    step = api.get(url, params={"size": 128})
    assert step.content == asked.content and step.headers["etag"] == asked.headers["etag"]
    assert server.services.thumbnails.misses == made + 1
    # One size's ETag answers 304 for every size of its step, before the photo is read.
    etag = {"If-None-Match": asked.headers["etag"]}
    assert api.get(url, params={"size": 100}, headers=etag).status_code == 304
    assert api.get(url, params={"size": 129}, headers=etag).status_code == 200

    # A client walking the sizes, every step's first and last included, gets six thumbnails.
    sizes = sorted({*range(16, 2049, 16), *(side + 1 for side in (64, 128, 256, 512, 1024))})
    etags = {api.get(url, params={"size": size}).headers["etag"] for size in sizes}
    assert len(etags) == 6
    assert server.services.thumbnails.misses == made + 6


def test_a_concept_that_looks_like_another_is_flagged_with_the_score(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # Random weights make every photo alike; only identical photos score 1.0.
    server = start_server(
        make_settings(database_url, tmp_path / "data", looks_like_min_score=0.9999)
    )
    api = server.client(server.new_key("acme"))
    flagged = {"include": "looks_like"}
    dog = register(api, "alice", "bo", [factories.photo("dog", 0), factories.photo("dog", 1)])
    assert dog.status_code == 201
    register(api, "alice", "mochi", [factories.photo("cat", 0)])
    twin = register(api, "alice", "twin", [factories.photo("dog", 1)]).json()
    # A write answers the plain view: the look-alike search runs only when a read asks.
    assert twin["looks_like"] is None
    assert api.get(f"/v1/users/alice/concepts/{twin['id']}").json()["looks_like"] is None
    asked = api.get(f"/v1/users/alice/concepts/{twin['id']}", params=flagged).json()
    assert asked["looks_like"]["name"] == "bo" and asked["looks_like"]["score"] > 0.9999
    page = api.get("/v1/users/alice/concepts", params=flagged).json()["items"]
    listed = {c["name"]: c["looks_like"] for c in page}
    assert listed["bo"]["name"] == "twin" and listed["mochi"] is None
    plain = api.get("/v1/users/alice/concepts").json()["items"]
    assert [c["looks_like"] for c in plain] == [None, None, None]
    bo = api.get(f"/v1/users/alice/concepts/{dog.json()['id']}", params=flagged).json()
    assert bo["looks_like"]["id"] == twin["id"]
    assert api.get("/v1/users/alice/concepts", params={"include": "x"}).status_code == 422
    # Another user's identical photos are not this user's look-alikes.
    register(api, "bob", "solo", [factories.photo("cat", 0)])
    solo = api.get("/v1/users/bob/concepts", params=flagged).json()["items"][0]
    assert solo["looks_like"] is None
    # The flag goes once the look-alike does.
    assert api.delete(f"/v1/users/alice/concepts/{twin['id']}").status_code == 204
    bo = api.get(f"/v1/users/alice/concepts/{dog.json()['id']}", params=flagged).json()
    assert bo["looks_like"] is None


def test_a_write_fits_no_decision_rule_and_a_read_that_asks_for_look_alikes_does(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # The service's defaults (no fixed min_score, which the tests' settings set): look-alikes
    # are judged by the decision rule, which every write used to refit for the flag alone.
    server = start_server(make_settings(database_url, tmp_path / "data", min_score=None))
    api = server.client(server.new_key("acme"))
    fits = server.services.decisions.stats
    concept_id = register_subject(api, "alice", "dog")["id"]
    register_subject(api, "alice", "cat")
    renamed = api.patch(f"/v1/users/alice/concepts/{concept_id}", json={"name": "rex"})
    assert renamed.status_code == 200 and renamed.json()["looks_like"] is None
    assert fits().misses == 0 and fits().entries == 0
    api.get("/v1/users/alice/concepts", params={"include": "looks_like"}).raise_for_status()
    assert fits().misses == 1


def test_the_playground_shows_regions_scores_and_the_prompt_without_generating(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server = start_server(
        make_settings(database_url, tmp_path / "data", regions="grid", region_grid_scales=(2,))
    )
    api = server.client(server.new_key("acme"))
    bo = register_subject(api, "alice", "dog")
    register_subject(api, "alice", "cat")
    query = factories.photo("dog", 4)
    width, height = Image.open(io.BytesIO(query)).size
    body = {
        "question": "Is my <cat> here?",
        "image": "data:image/jpeg;base64," + __import__("base64").b64encode(query).decode(),
        "top_k": 1,
        "min_score": 0.5,
    }
    encoded = photos_encoded(api)
    result = api.post("/v1/users/alice/playground", json=body).json()
    # The photo's five regions were encoded once: the playground shows chat's own search.
    assert photos_encoded(api) - encoded == 5

    assert (result["width"], result["height"], result["generator"]) == (width, height, "none")
    assert len(result["regions"]) == 5  # the whole photo and a 2 x 2 grid
    assert result["regions"][0]["box"] == [0, 0, width, height]
    assert all(r["concept"]["name"] in ("dog", "cat") for r in result["regions"])
    scores = result["scores"]
    assert {s["concept"]["name"] for s in scores} == {"dog", "cat"}
    assert scores[0]["score"] >= scores[1]["score"]
    assert [s["kept"] for s in scores] == [True, False]  # top_k = 1
    # What retrieval keeps wins a region as the playground shows it (the same winners).
    kept = [s["concept"]["id"] for s in scores if s["kept"]]
    assert set(kept) <= {r["concept"]["id"] for r in result["regions"]}
    assert [c["name"] for c in result["named"]] == ["cat"]
    in_prompt = [c["name"] for c in result["prompt_concepts"]]
    assert in_prompt[0] == "cat" and scores[0]["concept"]["name"] in in_prompt
    system, user = result["prompt"]
    assert system["role"] == "system" and "personal assistant" in system["parts"][0]["text"]
    assert user["parts"][0] == {
        "type": "image",
        "text": None,
        "photo": "query",
        "concept_id": None,
        "image_id": None,
    }
    references = [p for p in user["parts"] if p["photo"] == "reference"]
    assert {p["concept_id"] for p in references} <= {bo["id"], *(c["id"] for c in result["named"])}
    assert all(p["image_id"] for p in references)
    assert user["parts"][-1] == {
        "type": "text",
        "text": "Is my <cat> here?",
        "photo": None,
        "concept_id": None,
        "image_id": None,
    }
    # The same question through /chat builds the same prompt's concepts.
    chat = api.post("/v1/users/alice/chat", json={k: body[k] for k in body}).json()
    assert [c["name"] for c in chat["concepts"]] == in_prompt
    assert_problem(api.post("/v1/users/alice/playground", json={"image": "x"}), 422)


def test_the_playground_names_the_reference_photo_that_stood_in_for_a_missing_one(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    from app.storage.repository import images as image_rows

    server = start_server(make_settings(database_url, tmp_path / "data"))
    api = server.client(server.new_key("acme"))
    bo = register_subject(api, "alice", "dog")
    services = server.services
    with services.sessions() as session:
        rows = image_rows.images_of(session=session, concept_ids=[bo["id"]])[bo["id"]]
    services.blobs.delete(rows[0].blob_key)
    body = {
        "question": "What is <dog> doing?",
        "image": "data:image/jpeg;base64,"
        + __import__("base64").b64encode(factories.photo("dog", 4)).decode(),
    }
    result = api.post("/v1/users/alice/playground", json=body).json()
    _, user = result["prompt"]
    references = [p for p in user["parts"] if p["photo"] == "reference"]
    # The second photo took the missing first one's place, and is named as itself.
    assert [(p["concept_id"], p["image_id"]) for p in references] == [(bo["id"], rows[1].id)]


def test_an_export_imports_into_another_tenant_as_it_was(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    bo = register(
        api,
        "alice",
        "<bo>",
        [factories.photo("dog", 0), factories.encode(factories.gradient(64, 48), "PNG")],
        description='a corgi; "quoted" and ünïcode',
        category="dog",
    ).json()
    register(api, "alice", "../mochi", [factories.photo("cat", 0)])

    response = api.get("/v1/users/alice/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert 'filename="alice-rapport-export.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert all(not n.startswith(("/", "..")) and "/../" not in n for n in names)
    folder = f"bo-{bo['id'][-8:]}"
    assert json.loads(archive.read(f"{folder}/concept.json")) == {
        "name": "<bo>",
        "description": 'a corgi; "quoted" and ünïcode',
        "category": "dog",
    }
    assert archive.read(f"{folder}/001.jpg") == factories.photo("dog", 0)
    assert f"{folder}/002.png" in names
    unpacked = tmp_path / "unpacked"
    archive.extractall(unpacked)

    report = import_concepts(
        server.services, tenant_name="globex", external_user_id="alice2", root=unpacked
    )
    assert sorted(report.created) == ["../mochi", "<bo>"] and not report.failures
    other = server.client(server.new_key("globex"))
    again = {c["name"]: c for c in other.get("/v1/users/alice2/concepts").json()["items"]}
    before = {c["name"]: c for c in api.get("/v1/users/alice/concepts").json()["items"]}
    for name, concept in before.items():
        copy = again[name]
        assert (copy["description"], copy["category"]) == (
            concept["description"],
            concept["category"],
        )
        assert [(i["width"], i["height"], i["media_type"]) for i in copy["images"]] == [
            (i["width"], i["height"], i["media_type"]) for i in concept["images"]
        ]
        copied = [
            other.get(f"/v1/users/alice2/concepts/{copy['id']}/images/{i['id']}").content
            for i in copy["images"]
        ]
        original = [
            api.get(f"/v1/users/alice/concepts/{concept['id']}/images/{i['id']}").content
            for i in concept["images"]
        ]
        assert copied == original  # byte for byte, in the same order
    assert_problem(api.get("/v1/users/nobody/export"), 404)
    assert_problem(other.get("/v1/users/alice/export"), 404)


def test_an_export_holds_every_concept_even_above_a_lowered_quota(
    start_server: Any, database_url: str, tmp_path: Path, encoder: Any
) -> None:
    from app.domain.scope import UserScope
    from app.main import build_services
    from app.storage.repository import tenants as tenant_rows
    from app.usecases.export import plan_export

    server = start_server(make_settings(database_url, tmp_path / "data"))
    api = server.client(server.new_key("acme"))
    for subject in ("dog", "cat", "backpack"):
        register_subject(api, "alice", subject, count=1)
    # The operator lowers the quota later: what the user stored must still all be exported.
    lowered = make_settings(database_url, tmp_path / "data", max_concepts_per_user=1)
    services = build_services(lowered, encoder=encoder)
    try:
        with services.sessions() as session:
            tenant = tenant_rows.find_tenant(session=session, name="acme")
        assert tenant is not None
        exported = plan_export(services, scope=UserScope(tenant.id, "alice"))
    finally:
        services.close()
    assert sorted(c.fields["name"] or "" for c in exported.concepts) == ["backpack", "cat", "dog"]
