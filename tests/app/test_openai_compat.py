"""/v1/chat/completions, exercised with the official openai client against a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests import factories
from tests.app.helpers import data_url, image_urls, setup_users, texts
from tests.conftest import LiveServer
from tests.fake_openai_server import FakeOpenAI


def client_for(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


def photo_question(text: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": data_url(factories.photo("dog", 4))}},
            ],
        },
    ]


def test_user_field_personalizes_the_answer(openai_server: LiveServer, backend: FakeOpenAI) -> None:
    setup_users(openai_server)
    client = client_for(openai_server, openai_server.new_key("acme"))
    completion = client.chat.completions.create(
        model="whatever",
        messages=photo_question("what is <bo> doing?"),
        user="alice",
        max_tokens=40,
    )
    assert completion.choices[0].message.content == backend.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake-vlm"
    assert completion.usage is not None
    concepts = (completion.model_extra or {})["rapport"]["concepts"]
    assert [c["name"] for c in concepts] == ["<bo>"]
    sent = backend.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and "Answer briefly." in texts(sent[:1])
    assert "Name: <bo>, Info: alice's corgi, loves the beach" in texts(sent)
    assert "SECRET" not in json.dumps(sent)
    assert len(image_urls(sent)) == 2
    assert backend.requests[-1]["max_tokens"] == 40


def test_without_user_nothing_is_personalized(
    openai_server: LiveServer, backend: FakeOpenAI
) -> None:
    setup_users(openai_server)
    client = client_for(openai_server, openai_server.new_key("acme"))
    completion = client.chat.completions.create(
        model="whatever", messages=photo_question("what is <bo> doing?")
    )
    assert completion.choices[0].message.content == backend.reply
    assert (completion.model_extra or {})["rapport"]["concepts"] == []
    sent = backend.requests[-1]["messages"]
    assert "<concept>" not in texts(sent) and len(image_urls(sent)) == 1


def test_streaming_with_usage(openai_server: LiveServer, backend: FakeOpenAI) -> None:
    setup_users(openai_server)
    client = client_for(openai_server, openai_server.new_key("acme"))
    stream = client.chat.completions.create(
        model="whatever",
        messages=photo_question("is bo there?"),
        user="alice",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == backend.reply
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert [c["name"] for c in (chunks[0].model_extra or {})["rapport"]["concepts"]] == ["<bo>"]
    assert len({c.id for c in chunks}) == 1


def test_keys_and_errors_as_openai_clients_see_them(
    openai_server: LiveServer, backend: FakeOpenAI
) -> None:
    bad = client_for(openai_server, "rk_000000000000_" + "x" * 43)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    client = client_for(openai_server, openai_server.new_key("acme"))
    backend.behaviour = "error"
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert failure.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as bad_n:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], n=2)
    assert bad_n.value.status_code == 422


def test_no_generator_is_one_clear_final_answer_the_client_does_not_retry(
    server: LiveServer,
) -> None:
    sent: list[httpx.Request] = []
    counting = httpx.Client(event_hooks={"request": [sent.append]})
    # The client's default retries: it retries a 5xx unless told the answer is final.
    client = openai.OpenAI(
        base_url=f"{server.url}/v1",
        api_key=server.new_key("acme"),
        # Annotated as httpx2's client from openai 3 on; httpx's works the same.
        http_client=cast(Any, counting),
    )
    with client, pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert failure.value.status_code == 501
    assert "No generator configured" in failure.value.message
    assert "RAPPORT_GENERATOR=none" in failure.value.message
    assert len(sent) == 1
    error = failure.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "no_generator_configured"
    with client_for(server, server.new_key("acme")) as other:
        assert other.models.list().data == []


def test_errors_carry_their_message_in_openai_shape(
    openai_server: LiveServer, backend: FakeOpenAI
) -> None:
    bad = client_for(openai_server, "rk_000000000000_" + "x" * 43)
    with bad, pytest.raises(openai.AuthenticationError) as denied:
        bad.models.list()
    assert "the API key is unknown" in denied.value.message
    with client_for(openai_server, openai_server.new_key("acme")) as client:
        with pytest.raises(openai.UnprocessableEntityError) as invalid:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], n=2
            )
        assert [model.id for model in client.models.list()] == ["fake-vlm"]
    assert "n:" in invalid.value.message
    assert invalid.value.param == "n" and invalid.value.type == "invalid_request_error"


def test_transformers_backend_through_the_openai_client(
    llava_server: LiveServer, tiny_llava_dir: Path
) -> None:
    server = llava_server
    setup_users(server)
    client = client_for(server, server.new_key("acme"))
    messages = photo_question("what is <bo> doing?")
    whole = client.chat.completions.create(model="m", messages=messages, user="alice", max_tokens=6)
    streamed = client.chat.completions.create(
        model="m", messages=messages, user="alice", max_tokens=6, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == whole.choices[0].message.content
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 6
    assert whole.model == str(tiny_llava_dir)
