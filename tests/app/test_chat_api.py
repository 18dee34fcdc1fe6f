"""Personalized answers through /v1/users/{id}/chat, with each kind of generator."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests import factories
from tests.app.helpers import (
    assert_problem,
    data_url,
    decoded,
    image_urls,
    openai_settings,
    setup_users,
    sse_events,
    texts,
)
from tests.conftest import BOTH_BLOB_STORES, LiveServer
from tests.fake_openai_server import FakeOpenAI


def test_without_a_generator_chat_returns_the_personalized_prompt(server: LiveServer) -> None:
    client = setup_users(server)
    query = factories.photo("dog", 4)
    response = client.post(
        "/v1/users/alice/chat",
        json={"question": "What is <bo> doing?", "image": data_url(query), "min_score": 0.5},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == ""
    assert [(c["name"], c["source"]) for c in body["concepts"]] == [("<bo>", "image")]
    prompt = body["prompt"]
    text = texts(prompt)
    assert "Name: <bo>, Info: alice's corgi, loves the beach" in text
    assert "SECRET" not in json.dumps(prompt)
    urls = image_urls(prompt)
    # The query photo, then the reference photo of <bo>.
    assert len(urls) == 2
    assert decoded(urls[0]).size == (512, 512)
    assert text.rstrip().endswith("What is <bo> doing?")


@BOTH_BLOB_STORES
def test_the_openai_backend_receives_the_concept_and_its_photo(
    openai_server: LiveServer, backend: FakeOpenAI
) -> None:
    client = setup_users(openai_server)
    response = client.post(
        "/v1/users/alice/chat",
        json={
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi! Send me a photo."},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": data_url(factories.photo("dog", 4))},
                        },
                        {"type": "text", "text": "what is bo doing?"},
                    ],
                },
            ],
            "max_new_tokens": 50,
            "temperature": 0.3,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == backend.reply
    assert body["model"] == "fake-vlm"
    assert [c["name"] for c in body["concepts"]] == ["<bo>"]
    assert body["prompt"] is None
    (sent,) = backend.requests
    assert (sent["max_tokens"], sent["temperature"], sent["model"]) == (50, 0.3, "fake-vlm")
    assert {k.lower(): v for k, v in backend.headers[0].items()}[
        "authorization"
    ] == "Bearer sk-backend"
    messages = sent["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert texts(messages[1:2]) == "hello"
    last = texts(messages[3:])
    assert "Name: <bo>, Info: alice's corgi, loves the beach" in last
    assert "SECRET" not in json.dumps(messages)
    query_photo, reference = (decoded(url) for url in image_urls(messages))
    stored = Image.open(io.BytesIO(factories.photo("dog", 0)))
    # The reference is alice's first registered photo of <bo>, not the query.
    assert reference.size == stored.size
    gray = [np.asarray(image.convert("L"), dtype=np.float32) for image in (reference, stored)]
    assert float(np.abs(gray[0] - gray[1]).mean()) < 8
    assert query_photo.size == (512, 512)


def test_chat_streams_concepts_then_deltas_then_done(
    openai_server: LiveServer, backend: FakeOpenAI
) -> None:
    client = setup_users(openai_server)
    body = {
        "question": "is <bo> here?",
        "image": data_url(factories.photo("cat", 0)),
        "stream": True,
    }
    with client.stream("POST", "/v1/users/alice/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[0] == "concepts" and names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    assert [c["name"] for c in json.loads(events[0][1])["concepts"]] == ["<bo>"]
    streamed = "".join(json.loads(data)["text"] for name, data in events if name == "delta")
    assert streamed == json.loads(events[-1][1])["answer"] == backend.reply
    assert backend.requests[0]["stream"] is True


@pytest.mark.parametrize(("behaviour", "status"), [("error", 502), ("close", 502), ("hang", 504)])
def test_backend_failures_map_to_502_and_504(
    behaviour: str,
    status: int,
    start_server: Any,
    database_url: str,
    tmp_path: Path,
    backend: FakeOpenAI,
) -> None:
    server = start_server(openai_settings(database_url, tmp_path, backend, generator_timeout_s=0.5))
    client = server.client(server.new_key("acme"))
    backend.behaviour = behaviour  # type: ignore[assignment]
    for stream in (False, True):
        response = client.post("/v1/users/alice/chat", json={"question": "hi", "stream": stream})
        problem = assert_problem(response, status)
        assert "secret" not in problem["detail"].lower()


def test_chat_validation(server: LiveServer) -> None:
    client = server.client(server.new_key("acme"))
    assert_problem(client.post("/v1/users/alice/chat", json={}), 422)
    both = {"question": "hi", "messages": [{"role": "user", "content": "hi"}]}
    assert_problem(client.post("/v1/users/alice/chat", json=both), 422)
    # Fetching photos by URL: tests/app/test_remote_photos.py.
    remote = {"question": "hi", "image": "http://127.0.0.1/dog.jpg"}
    assert (
        "public" in assert_problem(client.post("/v1/users/alice/chat", json=remote), 400)["detail"]
    )
    assert_problem(
        client.post("/v1/users/alice/chat", json={"question": "x", "image": "bm90"}), 415
    )
    too_long = {"question": "hi", "max_new_tokens": 100_000}
    assert_problem(client.post("/v1/users/alice/chat", json=too_long), 422)
    no_user = {"messages": [{"role": "assistant", "content": "hi"}]}
    assert_problem(client.post("/v1/users/alice/chat", json=no_user), 422)


def test_max_new_tokens_over_the_limit_is_refused_before_any_photo_is_read(
    server: LiveServer,
) -> None:
    client = server.client(server.new_key("acme"))
    # Fetched, this photo would be refused (400, not public): the token cap comes first.
    request = {"question": "hi", "image": "http://127.0.0.1/dog.jpg", "max_new_tokens": 100_000}
    problem = assert_problem(client.post("/v1/users/alice/chat", json=request), 422)
    assert "max_new_tokens" in problem["detail"]


def test_the_transformers_generator_end_to_end(llava_server: LiveServer) -> None:
    server = llava_server
    client = setup_users(server)
    request = {
        "question": "what is <bo> doing?",
        "image": data_url(factories.photo("dog", 3)),
        "max_new_tokens": 8,
    }
    response = client.post("/v1/users/alice/chat", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["name"] for c in body["concepts"]] == ["<bo>"]
    assert 0 < body["usage"]["completion_tokens"] <= 8
    assert body["usage"]["prompt_tokens"] > 20
    assert body["finish_reason"] in ("stop", "length")
    with client.stream("POST", "/v1/users/alice/chat", json=request | {"stream": True}) as streamed:
        events = sse_events(streamed)
    deltas = "".join(json.loads(d)["text"] for n, d in events if n == "delta")
    done = json.loads(events[-1][1])
    assert events[-1][0] == "done"
    assert deltas == done["answer"]
    # Greedy decoding: the same prompt gives the same answer streamed or not.
    assert done["answer"] == body["answer"]


def test_a_reference_photo_whose_file_is_gone_is_skipped_and_reported(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    from app.storage.repository import images as image_rows
    from app.usecases.doctor import Storage, check

    client = setup_users(server)
    services = server.services
    [bo] = client.get("/v1/users/alice/concepts").json()["items"]
    with services.sessions() as session:
        rows = image_rows.images_of(session=session, concept_ids=[bo["id"]])[bo["id"]]
    question = {"question": "What is <bo> doing?", "image": data_url(factories.photo("dog", 4))}

    services.blobs.delete(rows[0].blob_key)
    response = client.post("/v1/users/alice/chat", json=question)
    assert response.status_code == 200, response.text
    # The next photo of <bo> stands in for the missing one.
    assert len(image_urls(response.json()["prompt"])) == 2
    assert f"photo {rows[0].id} of concept {bo['id']} is missing" in caplog.text

    for row in rows[1:]:
        services.blobs.delete(row.blob_key)
    response = client.post("/v1/users/alice/chat", json=question)
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["concepts"]] == ["<bo>"]
    assert len(image_urls(response.json()["prompt"])) == 1  # the query photo only
    assert sorted(check(Storage.of(services)).missing_blobs) == sorted(r.id for r in rows)


def test_the_echo_generator_answers_from_the_prompt_through_both_chat_apis(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    import openai

    from tests.conftest import make_settings

    server = start_server(make_settings(database_url, tmp_path / "data", generator="echo"))
    client = setup_users(server)
    photo = data_url(factories.photo("dog", 4))
    body = {"question": "What is <bo> doing?", "image": photo}
    said = (
        '[echo, not a model] You asked "What is <bo> doing?", with 1 photo. '
        "Your concepts in this prompt: <bo> (alice's corgi, loves the beach)."
    )
    answer = client.post("/v1/users/alice/chat", json=body).json()
    assert (answer["answer"], answer["model"], answer["finish_reason"]) == (said, "echo", "stop")
    assert "BOB-SECRET" not in answer["answer"] and "OTHER-TENANT" not in answer["answer"]
    assert [c["name"] for c in answer["concepts"]] == ["<bo>"]
    # Streamed word by word, the same text.
    with client.stream("POST", "/v1/users/alice/chat", json=body | {"stream": True}) as response:
        events = sse_events(response)
    deltas = [json.loads(data)["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 5 and "".join(deltas) == said == json.loads(events[-1][1])["answer"]
    # max_new_tokens cuts it, and says so.
    short = client.post("/v1/users/alice/chat", json=body | {"max_new_tokens": 3}).json()
    assert (short["answer"], short["finish_reason"]) == ("[echo, not a ", "length")
    # A user with no concept: the question comes back, no concept does.
    nobody = client.post("/v1/users/carol/chat", json={"question": "hello?"}).json()
    assert nobody["answer"] == (
        '[echo, not a model] You asked "hello?", with no photo. '
        "None of your concepts is in this prompt."
    )

    # The OpenAI-compatible API, as the official client sees it, whole and streamed.
    oai = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=server.new_key("acme"), max_retries=0, timeout=30
    )
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is <bo> doing?"},
                {"type": "image_url", "image_url": {"url": photo}},
            ],
        }
    ]
    completion = oai.chat.completions.create(model="echo", messages=messages, user="alice")
    assert completion.choices[0].message.content == said
    assert completion.model == "echo" and completion.choices[0].finish_reason == "stop"
    assert [m.id for m in oai.models.list()] == ["echo"]
    stream = oai.chat.completions.create(model="echo", messages=messages, user="alice", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == said


def test_each_end_user_gets_their_own_prompt_cache_salt(
    openai_server: LiveServer, backend: FakeOpenAI
) -> None:
    # A shared generation server caches prompt prefixes; without a salt one tenant could
    # tell from its time to first token whether another's prompt (photos, descriptions)
    # was cached. vLLM keeps cached prefixes to requests with the same cache_salt.
    acme = openai_server.client(openai_server.new_key("acme"))
    globex = openai_server.client(openai_server.new_key("globex"))
    for client, user in ((acme, "alice"), (acme, "alice"), (acme, "bob"), (globex, "alice")):
        answer = client.post(f"/v1/users/{user}/chat", json={"question": "hi"})
        assert answer.status_code == 200, answer.text
    salts = [str(sent.get("cache_salt")) for sent in backend.requests]
    assert all(len(salt) >= 16 and salt != "None" for salt in salts), salts
    assert salts[0] == salts[1]  # the same user: their repeats may use the cache
    assert len({salts[0], salts[2], salts[3]}) == 3  # another user, another tenant's user
    assert not any("alice" in salt or "bob" in salt for salt in salts)
