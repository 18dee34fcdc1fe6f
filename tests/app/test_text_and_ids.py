"""What text and ids the API stores: the same answer on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests import factories
from tests.app.helpers import assert_problem, matched_names, register, retrieve, stored
from tests.conftest import LiveServer


@pytest.fixture
def api_and_concept(server: LiveServer) -> tuple[httpx.Client, str]:
    client = server.client(server.new_key("acme"))
    answer = register(client, "alice", "<bo>", [factories.photo("dog", 0)])
    assert answer.status_code == 201, answer.text
    return client, answer.json()["id"]


@pytest.mark.parametrize("field", ["name", "description", "category"])
def test_a_nul_byte_in_a_field_is_422_and_stores_nothing(server: LiveServer, field: str) -> None:
    with server.client(server.new_key("acme")) as client:
        fields = {"name": "<bo>", "description": "a dog", "category": "dog"}
        fields[field] = fields[field] + "\x00x"
        answer = client.post(
            "/v1/users/alice/concepts",
            data=fields,
            files=[("images", ("a.jpg", factories.photo("dog", 0), "image/jpeg"))],
        )
    assert_problem(answer, 422)
    assert stored(server.services)["concepts"] == 0


def test_control_characters_in_ids_patches_and_cursors_are_422(
    api_and_concept: tuple[httpx.Client, str],
) -> None:
    client, concept = api_and_concept
    nul = quote("a\x00b")
    for path in (
        f"/v1/users/alice/concepts?cursor={nul}",
        f"/v1/users/alice/concepts/{nul}",
        f"/v1/users/alice/concepts/{concept}/images/{nul}",
    ):
        assert_problem(client.get(path), 422)
    for patch in ({"description": "a\x00b"}, {"name": "<b\x07o>"}, {"category": "x\x00"}):
        assert_problem(client.patch(f"/v1/users/alice/concepts/{concept}", json=patch), 422)
    # Tabs and line breaks stay allowed in a description.
    answer = client.patch(
        f"/v1/users/alice/concepts/{concept}", json={"description": "line one\n\tline two"}
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("name", ["\u200b", "bo\u200b", "<\u200d>", "<...>", "\u2063x"])
def test_invisible_names_are_refused(server: LiveServer, name: str) -> None:
    with server.client(server.new_key("acme")) as client:
        answer = register(client, "alice", name, [factories.photo("dog", 0)])
    assert_problem(answer, 422)


def test_a_one_letter_name_is_found_only_in_brackets(server: LiveServer) -> None:
    with server.client(server.new_key("acme")) as client:
        assert register(client, "alice", "a", [factories.photo("dog", 0)]).status_code == 201
        assert matched_names(retrieve(client, "alice", text="is this a dog?")) == []
        assert matched_names(retrieve(client, "alice", text="is <a> here?")) == ["a"]


@pytest.mark.parametrize("escape", ["%FF", "%FE", "caf%E9"])
def test_a_user_id_that_is_not_utf8_is_422(
    api_and_concept: tuple[httpx.Client, str], escape: str
) -> None:
    client, _ = api_and_concept
    assert_problem(client.get(f"/v1/users/{escape}/concepts"), 422)


def test_the_replacement_character_is_not_a_user_id(
    api_and_concept: tuple[httpx.Client, str],
) -> None:
    client, _ = api_and_concept
    assert_problem(client.get("/v1/users/%EF%BF%BD/concepts"), 422)
    # Valid UTF-8 escapes still name their users.
    assert client.get("/v1/users/caf%C3%A9/concepts").status_code == 200


def test_a_multi_picture_jpeg_is_accepted_as_its_first_frame(server: LiveServer) -> None:
    first = Image.new("RGB", (64, 48), (200, 30, 30))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48))])
    with server.client(server.new_key("acme")) as client:
        answer = register(client, "alice", "<mpo>", [buffer.getvalue()])
    assert answer.status_code == 201, answer.text
    assert answer.json()["images"][0]["media_type"] == "image/jpeg"
