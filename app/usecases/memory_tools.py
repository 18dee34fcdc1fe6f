"""The tools a chat offers the model in ``propose`` and ``auto``, run for one user only.

The user is fixed when the tools are made (the request's own scope): no tool takes a
user, so nothing the model reads or writes (a photo's text, a description, a page)
can reach another user. Every change goes through the concept use cases, with their
quotas, validation and unit of work, recorded in the history with source ``chat``.
In ``propose`` nothing is written: each change is returned as proposed.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from app.domain.errors import ConceptNotFound
from app.domain.scope import UserScope
from app.domain.text_fields import Category, Description, Name
from app.services import Services
from app.storage.db.models import MemoryEvent
from app.storage.repository import concepts as concept_rows
from app.storage.repository import users as user_rows
from app.storage.repository.concepts import ConceptSummary
from app.usecases import concepts
from app.usecases.concepts import ConceptChanges
from app.usecases.memory_modes import MemoryMode
from retrieval.errors import RapportError
from retrieval.generators import ToolCall, ToolSession
from retrieval.names import name_key

logger = logging.getLogger(__name__)

# Bounds of one request's tool loop (not settings: they bound a model's enthusiasm).
MAX_CALLS_PER_REQUEST = 8
MAX_DELETES_PER_REQUEST = 1
TOOL_LOOP_BUDGET_S = 60.0
MAX_LISTED = 50

_PHOTO = {
    "type": "integer",
    "minimum": 1,
    "description": "which photo of this conversation, counting from 1 (the first photo sent)",
}
_CONCEPT = {"type": "string", "description": "the concept's name, e.g. <bo> or bo"}
TOOL_SPECS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }
    for name, description, properties, required in (
        (
            "remember",
            "Remember a new personal concept of the user (a pet, a person, an object), "
            "optionally with a photo of this conversation as its reference photo.",
            {
                "name": {"type": "string", "description": "a short name, e.g. <bo>"},
                "description": {"type": "string"},
                "category": {"type": "string", "description": "e.g. dog, person, mug"},
                "photo": _PHOTO,
            },
            ["name"],
        ),
        (
            "add_photo",
            "Add a photo of this conversation to a concept the user already has.",
            {"concept": _CONCEPT, "photo": _PHOTO},
            ["concept", "photo"],
        ),
        (
            "add_fact",
            "Add a fact to a concept's description.",
            {"concept": _CONCEPT, "fact": {"type": "string"}},
            ["concept", "fact"],
        ),
        (
            "update",
            "Correct a concept: a new name, description (replacing the old) or category.",
            {
                "concept": _CONCEPT,
                "name": {"type": "string"},
                "description": {"type": "string"},
                "category": {"type": "string"},
            },
            ["concept"],
        ),
        ("forget", "Forget a concept of the user.", {"concept": _CONCEPT}, ["concept"]),
        ("list_memory", "List what is remembered about the user.", {}, []),
    )
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RememberArgs(_Args):
    name: Name
    description: Description = ""
    category: Category | None = None
    photo: int | None = None


class PhotoArgs(_Args):
    concept: str
    photo: int


class FactArgs(_Args):
    concept: str
    fact: Description


class UpdateArgs(_Args):
    concept: str
    name: Name | None = None
    description: Description | None = None
    category: Category | None = None


class ConceptArgs(_Args):
    concept: str


class NoArgs(_Args):
    pass


@dataclass(frozen=True)
class MemoryChange:
    """One change the chat made (``applied``) or proposed."""

    action: Literal["created", "updated", "deleted"]
    concept_id: str | None
    name: str
    applied: bool
    tool: str
    event_id: str | None = None
    proposal: dict[str, Any] | None = None  # what to send the REST API to apply it


class _Refused(Exception):
    """A call the tools answer with an error text (fed back to the model)."""


@dataclass
class MemoryTools:
    """The tools of one chat request of one user, in ``propose`` or ``auto``."""

    services: Services
    scope: UserScope
    mode: MemoryMode
    deletes_allowed: bool
    photos: Sequence[Image.Image]  # the conversation's photos, in order
    changes: list[MemoryChange] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    deletes: int = 0

    def session(self) -> ToolSession:
        return ToolSession(
            specs=TOOL_SPECS,
            execute=self.execute,
            max_calls=MAX_CALLS_PER_REQUEST,
            time_budget_s=TOOL_LOOP_BUDGET_S,
        )

    def stop(self) -> None:
        """The client is gone: no call from now on writes anything."""
        if not self.stopped.is_set():
            self.stopped.set()
            logger.info("chat stopped by the client: its later tool calls are not run")

    def execute(self, call: ToolCall) -> str:
        """Run one call; what came of it, as the text fed back to the model."""
        if self.stopped.is_set():
            logger.info("tool call %s after the client left: not run", call.name)
            return "refused: the user left"
        handler = self._handlers().get(call.name)
        if handler is None:
            return f"error: no tool {call.name!r}; known: {', '.join(self._handlers())}"
        model, run = handler
        try:
            arguments = json.loads(call.arguments or "{}")
            args = model.model_validate(arguments)
        except (ValueError, ValidationError) as error:
            return f"error: bad arguments for {call.name}: {_short(error)}"
        try:
            return run(args)
        except _Refused as error:
            return f"refused: {error}"
        except RapportError as error:
            return f"error: {error.title}: {error.detail}"

    def _handlers(self) -> dict[str, tuple[type[_Args], Callable[[Any], str]]]:
        return {
            "remember": (RememberArgs, self._remember),
            "add_photo": (PhotoArgs, self._add_photo),
            "add_fact": (FactArgs, self._add_fact),
            "update": (UpdateArgs, self._update),
            "forget": (ConceptArgs, self._forget),
            "list_memory": (NoArgs, self._list),
        }

    # The tools.

    def _remember(self, args: RememberArgs) -> str:
        uploads = [self._photo(args.photo)] if args.photo is not None else []
        fields = {"name": args.name, "description": args.description, "category": args.category}
        if self.mode == "propose":
            return self._propose("created", None, args.name, "remember", fields)
        recorded: list[MemoryEvent] = []
        view = concepts.create_concept(
            self.services,
            scope=self.scope,
            name=args.name,
            description=args.description,
            category=args.category,
            uploads=uploads,
            source="chat",
            recorded=recorded,
        )
        self._applied("created", view.concept.id, view.concept.name, "remember", recorded)
        return f"remembered {view.concept.name} ({len(view.images)} photo)"

    def _add_photo(self, args: PhotoArgs) -> str:
        concept = self._concept(args.concept)
        upload = self._photo(args.photo)
        if self.mode == "propose":
            return self._propose("updated", concept.id, concept.name, "add_photo", {})
        recorded: list[MemoryEvent] = []
        concepts.add_images(
            self.services,
            scope=self.scope,
            concept_id=concept.id,
            uploads=[upload],
            source="chat",
            recorded=recorded,
        )
        self._applied("updated", concept.id, concept.name, "add_photo", recorded)
        return f"added photo {args.photo} to {concept.name}"

    def _add_fact(self, args: FactArgs) -> str:
        concept = self._concept(args.concept)
        description = "; ".join(part for part in (concept.description, args.fact.strip()) if part)
        return self._change(concept, ConceptChanges(description=description), "add_fact")

    def _update(self, args: UpdateArgs) -> str:
        concept = self._concept(args.concept)
        changes = ConceptChanges(args.name, args.description, args.category)
        return self._change(concept, changes, "update")

    def _forget(self, args: ConceptArgs) -> str:
        concept = self._concept(args.concept)
        if self.mode == "auto" and not self.deletes_allowed:
            raise _Refused("this app does not let the assistant forget concepts on its own")
        if self.deletes >= MAX_DELETES_PER_REQUEST:
            raise _Refused(f"at most {MAX_DELETES_PER_REQUEST} concept forgotten per message")
        self.deletes += 1
        if self.mode == "propose":
            return self._propose("deleted", concept.id, concept.name, "forget", {})
        recorded: list[MemoryEvent] = []
        concepts.delete_concept(
            self.services, scope=self.scope, concept_id=concept.id, source="chat", recorded=recorded
        )
        self._applied("deleted", concept.id, concept.name, "forget", recorded)
        return f"forgot {concept.name}"

    def _list(self, args: NoArgs) -> str:
        known = list(self._concepts().values())
        if not known:
            return "nothing is remembered about this user yet"
        lines = [
            f"{c.name}{f' ({c.category})' if c.category else ''}: {c.description or '-'}"
            for c in known[:MAX_LISTED]
        ]
        more = f"\n(and {len(known) - MAX_LISTED} more)" if len(known) > MAX_LISTED else ""
        return "\n".join(lines) + more

    # Helpers.

    def _change(self, concept: ConceptSummary, changes: ConceptChanges, tool: str) -> str:
        fields = {k: v for k, v in vars(changes).items() if v is not None}
        if self.mode == "propose":
            return self._propose("updated", concept.id, concept.name, tool, fields)
        recorded: list[MemoryEvent] = []
        view = concepts.update_concept(
            self.services,
            scope=self.scope,
            concept_id=concept.id,
            changes=changes,
            source="chat",
            recorded=recorded,
        )
        self._applied("updated", concept.id, view.concept.name, tool, recorded)
        return f"updated {view.concept.name}"

    def _propose(
        self, action: str, concept_id: str | None, name: str, tool: str, fields: dict[str, Any]
    ) -> str:
        change = MemoryChange(action, concept_id, name, False, tool, proposal=fields)  # type: ignore[arg-type]
        self.changes.append(change)
        return f"proposed (not applied: the user decides): {action} {name}"

    def _applied(
        self, action: str, concept_id: str, name: str, tool: str, recorded: list[MemoryEvent]
    ) -> None:
        event_id = recorded[-1].id if recorded else None  # the change's own history event
        change = MemoryChange(action, concept_id, name, True, tool, event_id)  # type: ignore[arg-type]
        self.changes.append(change)

    def _user_id(self, session: Any) -> int | None:
        found = user_rows.user_version(
            session=session,
            tenant_id=self.scope.tenant_id,
            external_id=self.scope.external_user_id,
        )
        return None if found is None else found[0]

    def _concepts(self) -> dict[str, ConceptSummary]:
        with self.services.sessions() as session:
            user = self._user_id(session)
            if user is None:
                return {}
            return concept_rows.concept_summaries(session=session, user_id=user)

    def _concept(self, name: str) -> ConceptSummary:
        key = name_key(name)
        known = self._concepts()
        for concept in known.values():
            if name_key(concept.name) == key:
                return concept
        names = ", ".join(sorted(c.name for c in known.values())[:MAX_LISTED]) or "none"
        raise ConceptNotFound(f"no concept named {name!r}; known: {names}")

    def _photo(self, number: int) -> bytes:
        if not 1 <= number <= len(self.photos):
            raise _Refused(f"no photo {number}: this conversation has {len(self.photos)}")
        # The conversation's copy (already decoded and reduced): stored as the concept's
        # photo through the same checks as an upload, never sent twice by the user.
        buffer = io.BytesIO()
        self.photos[number - 1].convert("RGB").save(buffer, format="JPEG", quality=92)
        return buffer.getvalue()


def _short(error: Exception) -> str:
    text = str(error).replace("\n", " ")
    return text[:300]
