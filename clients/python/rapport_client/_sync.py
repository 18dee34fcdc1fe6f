"""The blocking clients: Rapport (an app's key) and RapportAdmin (the admin key)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import httpx

from rapport_client import _api as api
from rapport_client import _models as m
from rapport_client._archive import read_export
from rapport_client._calls import Call, Progress, Retries, chunks
from rapport_client._errors import Timeout, TransportError, error_from_response
from rapport_client._events import ChatEvent, events_of
from rapport_client._photos import PhotoInput, is_url

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class _Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: Retries | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        """A client of the server at ``base_url`` with ``api_key``.

        ``timeout``: seconds (or an ``httpx.Timeout``) for each call; by default 60 s,
        10 s to connect. ``retries``: when calls are sent again (:class:`Retries`).
        ``http_client``: an httpx client of your own (proxies, TLS, transports), whose
        timeout then applies; closing this client closes it.
        """
        self._retries = retries or Retries()
        self._http = http_client or httpx.Client(timeout=timeout)
        self._base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}

    def close(self) -> None:
        """Close the connections (the client is unusable afterwards)."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, call: Call[Any], progress: Progress | None = None) -> httpx.Response:
        """A successful answer, its body not read yet (the caller closes it)."""
        attempt = 0
        while True:
            content: Any = call.content
            if content is not None and progress is not None:
                content = chunks(content, progress)
            headers = self._auth | call.headers()
            if call.content is not None:
                headers["Content-Length"] = str(len(call.content))
            request = self._http.build_request(
                call.method,
                self._base_url + call.path,
                params=call.params,
                json=call.json,
                content=content,
                headers=headers,
            )
            try:
                response = self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                wait = self._retries.after_connect_error(attempt)
                if wait is None:
                    raise TransportError(f"cannot connect to {self._base_url}: {error}") from error
                time.sleep(wait)
                attempt += 1
                continue
            except httpx.TimeoutException as error:
                raise Timeout(f"{call.method} {call.path}: no answer in time") from error
            except httpx.TransportError as error:
                raise TransportError(f"{call.method} {call.path}: {error}") from error
            if response.status_code < 400:
                return response
            try:
                response.read()
            finally:
                response.close()
            wait = self._retries.after_status(attempt, response, call.idempotent)
            if wait is None:
                raise error_from_response(response)
            time.sleep(wait)
            attempt += 1

    def _send(self, call: Call[T], progress: Progress | None = None) -> T:
        response = self._open(call, progress)
        try:
            response.read()
        except httpx.TimeoutException as error:
            raise Timeout(
                f"{call.method} {call.path}: the answer did not arrive in time"
            ) from error
        except httpx.TransportError as error:
            raise TransportError(f"{call.method} {call.path}: {error}") from error
        finally:
            response.close()
        return call.parse(response)


