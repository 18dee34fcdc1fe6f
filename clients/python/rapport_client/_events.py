"""The typed events of a streamed chat: ``concepts``, then ``delta``s, in memory
``propose`` and ``auto`` a ``memory`` event, then ``done``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal, TypeAlias

from rapport_client._errors import error_from_problem
from rapport_client._models import MemoryChange, MemoryMode, Model, Usage, UsedConcept


class ConceptsEvent(Model):
    """The concepts put into the prompt (sent before any text)."""

    type: Literal["concepts"] = "concepts"
    concepts: list[UsedConcept]


class DeltaEvent(Model):
    """The next piece of the answer."""

    type: Literal["delta"] = "delta"
    text: str


class MemoryEvent(Model):
    """In memory ``propose`` and ``auto``, before ``done``: the changes made or proposed."""

    type: Literal["memory"] = "memory"
    memory: MemoryMode
    memory_changes: list[MemoryChange]


class DoneEvent(Model):
    """The end: the whole answer, why it ended, tokens used and the model."""

    type: Literal["done"] = "done"
    answer: str
    finish_reason: str
    usage: Usage
    model: str


ChatEvent: TypeAlias = ConceptsEvent | DeltaEvent | MemoryEvent | DoneEvent
EVENTS: dict[str, type[ChatEvent]] = {
    "concepts": ConceptsEvent,
    "delta": DeltaEvent,
    "memory": MemoryEvent,
    "done": DoneEvent,
}


class SSEDecoder:
    """Server-sent events from lines, as (event name, data)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str | None, str] | None:
        """The event that this line completes, if any."""
        if not line:
            if not self._data:
                self._event = None
                return None
            done = (self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return done
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None

    def flush(self) -> tuple[str | None, str] | None:
        return self.feed("")


def to_event(name: str | None, data: str) -> ChatEvent | None:
    """The typed event; an ``error`` event raises its typed error; unknown events are
    skipped (None), so that a newer server's extra events do not break this client."""
    payload = json.loads(data)
    if name == "error":
        raise error_from_problem(payload)
    cls = EVENTS.get(name or "")
    return None if cls is None else cls.model_validate(payload)


def events_of(lines: Iterable[str]) -> Iterable[ChatEvent]:
    decoder = SSEDecoder()
    for line in lines:
        raw = decoder.feed(line)
        if raw is not None and (event := to_event(*raw)) is not None:
            yield event
    raw = decoder.flush()
    if raw is not None and (event := to_event(*raw)) is not None:
        yield event
