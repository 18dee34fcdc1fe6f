"""Retrieval, chat (plain and streamed) and the playground through both clients."""

from __future__ import annotations

import json

import pytest
import rapport_client as rc
from PIL import Image

from tests import factories
from tests.app.helpers import sse_events
from tests.clients.conftest import REPLY, Drive
from tests.clients.driver import Driver
from tests.conftest import LiveServer
from tests.fake_openai_server import FakeOpenAI
from tests.photo_server import running_photo_server


async def register_bo(api: Driver) -> rc.Concept:
    photos = [factories.photo("dog", i) for i in range(3)]
    concept: rc.Concept = await api.create_concept(
        "alice", "<bo>", photos, description="a corgi", category="dog"
    )
    return concept


def test_retrieve_takes_bytes_a_pil_image_a_url_or_text(run: Drive) -> None:
    query = factories.photo("dog", 4)
    with running_photo_server(query) as photos:
        url = photos.url("/photo.jpg")

        async def scenario(api: Driver) -> None:
            bo = await register_bo(api)
            # Random weights: every photo scores above -1, none above 1.
            for image in (query, Image.open(factories.io_bytes(query)), url):
                found = await api.retrieve("alice", image, min_score=-1.0)
                assert isinstance(found, rc.Retrieval)
                [match] = found.matches
                assert (match.concept.id, match.source, match.present) == (bo.id, "image", True)
                assert -1.0 <= match.score <= 1.0
            assert (await api.retrieve("alice", query, min_score=1.0)).matches == []
            named = await api.retrieve("alice", text="what is <bo> doing?")
            assert [(m.concept.name, m.source) for m in named.matches] == [("<bo>", "text")]

        run(scenario)
        # The client fetched the URL itself, once per call above.
        assert [path for path, _ in photos.requests] == ["/photo.jpg"]


def test_chat_answers_and_streams_typed_events(run: Drive, backend: FakeOpenAI) -> None:
    async def scenario(api: Driver) -> None:
        await register_bo(api)
        image = factories.photo("dog", 4)
        answer = await api.chat("alice", "is <bo> here?", image=image, max_new_tokens=20)
        assert isinstance(answer, rc.ChatAnswer)
        assert answer.answer == "".join(REPLY) and answer.model == "fake-vlm"
        assert [c.name for c in answer.concepts] == ["<bo>"]
        assert (
            answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
        )

        events = await api.collect(
            "chat_stream",
            "alice",
            messages=[{"role": "user", "content": "what is <bo> doing?"}],
            temperature=0.5,
        )
        first, *deltas, done = events
        assert isinstance(first, rc.ConceptsEvent)
        assert [c.name for c in first.concepts] == ["<bo>"]
        assert all(isinstance(d, rc.DeltaEvent) for d in deltas)
        assert isinstance(done, rc.DoneEvent)
        assert "".join(d.text for d in deltas) == done.answer == "".join(REPLY)

    run(scenario)
    plain, streamed = backend.requests
    assert (plain["max_tokens"], plain["stream"] is not True) == (20, True)
    assert (streamed["temperature"], streamed["stream"]) == (0.5, True)


def test_the_event_models_have_every_field_the_stream_sends(live: LiveServer) -> None:
    client = live.client(live.new_key("acme"))
    body = {"question": "hi <bo>", "stream": True}
    with client.stream("POST", "/v1/users/alice/chat", json=body) as response:
        events = sse_events(response)
    # Memory read (the default) sends no memory event; test_memory.py sees that one.
    assert {name for name, _ in events} == set(rc._events.EVENTS) - {"memory"}
    for name, data in events:
        model = rc._events.EVENTS[str(name)]
        assert set(json.loads(data)) == set(model.model_fields) - {"type"}, name


def test_a_backend_failure_raises_its_type_from_chat_and_from_a_stream_before_it_starts(
    run: Drive, backend: FakeOpenAI
) -> None:
    backend.behaviour = "error"

    async def scenario(api: Driver) -> None:
        with pytest.raises(rc.GeneratorUnavailable) as plain:
            await api.chat("alice", "hi")
        with pytest.raises(rc.GeneratorUnavailable) as streamed:
            await api.collect("chat_stream", "alice", "hi")
        for raised in (plain.value, streamed.value):
            assert raised.status == 502 and raised.title == "Generator unavailable"
            assert "secret" not in raised.detail.lower()

    run(scenario)


def test_a_stream_cut_by_the_backend_raises_from_the_iterator(
    run: Drive, backend: FakeOpenAI
) -> None:
    backend.behaviour = "cut"

    async def scenario(api: Driver) -> list[object]:
        seen: list[object] = []
        client = api.client
        with pytest.raises(rc.GeneratorUnavailable):
            if isinstance(client, rc.AsyncRapport):
                async for event in await client.chat_stream("alice", "hi"):
                    seen.append(event)
            else:
                for event in client.chat_stream("alice", "hi"):
                    seen.append(event)
        return seen

    seen = run(scenario)
    # The concepts and the first delta arrived before the backend broke off.
    assert [type(e) for e in seen][:2] == [rc.ConceptsEvent, rc.DeltaEvent]


def test_playground_shows_the_prompt_without_generating(run: Drive, backend: FakeOpenAI) -> None:
    async def scenario(api: Driver) -> None:
        bo = await register_bo(api)
        preview = await api.playground(
            "alice", "what is <bo> doing?", image=factories.photo("cat", 0), min_score=1.0
        )
        assert isinstance(preview, rc.Playground)
        assert (preview.width, preview.height, preview.min_score) == (512, 512, 1.0)
        assert [c.id for c in preview.named] == [c.id for c in preview.prompt_concepts] == [bo.id]
        assert preview.generator == "openai" and preview.regions
        photos = [p.photo for m in preview.prompt for p in m.parts if p.type == "image"]
        assert photos == ["query", "reference"]

    run(scenario)
    assert backend.requests == []


def test_health_and_readiness(run: Drive) -> None:
    async def scenario(api: Driver) -> None:
        assert await api.health() is True
        ready = await api.ready()
        assert ready.ready and ready.status == "ready"

    run(scenario)
