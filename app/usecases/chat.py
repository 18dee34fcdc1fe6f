"""Personalized answers: retrieve on the conversation, build RAP's prompt, generate."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from PIL import Image

from app.domain.errors import NoGenerator
from app.domain.scope import UserScope
from app.services import Services
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.usecases.memory_modes import MemoryMode, narrowed, user_memory
from app.usecases.memory_tools import MemoryTools
from app.usecases.photo_policy import PhotoPolicy
from app.usecases.retrieve import Match, QueryPhoto, cached_concepts, matches_at
from retrieval.generators import Generation, GenerationOptions, Stream, ToolSession
from retrieval.prompt import (
    ChatTurn,
    Prompt,
    PromptConcept,
    choose_concepts,
    compose_prompt,
    latest_query_turn,
    to_openai_messages,
)
from retrieval.search import PhotoSearch

logger = logging.getLogger(__name__)


class ToolCallingGenerator(Protocol):
    """A generator with ``supports_tools`` (the OpenAI-compatible one)."""

    def generate_with_tools(
        self, prompt: Prompt, options: GenerationOptions, tools: ToolSession
    ) -> Generation: ...

    def stream_with_tools(
        self, prompt: Prompt, options: GenerationOptions, tools: ToolSession
    ) -> Stream: ...


@dataclass(frozen=True)
class ChatQuery:
    turns: Sequence[ChatTurn]
    top_k: int
    min_score: float | None
    options: GenerationOptions
    memory: MemoryMode | None = None  # as requested (None: the user's default)


@dataclass(frozen=True)
class PreparedChat:
    prompt: Prompt
    used: list[Match]  # the matches whose concepts are in the prompt, in its order
    # id() of each reference photo in the prompt -> (its concept's id, its photo's id)
    references: dict[int, tuple[str, str]] = field(default_factory=dict)
    # The search of the query turn's photos, and that turn's place (None: no search).
    search: PhotoSearch | None = None
    query_turn: int | None = None
    memory: MemoryMode = "read"  # the mode the request got
    tools: MemoryTools | None = None  # in propose and auto


@dataclass(frozen=True)
class ChatAnswer:
    prepared: PreparedChat
    generation: Generation
    model: str  # the generator's
    # The prompt as OpenAI messages, when there is no generator to answer it.
    prompt_messages: list[dict[str, Any]] | None = None


def prepare_chat(services: Services, scope: UserScope | None, *, query: ChatQuery) -> PreparedChat:
    """Retrieve the user's concepts for the conversation and build the prompt.

    Retrieval runs on the latest user turn that has a photo or names a concept;
    without a user id (an OpenAI request with no ``user``) nothing is retrieved.
    The concepts are chosen once, here; the prompt carries exactly those.
    """
    turns = list(query.turns)
    if scope is None or query.memory == "off":
        return PreparedChat(
            prompt=compose_prompt(turns, []), used=[], memory=query.memory or "read"
        )
    memory, tools = memory_for(services, scope, query)
    if memory == "off":
        return PreparedChat(prompt=compose_prompt(turns, []), used=[], memory=memory)
    prepared = _retrieved(services, scope, query, turns)
    return replace(prepared, memory=memory, tools=tools)


def memory_for(
    services: Services, scope: UserScope, query: ChatQuery
) -> tuple[MemoryMode, MemoryTools | None]:
    """The mode the request gets (what it asks, narrowed to the user's own; ``read`` where
    the generator calls no tools), and the tools of ``propose`` and ``auto``."""
    settings = user_memory(services, scope)
    memory = narrowed(query.memory, settings.mode)
    if memory in ("off", "read"):
        return memory, None
    if not services.generator.supports_tools:
        return "read", None
    photos = [image for turn in query.turns for image in turn.images]
    tools = MemoryTools(services, scope, memory, settings.deletes, photos)
    return memory, tools


def _retrieved(
    services: Services, scope: UserScope, query: ChatQuery, turns: list[ChatTurn]
) -> PreparedChat:
    with services.sessions() as session:
        found = user_rows.user_version(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
    if found is None:  # a user with no concepts yet
        return PreparedChat(prompt=compose_prompt(turns, []), used=[])
    names = [c.name for c in cached_concepts(services, *found).values()]
    query_turn = latest_query_turn(turns, names)
    if query_turn is None:
        return PreparedChat(prompt=compose_prompt(turns, []), used=[])
    turn = turns[query_turn]
    found_matches = matches_at(
        services,
        *found,
        photos=[QueryPhoto(image) for image in turn.images],
        text=turn.text,
        top_k=query.top_k,
        min_score=query.min_score,
    )
    matches = found_matches.matches
    config = services.settings.prompt_config()
    by_id: dict[str | None, Match] = {match.concept.id: match for match in matches}
    # Choose first, so that only the photos of concepts that go into the prompt are read.
    chosen = choose_concepts(
        [
            PromptConcept(
                m.concept.name,
                m.concept.description,
                (),
                m.score,
                m.box,
                m.concept.id,
                seen=m.present,
            )
            for m in matches
        ],
        turn.text,
        config.max_concepts,
    )
    used = [by_id[concept.id] for concept in chosen]
    concepts = []
    references: dict[int, tuple[str, str]] = {}
    for concept, match, photos in zip(
        chosen, used, _reference_photos(services, used, scope.tenant_id), strict=True
    ):
        concepts.append(replace(concept, reference_images=tuple(image for _, image in photos)))
        references.update({id(image): (match.concept.id, photo_id) for photo_id, image in photos})
    prompt = compose_prompt(turns, concepts, config, query_turn=query_turn)
    return PreparedChat(
        prompt=prompt,
        used=used,
        references=references,
        search=found_matches.search,
        query_turn=query_turn,
    )


def answer_chat(services: Services, scope: UserScope | None, *, query: ChatQuery) -> ChatAnswer:
    """The whole personalized answer (blocking: run it off the event loop); without a
    generator, the answer comes with the prompt it would have been given."""
    prepared = prepare_chat(services, scope, query=query)
    generator = services.generator
    options = _salted(services, scope, query.options)
    if prepared.tools is not None:
        tool_calling = cast(ToolCallingGenerator, generator)
        session = prepared.tools.session()
        generation = tool_calling.generate_with_tools(prepared.prompt, options, session)
    else:
        generation = generator.generate(prepared.prompt, options)
    messages = None
    if generator.name == "none":
        image_max_side = services.settings.generator_image_max_side
        messages = to_openai_messages(prepared.prompt, image_max_side=image_max_side)
    return ChatAnswer(prepared, generation, generator.model, messages)


def stream_chat(
    services: Services, scope: UserScope | None, *, query: ChatQuery
) -> tuple[PreparedChat, Stream]:
    """The prompt's concepts at once, and a stream of the answer (deltas, then a Generation)."""
    prepared = prepare_chat(services, scope, query=query)
    options = _salted(services, scope, query.options)
    if prepared.tools is not None:
        tool_calling = cast(ToolCallingGenerator, services.generator)
        session = prepared.tools.session()
        return prepared, tool_calling.stream_with_tools(prepared.prompt, options, session)
    return prepared, services.generator.stream(prepared.prompt, options)


