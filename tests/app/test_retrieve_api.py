from __future__ import annotations

import base64

import httpx

from tests import factories
from tests.app.helpers import assert_problem, matched_names, register_subject, retrieve
from tests.conftest import BOTH_BLOB_STORES


def test_a_registered_photo_finds_its_concept_first(api: httpx.Client) -> None:
    for subject in ("dog", "cat", "backpack"):
        register_subject(api, "alice", subject)
    # Random weights: the decision rule finds nothing by image, a fixed threshold ranks all.
    response = retrieve(api, "alice", factories.photo("cat", 1), top_k=3, min_score=-1)
    matches = response.json()["matches"]
    assert matches[0]["concept"]["name"] == "cat"
    assert matches[0]["score"] >= 0.999
    assert matches[0]["source"] == "image"
    scores = [m["score"] for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert len({m["concept"]["id"] for m in matches}) == len(matches) <= 3


def test_json_body_with_base64_or_data_url(api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    raw = base64.b64encode(factories.photo("dog", 0)).decode()
    for image in (raw, f"data:image/jpeg;base64,{raw}"):
        body = {"image": image, "top_k": 1, "min_score": 0}
        response = api.post("/v1/users/alice/retrieve", json=body)
        assert matched_names(response) == ["dog"]
    assert_problem(api.post("/v1/users/alice/retrieve", json={"image": "not base64!"}), 422)
    assert_problem(api.post("/v1/users/alice/retrieve", json={}), 422)


def test_min_score_lets_retrieval_abstain(api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    query = factories.photo("dog", 0)
    assert matched_names(retrieve(api, "alice", query, min_score=0.5)) == ["dog"]
    assert retrieve(api, "alice", factories.photo("cat", 0), min_score=1.0).json() == {
        "matches": []
    }


def test_a_concept_named_in_the_text_is_always_included(api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    api.patch(
        f"/v1/users/alice/concepts/{register_subject(api, 'alice', 'cat')['id']}",
        json={"name": "<Mochi>"},
    )
    for text in ("what is <mochi> doing?", "Is MOCHI here", "mochi."):
        response = retrieve(api, "alice", factories.photo("dog", 0), min_score=1.0, text=text)
        names = {m["concept"]["name"]: m["source"] for m in response.json()["matches"]}
        assert names.get("<Mochi>") == "text", (text, names)
    # Not as part of another word.
    response = retrieve(api, "alice", None, text="mochipuff is not a name")
    assert response.json()["matches"] == []
    text_only = retrieve(api, "alice", None, text="where is <mochi>")
    assert [
        (m["concept"]["name"], m["source"], m["score"]) for m in text_only.json()["matches"]
    ] == [("<Mochi>", "text", 1.0)]


def test_every_change_is_visible_to_the_next_retrieval(api: httpx.Client) -> None:
    dog = register_subject(api, "alice", "dog")
    base = f"/v1/users/alice/concepts/{dog['id']}"
    query = factories.photo("dog", 4)
    assert retrieve(api, "alice", query, min_score=0.9999).json()["matches"] == []
    added = api.post(f"{base}/images", files=[("images", ("q.jpg", query))]).json()
    assert matched_names(retrieve(api, "alice", query, min_score=0.9999)) == ["dog"]
    api.patch(base, json={"name": "<bo>"})
    assert matched_names(retrieve(api, "alice", query, min_score=0.9999)) == ["<bo>"]
    assert api.delete(f"{base}/images/{added['images'][-1]['id']}").status_code == 204
    assert retrieve(api, "alice", query, min_score=0.9999).json()["matches"] == []
    assert api.delete(base).status_code == 204
    assert retrieve(api, "alice", factories.photo("dog", 0), text="bo").json()["matches"] == []


@BOTH_BLOB_STORES
def test_erasing_a_user_removes_everything(api: httpx.Client, server: object) -> None:
    from tests.app.helpers import stored

    register_subject(api, "alice", "dog")
    register_subject(api, "alice", "cat")
    register_subject(api, "bob", "dog")
    before = stored(server.services)  # type: ignore[attr-defined]
    assert api.delete("/v1/users/alice").status_code == 204
    after = stored(server.services)  # type: ignore[attr-defined]
    assert after == {k: v // 3 for k, v in before.items()}
    assert api.get("/v1/users/alice/concepts").json()["items"] == []
    gone = retrieve(api, "alice", factories.photo("dog", 0), min_score=-1)
    assert gone.json()["matches"] == []
    kept = retrieve(api, "bob", factories.photo("dog", 0), top_k=1, min_score=-1)
    assert matched_names(kept) == ["dog"]
    assert api.delete("/v1/users/alice").status_code == 204


def test_server_timing_tells_where_the_time_went(api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    response = retrieve(api, "alice", factories.photo("dog", 0))
    stages = dict(
        item.strip().split(";dur=") for item in response.headers["server-timing"].split(",")
    )
    assert {"parse", "decode", "encode", "db", "search"} <= set(stages)
    assert all(float(ms) >= 0 for ms in stages.values())


def test_a_malformed_multipart_body_is_a_clear_422(api: httpx.Client) -> None:
    two_files = [("image", ("a.jpg", factories.photo("dog", 0))), ("x", ("b.txt", b"y"))]
    body = assert_problem(api.post("/v1/users/alice/retrieve", files=two_files), 422)
    assert "multipart" in body["detail"]


def test_concepts_named_like_dataset_folders_are_not_found_in_ordinary_questions(
    api: httpx.Client,
) -> None:
    # Named as `rapport import` names the dataset's folders.
    for subject in ("can", "clock", "dog2"):
        register_subject(api, "bob", subject, count=1)
    for question in ("Can you describe this photo?", "Can you tell me what time the clock shows?"):
        assert matched_names(retrieve(api, "bob", text=question)) == []
    named = retrieve(api, "bob", text="Is <can> next to dog2?", top_k=5)
    assert sorted(matched_names(named)) == ["can", "dog2"]
    assert {m["source"] for m in named.json()["matches"]} == {"text"}
