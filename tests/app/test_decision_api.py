"""The label-free decision rule through the API: the default, its fields, its override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.storage.repository import tenants as tenant_rows
from app.storage.repository import users as user_rows
from app.usecases.retrieve import cached_index
from tests import factories
from tests.app.helpers import matched_names, mobilenet_settings, register_subject, retrieve
from tests.conftest import LiveServer, make_settings


def held_out(subject: str) -> bytes:
    return factories.photo(subject, factories.photo_count(subject) - 1)


def decision_cache(client: Any) -> dict[str, float]:
    lines = client.get("/metrics").text.splitlines()
    return {
        name: float(line.split()[-1])
        for name in ("hits", "misses")
        for line in lines
        if line.startswith(f"rapport_decision_cache_{name}_total ")
    }


def test_real_features_the_rule_decides_per_concept(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    settings = mobilenet_settings(database_url, tmp_path / "data")
    server: LiveServer = start_server(settings, encoder=None)
    client = server.client(server.new_key("acme"))
    for subject in ["dog", "cat", "backpack"]:
        register_subject(client, "alice", subject)
    (match,) = retrieve(client, "alice", held_out("dog")).json()["matches"]
    assert match["concept"]["name"] == "dog" and match["source"] == "image"
    assert match["present"] is True and 0 < match["threshold"] <= match["score"]
    # Fitted once per version: a second retrieval at the same version reuses the rule.
    before = decision_cache(client)
    retrieve(client, "alice", held_out("cat"))
    after = decision_cache(client)
    assert after["misses"] == before["misses"] >= 1 and after["hits"] == before["hits"] + 1
    # A photo of something else: nothing is present (no threshold for the model was typed).
    assert retrieve(client, "alice", held_out("candle")).json()["matches"] == []
    # Named but not seen: included, and says so.
    (named,) = retrieve(client, "alice", held_out("candle"), text="is my <cat> here?").json()[
        "matches"
    ]
    assert named["source"] == "text" and named["present"] is False
    assert named["score"] < named["threshold"]
    # No photo: nothing to decide.
    (only,) = retrieve(client, "alice", None, text="where is my <cat>?").json()["matches"]
    assert only["present"] is None and only["threshold"] is None
    # min_score overrides the rule: a fixed threshold, reported as such.
    overridden = retrieve(client, "alice", held_out("candle"), min_score=0.3).json()["matches"]
    assert {m["concept"]["name"] for m in overridden} == {"dog", "cat", "backpack"}
    assert all(m["present"] is True and m["threshold"] == 0.3 for m in overridden)
    # A new concept changes the others' impostors: the rule is refitted at the new version.
    register_subject(client, "alice", "can")
    (again,) = retrieve(client, "alice", held_out("dog")).json()["matches"]
    assert again["concept"]["name"] == "dog" and again["threshold"] != match["threshold"]
    # Look-alike flags follow the rule too: a dog and a cat are not look-alikes (the old
    # per-concept rule flagged them), nor is a can; another dog may be, and only as a dog.
    twin = register_subject(client, "alice", "dog2")
    flagged = {"include": "looks_like"}
    asked = client.get(f"/v1/users/alice/concepts/{twin['id']}", params=flagged).json()
    assert asked["looks_like"] is None or asked["looks_like"]["name"] == "dog"
    listed = client.get("/v1/users/alice/concepts", params=flagged).json()["items"]
    flags = {c["name"]: (c["looks_like"] or {}).get("name") for c in listed}
    assert flags["cat"] is None and flags["can"] is None and flags["backpack"] is None
    assert flags["dog"] in (None, "dog2")


def test_pooled_regions_are_judged_at_the_rules_pooled_threshold(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # Tiles pooled from one pass score lower than crops: the rule has a threshold of its
    # own for them, and /retrieve must use it when the search pooled.
    settings = mobilenet_settings(
        database_url,
        tmp_path / "data",
        regions="grid",
        region_grid_scales=(2,),
        region_encoding="pooled",
    )
    server: LiveServer = start_server(settings, encoder=None)
    client = server.client(server.new_key("acme"))
    for subject in ["dog", "cat", "backpack"]:
        register_subject(client, "alice", subject)
    matches = retrieve(client, "alice", held_out("dog")).json()["matches"]
    dog = next(m for m in matches if m["concept"]["name"] == "dog")
    services = server.services
    with services.sessions() as session:
        tenant = tenant_rows.find_tenant(session=session, name="acme")
        assert tenant is not None
        user = user_rows.find_user(session=session, tenant_id=tenant.id, external_id="alice")
        assert user is not None
    index = cached_index(services, user.id, user.version)
    rule = services.decisions.rule_for(
        services.index_key(user.id), user.version, index.vectors, services.background
    )
    pooled = rule.threshold(dog["concept"]["id"], pooled=True)
    assert pooled is not None and pooled < (rule.threshold(dog["concept"]["id"]) or 0)
    assert dog["threshold"] == pytest.approx(pooled, abs=1e-5)
    assert dog["present"] is (dog["score"] >= pooled)


def test_random_weights_never_match_everything(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", min_score=None)
    )
    assert server.services.default_min_score is None
    # The background photos were encoded at start-up, not by the first request.
    assert server.services.background._vectors is not None
    client = server.client(server.new_key("acme"))
    for subject in ["dog", "cat", "backpack"]:
        register_subject(client, "alice", subject)
    # The tiny model's scores are all near 1: no concept stands out from other photos.
    assert matched_names(retrieve(client, "alice", held_out("dog"))) == []
    (named,) = retrieve(client, "alice", held_out("dog"), text="<dog>?").json()["matches"]
    assert named["source"] == "text" and named["present"] is False
    assert named["threshold"] is None
    # A registered photo itself is not enough either.
    assert matched_names(retrieve(client, "alice", factories.photo("dog", 0))) == []


def test_the_background_fits_the_smallest_encoder_queue_allowed(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # 48 background photos, a queue (and an app's share) of one request's 20 photos.
    settings = make_settings(
        database_url,
        tmp_path / "data",
        min_score=None,
        encode_queue_size=20,
        encode_queue_per_app=20,
    )
    server: LiveServer = start_server(settings)
    background = server.services.background._vectors
    assert background is not None and len(background) == 48
    client = server.client(server.new_key("acme"))
    register_subject(client, "alice", "dog")
    assert retrieve(client, "alice", held_out("dog")).status_code == 200


def test_a_write_that_keeps_every_vector_keeps_the_fitted_rule(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # A rename bumps the user's version but changes no vector: the rule fitted at the old
    # version is carried over, not fitted again (the cached index is carried the same way).
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", min_score=None)
    )
    client = server.client(server.new_key("acme"))
    dog = register_subject(client, "alice", "dog")
    register_subject(client, "alice", "cat")
    retrieve(client, "alice", held_out("dog"))
    before = decision_cache(client)
    renamed = client.patch(f"/v1/users/alice/concepts/{dog['id']}", json={"name": "bo"})
    assert renamed.status_code == 200, renamed.text
    retrieve(client, "alice", held_out("dog"))
    after = decision_cache(client)
    assert after["misses"] == before["misses"] and after["hits"] > before["hits"]
