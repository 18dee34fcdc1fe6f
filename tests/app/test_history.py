"""A user's history: every change from any source, newest first, theirs only, undoable by chat."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.domain.scope import UserScope
from app.storage.db.models import MemoryEvent
from app.storage.repository.tenants import get_or_create_tenant
from app.usecases import concepts
from app.usecases.concepts import ConceptChanges
from app.usecases.importer import import_concepts
from tests import factories
from tests.app.helpers import assert_problem, register
from tests.conftest import LiveServer


def history(api: httpx.Client, user: str) -> list[dict]:
    response = api.get(f"/v1/users/{user}/history")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def events_stored(server: LiveServer) -> int:
    with server.services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(MemoryEvent)) or 0)


def chat_scope(server: LiveServer, user: str, tenant: str = "acme") -> UserScope:
    with server.services.sessions() as session:
        found = get_or_create_tenant(session=session, name=tenant)
        session.commit()
        return UserScope(found.id, user)


def test_every_api_change_is_recorded_newest_first_with_before_and_after(
    api: httpx.Client,
) -> None:
    bo = register(api, "alice", "bo", [factories.photo("dog", 0)], description="a dog").json()
    base = f"/v1/users/alice/concepts/{bo['id']}"
    assert api.patch(base, json={"name": "<bo>", "description": "a corgi"}).status_code == 200
    added = api.post(f"{base}/images", files=[("images", ("x.jpg", factories.photo("dog", 1)))])
    new_photo = added.json()["images"][1]["id"]
    assert api.delete(f"{base}/images/{new_photo}").status_code == 204
    assert api.delete(base).status_code == 204
    # A refused write leaves no event.
    register(api, "alice", "mochi", [factories.photo("cat", 0)])
    assert_problem(register(api, "alice", "<MOCHI>", []), 409)

    events = history(api, "alice")
    assert [(e["action"], e["source"]) for e in events] == [
        ("created", "api"),
        ("deleted", "api"),
        ("updated", "api"),
        ("updated", "api"),
        ("updated", "api"),
        ("created", "api"),
    ]
    created, renamed = events[-1], events[-2]
    assert created["before"] is None and created["after"]["name"] == "bo"
    assert created["after"]["photos"] == [bo["images"][0]["id"]]
    assert (renamed["before"]["description"], renamed["after"]["description"]) == (
        "a dog",
        "a corgi",
    )
    assert events[-3]["after"]["photos"] == [bo["images"][0]["id"], new_photo]
    assert events[-4]["after"]["photos"] == [bo["images"][0]["id"]]
    assert events[1]["before"]["name"] == "<bo>" and events[1]["after"] is None
    assert not any(e["undoable"] for e in events)
    times = [e["time"] for e in events]
    assert times == sorted(times, reverse=True)
    page = api.get("/v1/users/alice/history", params={"limit": 4}).json()
    rest = api.get("/v1/users/alice/history", params={"cursor": page["next_cursor"]}).json()
    assert [e["id"] for e in page["items"] + rest["items"]] == [e["id"] for e in events]


def test_history_is_never_shown_to_another_user_or_tenant(
    server: LiveServer, api: httpx.Client
) -> None:
    register(api, "alice", "bo", [], description="ALICE-SECRET")
    other = server.client(server.new_key("globex"))
    assert history(api, "bob") == [] and history(other, "alice") == []
    (event,) = history(api, "alice")
    for client, user in ((api, "bob"), (other, "alice")):
        assert_problem(client.post(f"/v1/users/{user}/history/{event['id']}/undo"), 404)
    assert "ALICE-SECRET" not in other.get("/v1/users/alice/history").text


def test_history_is_erased_with_the_user_and_exported(
    server: LiveServer, api: httpx.Client
) -> None:
    register(api, "alice", "bo", [factories.photo("dog", 0)])
    register(api, "bob", "rex", [])
    archive = zipfile.ZipFile(io.BytesIO(api.get("/v1/users/alice/export").content))
    exported = json.loads(archive.read("history.json"))
    assert [(e["action"], e["source"], e["after"]["name"]) for e in exported] == [
        ("created", "api", "bo")
    ]
    assert events_stored(server) == 2
    assert api.delete("/v1/users/alice").status_code == 204
    assert events_stored(server) == 1 and history(api, "alice") == []
    assert len(history(api, "bob")) == 1


def test_an_import_is_recorded_as_the_import(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    folder = tmp_path / "tree" / "bo"
    folder.mkdir(parents=True)
    (folder / "01.jpg").write_bytes(factories.photo("dog", 0))
    report = import_concepts(
        server.services, tenant_name="acme", external_user_id="alice", root=tmp_path / "tree"
    )
    assert report.created == ["bo"]
    assert [(e["action"], e["source"]) for e in history(api, "alice")] == [("created", "import")]


def test_changes_made_by_chat_can_be_undone_once_and_no_others(
    server: LiveServer, api: httpx.Client
) -> None:
    scope = chat_scope(server, "alice")
    services = server.services
    api_made = register(api, "alice", "<bo>", [factories.photo("dog", 0)], description="a dog")
    bo = api_made.json()
    concepts.update_concept(
        services,
        scope=scope,
        concept_id=bo["id"],
        changes=ConceptChanges(description="loves the red ball"),
        source="chat",
    )
    concepts.add_images(
        services,
        scope=scope,
        concept_id=bo["id"],
        uploads=[factories.photo("dog", 1)],
        source="chat",
    )
    anna = concepts.create_concept(
        services,
        scope=scope,
        name="<anna>",
        description="sister",
        category=None,
        uploads=[],
        source="chat",
    )
    events = history(api, "alice")
    assert [(e["source"], e["undoable"]) for e in events] == [
        ("chat", True),
        ("chat", True),
        ("chat", True),
        ("api", False),
    ]
    assert_problem(api.post(f"/v1/users/alice/history/{events[3]['id']}/undo"), 409)

    undone = api.post(f"/v1/users/alice/history/{events[0]['id']}/undo")
    assert undone.status_code == 200, undone.text
    assert [(c["action"], c["source"]) for c in undone.json()["changes"]] == [("deleted", "undo")]
    assert_problem(api.get(f"/v1/users/alice/concepts/{anna.concept.id}"), 404)
    assert_problem(api.post(f"/v1/users/alice/history/{events[0]['id']}/undo"), 409)

    # The photo the chat added goes; the description it changed comes back.
    assert api.post(f"/v1/users/alice/history/{events[1]['id']}/undo").status_code == 200
    assert [i["id"] for i in api.get(f"/v1/users/alice/concepts/{bo['id']}").json()["images"]] == [
        bo["images"][0]["id"]
    ]
    assert api.post(f"/v1/users/alice/history/{events[2]['id']}/undo").status_code == 200
    assert api.get(f"/v1/users/alice/concepts/{bo['id']}").json()["description"] == "a dog"
    latest = history(api, "alice")
    assert latest[0]["undoes"] == events[2]["id"] and latest[0]["source"] == "undo"
    assert [e["undone_at"] is not None for e in latest if e["source"] == "chat"] == [True] * 3


def test_a_concept_deleted_by_chat_comes_back_text_only(
    server: LiveServer, api: httpx.Client
) -> None:
    bo = register(api, "alice", "<bo>", [factories.photo("dog", 0)], description="a corgi")
    concepts.delete_concept(
        server.services,
        scope=chat_scope(server, "alice"),
        concept_id=bo.json()["id"],
        source="chat",
    )
    (deleted, _) = history(api, "alice")
    assert api.post(f"/v1/users/alice/history/{deleted['id']}/undo").status_code == 200
    (back,) = api.get("/v1/users/alice/concepts").json()["items"]
    assert (back["name"], back["description"], back["images"]) == ("<bo>", "a corgi", [])