class Rapport(_Client):
    """rapport's API for one app (tenant), with its API key.

    Every method raises an :class:`APIError` subclass for an error answer (``NotFound``,
    ``ConceptNameTaken``, ``RateLimited``, ...), :class:`Timeout` or
    :class:`TransportError` when no answer came. Calls that read are retried on 429 and
    503 (see :class:`Retries`). ``user_id`` is the app's own id of its end user.
    """

    # Users.

    def list_users(self, *, prefix: str | None = None, page_size: int = 100) -> Iterator[m.User]:
        """Every user of the app (or those whose id starts with ``prefix``), by id; pages
        are fetched as the iterator is consumed."""
        cursor = None
        while True:
            page = self.users_page(limit=page_size, cursor=cursor, prefix=prefix)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def users_page(
        self, *, limit: int = 50, cursor: str | None = None, prefix: str | None = None
    ) -> m.UserPage:
        """One page of users; pass its ``next_cursor`` back for the next."""
        return self._send(api.list_users(limit, cursor, prefix))

    def get_user(self, user_id: str) -> m.User:
        """The user with their counts (``NotFound`` if they have never stored anything)."""
        return self._send(api.get_user(user_id))

    def set_memory(
        self,
        user_id: str,
        *,
        memory: m.MemoryMode | None = None,
        deletes: bool | None = None,
    ) -> m.User:
        """Set the user's memory settings: the widest mode their chats may use
        (``off``, ``read``, ``propose``, ``auto``) and whether ``auto`` may forget a
        concept; None leaves a setting as it is."""
        patch = m.UserPatch(memory=memory, memory_deletes=deletes)
        return self._send(api.set_memory(user_id, patch))

    def erase_user(self, user_id: str) -> None:
        """Erase a user: every concept, photo and vector of theirs."""
        self._send(api.erase_user(user_id))

    def export_user(
        self, user_id: str, destination: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Path:
        """Write the user's export (a zip that ``import_user`` and ``rapport import`` read)
        to ``destination``, streamed; ``progress`` is called with bytes received so far."""
        path = Path(destination)
        call = api.export_user(user_id)
        response = self._open(call)
        try:
            total = _length(response)
            received = 0
            with path.open("wb") as sink:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
        except httpx.TransportError as error:
            path.unlink(missing_ok=True)
            raise TransportError(f"export of {user_id!r} broke off: {error}") from error
        finally:
            response.close()
        return path

    def import_user(
        self, user_id: str, source: str | os.PathLike[str] | IO[bytes]
    ) -> list[m.Concept]:
        """Create a concept for each concept of an export, with its photos and its
        negatives, in order.

        Stops at the first error (e.g. ``ConceptNameTaken``); concepts created before it
        stay."""
        archive = read_export(os.fspath(source) if isinstance(source, os.PathLike) else source)
        created = []
        for c in archive:
            concept = self.create_concept(
                user_id, c.name, c.photos, description=c.description, category=c.category
            )
            if c.negatives:
                self.add_negatives(user_id, concept.id, c.negatives)
            created.append(concept)
        return created

    # Concepts.

    def create_concept(
        self,
        user_id: str,
        name: str,
        photos: Sequence[PhotoInput] = (),
        *,
        description: str = "",
        category: str | None = None,
        progress: Progress | None = None,
    ) -> m.Concept:
        """Register a concept with its photos (paths, bytes, binary files or PIL images;
        none: a text-only concept, found when named); ``progress`` is called with bytes
        uploaded so far."""
        return self._send(
            api.create_concept(user_id, name, photos, description, category), progress
        )

    def list_concepts(
        self, user_id: str, *, page_size: int = 100, looks_like: bool = False
    ) -> Iterator[m.Concept]:
        """Every concept of the user, oldest first; pages are fetched as it is consumed.
        ``looks_like``: set each concept's ``looks_like`` (more work for the server)."""
        cursor = None
        while True:
            page = self.concepts_page(
                user_id, limit=page_size, cursor=cursor, looks_like=looks_like
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def concepts_page(
        self,
        user_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        looks_like: bool = False,
    ) -> m.ConceptPage:
        """One page of the user's concepts; pass its ``next_cursor`` back for the next."""
        return self._send(api.list_concepts(user_id, limit, cursor, looks_like))

    def get_concept(self, user_id: str, concept_id: str, *, looks_like: bool = False) -> m.Concept:
        """One concept with its photos (and ``looks_like`` set, when asked)."""
        return self._send(api.get_concept(user_id, concept_id, looks_like))

    def update_concept(
        self,
        user_id: str,
        concept_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        category: str | None = None,
    ) -> m.Concept:
        """Change the fields given (an empty category clears it); others stay."""
        patch = m.ConceptPatch(name=name, description=description, category=category)
        return self._send(api.update_concept(user_id, concept_id, patch))

    def delete_concept(self, user_id: str, concept_id: str) -> None:
        """Delete a concept with its photos and vectors."""
        self._send(api.delete_concept(user_id, concept_id))

    # Photos.

    def add_photos(
        self,
        user_id: str,
        concept_id: str,
        photos: Sequence[PhotoInput],
        *,
        progress: Progress | None = None,
    ) -> m.Concept:
        """Add photos to a concept; the concept with all its photos."""
        return self._send(api.add_photos(user_id, concept_id, photos), progress)

    def get_photo(self, user_id: str, concept_id: str, image_id: str) -> bytes:
        """A photo's bytes as uploaded."""
        return self._send(api.get_photo(user_id, concept_id, image_id, None))

    def get_thumbnail(self, user_id: str, concept_id: str, image_id: str, size: int = 256) -> bytes:
        """A JPEG thumbnail whose longer side is at most about ``size`` pixels."""
        return self._send(api.get_photo(user_id, concept_id, image_id, size))

    def delete_photo(self, user_id: str, concept_id: str, image_id: str) -> None:
        """Delete one photo of a concept (a concept left with none is found only when
        named)."""
        self._send(api.delete_photo(user_id, concept_id, image_id))

    # Corrections.

    def add_negatives(
        self,
        user_id: str,
        concept_id: str,
        photos: Sequence[PhotoInput],
        *,
        progress: Progress | None = None,
    ) -> m.NegativePage:
        """Mark photos as not this concept ("that is not <bo>"): retrieval stops claiming
        it for photos like them. ``NegativeIsOwnPhoto`` for one of the concept's own
        photos. The answer lists all the concept's negatives."""
        return self._send(api.add_negatives(user_id, concept_id, photos), progress)

    def list_negatives(self, user_id: str, concept_id: str) -> m.NegativePage:
        """The photos marked as not this concept, oldest first (bytes: ``get_photo``)."""
        return self._send(api.list_negatives(user_id, concept_id))

    def delete_negative(self, user_id: str, concept_id: str, image_id: str) -> None:
        """Remove one correction."""
        self._send(api.delete_negative(user_id, concept_id, image_id))

    # Memory history.

    def list_history(self, user_id: str, *, page_size: int = 100) -> Iterator[m.HistoryEvent]:
        """Every change to the user's concepts (API, import, chat, undo), newest first;
        pages are fetched as the iterator is consumed."""
        cursor = None
        while True:
            page = self.history_page(user_id, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def history_page(
        self, user_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> m.HistoryPage:
        """One page of the user's history; pass its ``next_cursor`` back for the next."""
        return self._send(api.history(user_id, limit, cursor))

    def undo(self, user_id: str, event_id: str) -> m.Undo:
        """Undo one change made by chat (``NotUndoable`` for any other, or one undone
        already); the answer lists what the undo changed."""
        return self._send(api.undo(user_id, event_id))

    # Retrieval and chat.

    def retrieve(
        self,
        user_id: str,
        image: PhotoInput | None = None,
        *,
        text: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> m.Retrieval:
        """Which of the user's concepts the photo shows or the text names, best first.

        ``image`` is a path, bytes, a binary file, a PIL image or an http(s) URL, which
        this client downloads (without the API key) and sends."""
        if is_url(image):
            image = _download(str(image), self._http.timeout)
        return self._send(api.retrieve(user_id, image, text, top_k, min_score))

    def chat(
        self,
        user_id: str,
        question: str | None = None,
        *,
        image: PhotoInput | None = None,
        messages: Sequence[m.ChatMessage | dict[str, Any]] | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        memory: m.MemoryMode | None = None,
    ) -> m.ChatAnswer:
        """An answer with the user's concepts in the prompt: ``question`` (with ``image``:
        a path, bytes, a file, a PIL image or a URL the server fetches) or ``messages``
        (OpenAI-style). Without a generator on the server, ``answer`` is empty and
        ``prompt`` holds the personalized prompt. ``memory``: this chat's memory mode,
        never wider than the user's (``set_memory``); ``memory_changes`` lists what it
        changed or proposed."""
        request = api.chat_request(
            question,
            image,
            messages,
            top_k,
            min_score,
            max_new_tokens,
            temperature,
            False,
            memory,
        )
        return self._send(api.chat(user_id, request))

    def chat_stream(
        self,
        user_id: str,
        question: str | None = None,
        *,
        image: PhotoInput | None = None,
        messages: Sequence[m.ChatMessage | dict[str, Any]] | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        memory: m.MemoryMode | None = None,
    ) -> Iterator[ChatEvent]:
        """The answer as it is generated: a ``ConceptsEvent``, ``DeltaEvent``s, a
        ``MemoryEvent`` in memory ``propose`` and ``auto``, then a ``DoneEvent``. An error
        before the stream starts raises at once; one during it raises from the iterator.
        Closing the iterator early stops the generation."""
        request = api.chat_request(
            question,
            image,
            messages,
            top_k,
            min_score,
            max_new_tokens,
            temperature,
            True,
            memory,
        )
        response = self._open(api.chat(user_id, request))
        return self._events(response)

    @staticmethod
    def _events(response: httpx.Response) -> Iterator[ChatEvent]:
        try:
            yield from events_of(response.iter_lines())
        except httpx.TimeoutException as error:
            raise Timeout("the chat stream stalled") from error
        except httpx.TransportError as error:
            raise TransportError(f"the chat stream broke off: {error}") from error
        finally:
            response.close()

    def playground(
        self,
        user_id: str,
        question: str,
        *,
        image: PhotoInput | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> m.Playground:
        """A dry run of chat: the photo's regions and scores, the concepts found and named,
        and the exact prompt, without calling the generator."""
        return self._send(api.playground(user_id, question, image, top_k, min_score))

    # Health.

    def health(self) -> bool:
        """Whether the server process answers (``/healthz``)."""
        return self._send(api.health())

    def ready(self) -> m.Readiness:
        """Whether the database, the photo store and the encoder are ready (``/readyz``);
        not ready is an answer here, not an error."""
        try:
            response = self._http.get(self._base_url + "/readyz")
        except httpx.TimeoutException as error:
            raise Timeout("GET /readyz: no answer in time") from error
        except httpx.TransportError as error:
            raise TransportError(f"GET /readyz: {error}") from error
        if response.status_code not in (200, 503):
            raise error_from_response(response)
        return m.Readiness.model_validate_json(response.content)


class RapportAdmin(_Client):
    """Tenants and their keys, with the server's admin key (RAPPORT_ADMIN_KEY)."""

    def create_tenant(self, name: str) -> m.Tenant:
        """Create a tenant (an app); ``Conflict`` if the name exists."""
        return self._send(api.create_tenant(name))

    def list_tenants(self) -> list[m.Tenant]:
        """Every tenant."""
        return self._send(api.list_tenants())

    def create_key(self, tenant: str, *, expires_at: datetime | None = None) -> m.NewApiKey:
        """A new key for the tenant; ``key`` is in this answer only."""
        return self._send(api.create_key(tenant, expires_at))

    def list_keys(self, tenant: str) -> list[m.ApiKey]:
        """The tenant's keys, by prefix (never the keys themselves)."""
        return self._send(api.list_keys(tenant))

    def revoke_key(self, tenant: str, prefix: str) -> None:
        """Revoke a key by its prefix."""
        self._send(api.revoke_key(tenant, prefix))

    def tenant_usage(self, tenant: str) -> m.TenantUsage:
        """What the tenant stores: users, concepts, photos and their bytes."""
        return self._send(api.tenant_usage(tenant))


def _length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def _download(url: str, timeout: httpx.Timeout) -> bytes:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as error:
        raise TransportError(f"cannot download {url}: {error}") from error
    if response.status_code >= 400:
        raise TransportError(f"cannot download {url}: {response.status_code}")
    return response.content
