"""RAP's prompt: the query photo, each retrieved concept, then the question.

``choose_concepts`` picks the concepts a prompt includes, ``compose_prompt`` lays
out exactly those, and ``build_prompt`` does both; one renderer per kind of
generator (``to_openai_messages``, ``to_transformers_conversation``).
"""

from __future__ import annotations

import base64
import html
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from retrieval.config import PromptConfig
from retrieval.errors import InvalidRequest
from retrieval.names import name_key, named_in
from retrieval.visual_prompt import VISUAL_NOTE, draw_boxes

# "<" where a tag could start: before a word, or a "/", after any spaces.
_TAG_OPENER = re.compile(r"<(?=\s*/?\s*\w)")


@dataclass(frozen=True)
class PromptConcept:
    """A retrieved concept: reference photos are RGB, best first; ``id`` is the caller's
    own id for it, carried into ``Prompt.concepts`` so nobody matches them back by name."""

    name: str
    description: str
    reference_images: tuple[Image.Image, ...]
    score: float
    box: tuple[int, int, int, int] | None = None
    id: str | None = None
    # False: named in the question but not recognised in the photo (the block says so).
    seen: bool | None = None


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["system", "user", "assistant"]
    text: str
    images: tuple[Image.Image, ...] = ()


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    image: Image.Image


@dataclass(frozen=True)
class PromptMessage:
    role: str
    parts: tuple[TextPart | ImagePart, ...]


@dataclass(frozen=True)
class Prompt:
    """Messages ready to render, and the concepts they actually include."""

    messages: tuple[PromptMessage, ...]
    concepts: tuple[PromptConcept, ...]


def latest_query_turn(turns: Sequence[ChatTurn], names: Iterable[str]) -> int | None:
    """Index of the latest user turn with a photo or naming one of ``names``; None if none does."""
    names = list(names)
    for index in range(len(turns) - 1, -1, -1):
        turn = turns[index]
        if turn.role == "user" and (turn.images or named_in(turn.text, names)):
            return index
    return None


def build_prompt(
    turns: Sequence[ChatTurn],
    concepts: Sequence[PromptConcept],
    config: PromptConfig = PromptConfig(),
    *,
    query_turn: int | None = None,
) -> Prompt:
    """RAP's prompt for a conversation and the concepts retrieved for it: those named in
    the query turn first, then the best scores, up to ``config.max_concepts``
    (``choose_concepts``), laid out by ``compose_prompt``."""
    query_turn = _query_turn(turns, concepts, query_turn)
    chosen = choose_concepts(concepts, turns[query_turn].text, config.max_concepts)
    return compose_prompt(turns, chosen, config, query_turn=query_turn)


def compose_prompt(
    turns: Sequence[ChatTurn],
    chosen: Sequence[PromptConcept],
    config: PromptConfig = PromptConfig(),
    *,
    query_turn: int | None = None,
) -> Prompt:
    """RAP's prompt with exactly the ``chosen`` concepts, in their order.

    With concepts, rapport's instruction opens the prompt (the client's leading
    system turns follow it in the same system message), and the concept block
    goes into ``query_turn`` (default: ``latest_query_turn``, else the last user
    turn) right after its own photos and before its text.
    Without concepts the prompt is the conversation as it is.
    Raises InvalidRequest when the conversation has no user turn.
    """
    query_turn = _query_turn(turns, chosen, query_turn)
    if not chosen:
        return Prompt(tuple(_message(turn) for turn in turns), ())

    leading = 0
    while leading < len(turns) and turns[leading].role == "system":
        leading += 1
    query_images, colours = _visual_marks(turns[query_turn], chosen, config)
    instruction = f"{config.instruction} {VISUAL_NOTE}" if colours else config.instruction
    system_parts: list[TextPart | ImagePart] = [*_text(instruction)]
    for turn in turns[:leading]:
        system_parts.extend(_message(turn).parts)
    messages = [PromptMessage("system", tuple(system_parts))] if system_parts else []
    for index in range(leading, len(turns)):
        turn = turns[index]
        if index == query_turn:
            block = [
                part
                for c in chosen
                for part in (
                    [
                        TextPart(
                            f"The object in the {colours[id(c)]} box is {_name(c.name)}.\n"
                            + concept_text(c)
                        )
                    ]
                    if id(c) in colours
                    else _concept_parts(c, config)
                )
            ]
            parts = [*map(ImagePart, query_images), *block, *_text(turn.text)]
            messages.append(PromptMessage(turn.role, tuple(parts)))
        else:
            messages.append(_message(turn))
    return Prompt(tuple(messages), tuple(chosen))


def _query_turn(
    turns: Sequence[ChatTurn], concepts: Sequence[PromptConcept], query_turn: int | None
) -> int:
    user_turns = [i for i, turn in enumerate(turns) if turn.role == "user"]
    if not user_turns:
        raise InvalidRequest("the conversation needs at least one user turn")
    if query_turn is None:
        found = latest_query_turn(turns, (c.name for c in concepts))
        return user_turns[-1] if found is None else found
    if not 0 <= query_turn < len(turns) or turns[query_turn].role != "user":
        raise InvalidRequest(f"turn {query_turn} is not a user turn")
    return query_turn


