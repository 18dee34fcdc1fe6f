"""No request reads, finds, retrieves, changes or deletes another tenant's or user's data."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests import factories
from tests.app.helpers import register_subject, retrieve, stored

MISSING = "01900000-0000-7000-8000-000000000000"


def _attempts(
    user: str, concept: str, image: str
) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    base = f"/v1/users/{user}/concepts/{concept}"
    photo = ("images", ("x.jpg", factories.photo("cat", 0)))
    return {
        "get concept": lambda c: c.get(base),
        "patch concept": lambda c: c.patch(base, json={"name": "stolen"}),
        "delete concept": lambda c: c.delete(base),
        "add images": lambda c: c.post(f"{base}/images", files=[photo]),
        "get image": lambda c: c.get(f"{base}/images/{image}"),
        "delete image": lambda c: c.delete(f"{base}/images/{image}"),
    }


@pytest.fixture
def owned(api: httpx.Client) -> dict:
    """alice of tenant acme owns a dog concept of two photos."""
    return register_subject(api, "alice", "dog", count=2)


def _normalised(response: httpx.Response, *ids: str) -> tuple[int, str]:
    body = response.text
    for value in ids:
        body = body.replace(value, "ID")
    return response.status_code, body


@pytest.mark.parametrize("who", ["other tenant", "other user"])
def test_foreign_ids_answer_exactly_like_missing_ones(
    who: str, api: httpx.Client, server: object, owned: dict
) -> None:
    concept, image = owned["id"], owned["images"][1]["id"]
    before = stored(server.services)  # type: ignore[attr-defined]
    if who == "other tenant":
        intruder, user = server.client(server.new_key("evil")), "alice"  # type: ignore[attr-defined]
    else:
        intruder, user = api, "mallory"
    foreign = _attempts(user, concept, image)
    missing = _attempts(user, MISSING, MISSING)
    for name, attempt in foreign.items():
        got, expected = attempt(intruder), missing[name](intruder)
        assert got.status_code == 404, (name, got.text)
        assert _normalised(got, concept, image) == _normalised(expected, MISSING), name
    listed = intruder.get(f"/v1/users/{user}/concepts")
    assert listed.json() == {"items": [], "next_cursor": None}
    found = retrieve(intruder, user, factories.photo("dog", 0), min_score=-1, text="<dog>")
    assert found.json() == {"matches": []}
    assert intruder.delete(f"/v1/users/{user}").status_code == 204
    # The owner still has everything, unchanged.
    assert stored(server.services) == before  # type: ignore[attr-defined]
    mine = api.get(f"/v1/users/alice/concepts/{concept}")
    assert mine.json() == owned


def test_same_user_id_in_two_tenants_are_two_users(api: httpx.Client, server: object) -> None:
    other = server.client(server.new_key("globex"))  # type: ignore[attr-defined]
    register_subject(api, "alice", "dog")
    register_subject(other, "alice", "cat")
    assert [c["name"] for c in api.get("/v1/users/alice/concepts").json()["items"]] == ["dog"]
    assert [c["name"] for c in other.get("/v1/users/alice/concepts").json()["items"]] == ["cat"]
    found = retrieve(other, "alice", factories.photo("dog", 0), min_score=-1, text="<dog>")
    assert [m["concept"]["name"] for m in found.json()["matches"]] == ["cat"]