def _salted(
    services: Services, scope: UserScope | None, options: GenerationOptions
) -> GenerationOptions:
    """``options`` with the end user's own prompt-cache salt: a keyed hash of the tenant and
    user (the generation server learns neither), so that cached prefixes are reused only
    within one user's requests."""
    if scope is None:
        return options
    name = f"{scope.tenant_id}/{scope.external_user_id}".encode()
    salt = hmac.new(services.settings.key_secret, b"cache-salt/" + name, "sha256").hexdigest()
    return replace(options, cache_salt=salt[:32])


def require_generator(services: Services) -> None:
    if services.generator.name == "none":
        raise NoGenerator(
            "this service has no MLLM (RAPPORT_GENERATOR=none); use "
            "POST /v1/users/{user_id}/chat to get the personalized prompt instead"
        )


def _reference_photos(
    services: Services, matches: Sequence[Match], owner: int
) -> list[list[tuple[str, Image.Image]]]:
    """The first reference photos of each concept, with their ids, decoded (they were
    checked on upload).

    A photo whose file is gone from the photo store is skipped (the next one takes its
    place) and logged for the operator: the answer goes on without it.
    """
    per_concept = services.settings.prompt_max_reference_images
    if not matches or per_concept == 0:
        return [[] for _ in matches]
    with services.sessions() as session:
        rows = image_rows.images_of(session=session, concept_ids=[m.concept.id for m in matches])
    # The configured caps (a photo accepted under raised caps must not fail every chat),
    # reduced to what the MLLM is shown.
    policy = PhotoPolicy.for_references(services, owner)
    chosen: list[list[tuple[str, Image.Image]]] = []
    for match in matches:
        photos: list[tuple[str, Image.Image]] = []
        for row in rows[match.concept.id]:
            if len(photos) == per_concept:
                break
            try:
                data = services.blobs.get(row.blob_key)
            except FileNotFoundError:
                logger.warning(
                    "photo %s of concept %s is missing from the photo store (%s); chat goes "
                    "on without it. Run `rapport doctor`",
                    row.id,
                    match.concept.id,
                    row.blob_key,
                )
                continue
            photos.append((row.id, policy.decode(data).image))
        chosen.append(photos)
    return chosen