# A concept the question names that the decision did not find in the photo.
NOT_SEEN_NOTE = "\n(Named in the question; not recognised in the photo: check the reference photo.)"


def concept_text(concept: PromptConcept) -> str:
    """The delimited "Name: ..., Info: ..." block; user text can neither leave it nor span lines."""
    note = NOT_SEEN_NOTE if concept.seen is False else ""
    return (
        f"<concept>\nName: {_name(concept.name)}, Info: {_data(concept.description)}{note}"
        "\n</concept>"
    )


def to_openai_messages(prompt: Prompt, *, image_max_side: int = 1024) -> list[dict]:
    """OpenAI chat messages; images become JPEG data URLs no larger than ``image_max_side``.

    A message without images has a plain string as content, which every
    OpenAI-compatible server accepts; the others have a list of content parts.
    """
    rendered: list[dict] = []
    for message in prompt.messages:
        if not any(isinstance(part, ImagePart) for part in message.parts):
            text = "\n\n".join(p.text for p in message.parts if isinstance(p, TextPart))
            rendered.append({"role": message.role, "content": text})
            continue
        content: list[dict] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            else:
                url = "data:image/jpeg;base64," + _jpeg_base64(part.image, image_max_side)
                content.append({"type": "image_url", "image_url": {"url": url}})
        rendered.append({"role": message.role, "content": content})
    return rendered


def to_transformers_conversation(
    prompt: Prompt, *, image_max_side: int | None = None
) -> tuple[list[dict], list[Image.Image]]:
    """The conversation for ``processor.apply_chat_template`` and its RGB images in order.

    Images are downscaled to ``image_max_side`` when given: processors with dynamic
    resolution (Qwen2-VL) would turn a big photo into thousands of tokens.
    """
    conversation: list[dict] = []
    images: list[Image.Image] = []
    for message in prompt.messages:
        content: list[dict] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            else:
                content.append({"type": "image"})
                images.append(_fit(_rgb(part.image), image_max_side))
        conversation.append({"role": message.role, "content": content})
    return conversation, images


def choose_concepts(
    concepts: Sequence[PromptConcept], query_text: str, limit: int
) -> list[PromptConcept]:
    """The concepts a prompt includes: those named in ``query_text`` first, then by score."""
    named = named_in(query_text, (c.name for c in concepts))
    # Stable: equal keys keep the caller's order.
    ranked = sorted(concepts, key=lambda c: (name_key(c.name) not in named, -c.score))
    return ranked[: max(limit, 0)]


def _visual_marks(
    turn: ChatTurn, chosen: Sequence[PromptConcept], config: PromptConfig
) -> tuple[tuple[Image.Image, ...], dict[int, str]]:
    """The query turn's photos (boxes drawn in visual mode) and each boxed concept's colour."""
    boxed = [c for c in chosen if c.box is not None]
    if config.mode != "visual" or len(turn.images) != 1 or not boxed:
        return turn.images, {}
    marked, names = draw_boxes(turn.images[0], [c.box for c in boxed if c.box is not None])
    return (marked,), {id(c): name for c, name in zip(boxed, names, strict=True) if name}


def _concept_parts(concept: PromptConcept, config: PromptConfig) -> list[TextPart | ImagePart]:
    photos = concept.reference_images[: max(config.max_reference_images, 0)]
    return [*map(ImagePart, photos), TextPart(concept_text(concept))]


def _message(turn: ChatTurn) -> PromptMessage:
    return PromptMessage(turn.role, (*map(ImagePart, turn.images), *_text(turn.text)))


def _text(text: str) -> tuple[TextPart, ...]:
    return (TextPart(text),) if text else ()


def _data(text: str) -> str:
    """User text as it goes into a concept block: one line, and no tag of any kind, so it
    can't close its block. NFKC first (fullwidth brackets become brackets), entities
    decoded ("&lt;"), format characters dropped (zero-width spaces), then every "<" that
    could open a tag, whatever word follows (look-alike letters too), becomes U+2039."""
    text = unicodedata.normalize("NFKC", html.unescape(unicodedata.normalize("NFKC", text)))
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return _TAG_OPENER.sub("\u2039", " ".join(text.split()))


def _name(name: str) -> str:
    """A concept's name for the prompt: "<bo>" keeps its own brackets, its inside is data."""
    inner = name.strip()
    if len(inner) > 2 and inner.startswith("<") and inner.endswith(">"):
        return f"<{_data(inner[1:-1])}>"
    return _data(inner)


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _fit(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None or max(image.size) <= max_side:
        return image
    image = image.copy()
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def _jpeg_base64(image: Image.Image, max_side: int) -> str:
    image = _fit(_rgb(image), max_side)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
