"""The asyncio clients: AsyncRapport and AsyncRapportAdmin, method for method as the
blocking ones (``await`` each call; ``async for`` over listings and chat streams).

Reading photos and archives, encoding bodies and writing exports run in a worker thread,
so that the event loop never waits on a disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Sequence
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
from rapport_client._events import ChatEvent, SSEDecoder, to_event
from rapport_client._photos import PhotoInput, is_url
from rapport_client._sync import DEFAULT_TIMEOUT, _length

T = TypeVar("T")


async def _chunks(content: bytes, progress: Progress) -> AsyncIterator[bytes]:
    for piece in chunks(content, progress):
        yield piece


class _AsyncClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: Retries | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        """A client of the server at ``base_url`` with ``api_key``.

        ``timeout``: seconds (or an ``httpx.Timeout``) for each call; by default 60 s,
        10 s to connect. ``retries``: when calls are sent again (:class:`Retries`).
        ``http_client``: an httpx client of your own (proxies, TLS, transports), whose
        timeout then applies; closing this client closes it.
        """
        self._retries = retries or Retries()
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}

    async def close(self) -> None:
        """Close the connections (the client is unusable afterwards)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _open(self, call: Call[Any], progress: Progress | None = None) -> httpx.Response:
        attempt = 0
        while True:
            content: Any = call.content
            if content is not None and progress is not None:
                content = _chunks(content, progress)
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
                response = await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                wait = self._retries.after_connect_error(attempt)
                if wait is None:
                    raise TransportError(f"cannot connect to {self._base_url}: {error}") from error
                await asyncio.sleep(wait)
                attempt += 1
                continue
            except httpx.TimeoutException as error:
                raise Timeout(f"{call.method} {call.path}: no answer in time") from error
            except httpx.TransportError as error:
                raise TransportError(f"{call.method} {call.path}: {error}") from error
            if response.status_code < 400:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            wait = self._retries.after_status(attempt, response, call.idempotent)
            if wait is None:
                raise error_from_response(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def _send(self, call: Call[T], progress: Progress | None = None) -> T:
        response = await self._open(call, progress)
        try:
            await response.aread()
        except httpx.TimeoutException as error:
            raise Timeout(
                f"{call.method} {call.path}: the answer did not arrive in time"
            ) from error
        except httpx.TransportError as error:
            raise TransportError(f"{call.method} {call.path}: {error}") from error
        finally:
            await response.aclose()
        return call.parse(response)


class AsyncRapport(_AsyncClient):
    """rapport's API for one app, for asyncio: the same methods as :class:`Rapport`."""

    async def list_users(
        self, *, prefix: str | None = None, page_size: int = 100
    ) -> AsyncIterator[m.User]:
        """See :meth:`Rapport.list_users` (``async for``)."""
        cursor = None
        while True:
            page = await self.users_page(limit=page_size, cursor=cursor, prefix=prefix)
            for user in page.items:
                yield user
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def users_page(
        self, *, limit: int = 50, cursor: str | None = None, prefix: str | None = None
    ) -> m.UserPage:
        """See :meth:`Rapport.users_page`."""
        return await self._send(api.list_users(limit, cursor, prefix))

    async def get_user(self, user_id: str) -> m.User:
        """See :meth:`Rapport.get_user`."""
        return await self._send(api.get_user(user_id))

    async def set_memory(
        self,
        user_id: str,
        *,
        memory: m.MemoryMode | None = None,
        deletes: bool | None = None,
    ) -> m.User:
        """See :meth:`Rapport.set_memory`."""
        patch = m.UserPatch(memory=memory, memory_deletes=deletes)
        return await self._send(api.set_memory(user_id, patch))

    async def erase_user(self, user_id: str) -> None:
        """See :meth:`Rapport.erase_user`."""
        await self._send(api.erase_user(user_id))

    async def export_user(
        self, user_id: str, destination: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Path:
        """See :meth:`Rapport.export_user`."""
        path = Path(destination)
        response = await self._open(api.export_user(user_id))
        try:
            total = _length(response)
            received = 0
            with path.open("wb") as sink:
                async for chunk in response.aiter_bytes():
                    await asyncio.to_thread(sink.write, chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
        except httpx.TransportError as error:
            path.unlink(missing_ok=True)
            raise TransportError(f"export of {user_id!r} broke off: {error}") from error
        finally:
            await response.aclose()
        return path

    async def import_user(
        self, user_id: str, source: str | os.PathLike[str] | IO[bytes]
    ) -> list[m.Concept]:
        """See :meth:`Rapport.import_user`."""
        path_or_file = os.fspath(source) if isinstance(source, os.PathLike) else source
        archive = await asyncio.to_thread(read_export, path_or_file)
        created = []
        for c in archive:
            concept = await self.create_concept(
                user_id, c.name, c.photos, description=c.description, category=c.category
            )
            if c.negatives:
                await self.add_negatives(user_id, concept.id, c.negatives)
            created.append(concept)
        return created

    async def create_concept(
        self,
        user_id: str,
        name: str,
        photos: Sequence[PhotoInput] = (),
        *,
        description: str = "",
        category: str | None = None,
        progress: Progress | None = None,
    ) -> m.Concept:
        """See :meth:`Rapport.create_concept`."""
        call = await asyncio.to_thread(
            api.create_concept, user_id, name, photos, description, category
        )
        return await self._send(call, progress)

    async def list_concepts(
        self, user_id: str, *, page_size: int = 100, looks_like: bool = False
    ) -> AsyncIterator[m.Concept]:
        """See :meth:`Rapport.list_concepts` (``async for``)."""
        cursor = None
        while True:
            page = await self.concepts_page(
                user_id, limit=page_size, cursor=cursor, looks_like=looks_like
            )
            for concept in page.items:
                yield concept
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def concepts_page(
        self,
        user_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        looks_like: bool = False,
    ) -> m.ConceptPage:
        """See :meth:`Rapport.concepts_page`."""
        return await self._send(api.list_concepts(user_id, limit, cursor, looks_like))

    async def get_concept(
        self, user_id: str, concept_id: str, *, looks_like: bool = False
    ) -> m.Concept:
        """See :meth:`Rapport.get_concept`."""
        return await self._send(api.get_concept(user_id, concept_id, looks_like))

    async def update_concept(
        self,
        user_id: str,
        concept_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        category: str | None = None,
    ) -> m.Concept:
        """See :meth:`Rapport.update_concept`."""
        patch = m.ConceptPatch(name=name, description=description, category=category)
        return await self._send(api.update_concept(user_id, concept_id, patch))

    async def delete_concept(self, user_id: str, concept_id: str) -> None:
        """See :meth:`Rapport.delete_concept`."""
        await self._send(api.delete_concept(user_id, concept_id))

    async def add_photos(
        self,
        user_id: str,
        concept_id: str,
        photos: Sequence[PhotoInput],
        *,
        progress: Progress | None = None,
    ) -> m.Concept:
        """See :meth:`Rapport.add_photos`."""
        call = await asyncio.to_thread(api.add_photos, user_id, concept_id, photos)
        return await self._send(call, progress)

    async def get_photo(self, user_id: str, concept_id: str, image_id: str) -> bytes:
        """See :meth:`Rapport.get_photo`."""
        return await self._send(api.get_photo(user_id, concept_id, image_id, None))

    async def get_thumbnail(
        self, user_id: str, concept_id: str, image_id: str, size: int = 256
    ) -> bytes:
        """See :meth:`Rapport.get_thumbnail`."""
        return await self._send(api.get_photo(user_id, concept_id, image_id, size))

    async def delete_photo(self, user_id: str, concept_id: str, image_id: str) -> None:
        """See :meth:`Rapport.delete_photo`."""
        await self._send(api.delete_photo(user_id, concept_id, image_id))

    async def add_negatives(
        self,
        user_id: str,
        concept_id: str,
        photos: Sequence[PhotoInput],
        *,
        progress: Progress | None = None,
    ) -> m.NegativePage:
        """See :meth:`Rapport.add_negatives`."""
        call = await asyncio.to_thread(api.add_negatives, user_id, concept_id, photos)
        return await self._send(call, progress)

    async def list_negatives(self, user_id: str, concept_id: str) -> m.NegativePage:
        """See :meth:`Rapport.list_negatives`."""
        return await self._send(api.list_negatives(user_id, concept_id))

    async def delete_negative(self, user_id: str, concept_id: str, image_id: str) -> None:
        """See :meth:`Rapport.delete_negative`."""
        await self._send(api.delete_negative(user_id, concept_id, image_id))

    async def list_history(
        self, user_id: str, *, page_size: int = 100
    ) -> AsyncIterator[m.HistoryEvent]:
        """See :meth:`Rapport.list_history` (``async for``)."""
        cursor = None
        while True:
            page = await self.history_page(user_id, limit=page_size, cursor=cursor)
            for event in page.items:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def history_page(
        self, user_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> m.HistoryPage:
        """See :meth:`Rapport.history_page`."""
        return await self._send(api.history(user_id, limit, cursor))

    async def undo(self, user_id: str, event_id: str) -> m.Undo:
        """See :meth:`Rapport.undo`."""
        return await self._send(api.undo(user_id, event_id))

    async def retrieve(
        self,
        user_id: str,
        image: PhotoInput | None = None,
        *,
        text: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> m.Retrieval:
        """See :meth:`Rapport.retrieve`."""
        if is_url(image):
            image = await _download(str(image), self._http.timeout)
        call = await asyncio.to_thread(api.retrieve, user_id, image, text, top_k, min_score)
        return await self._send(call)

    async def chat(
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
        """See :meth:`Rapport.chat`."""
        request = await asyncio.to_thread(
            api.chat_request,
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
        return await self._send(api.chat(user_id, request))

    async def chat_stream(
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
    ) -> AsyncIterator[ChatEvent]:
        """See :meth:`Rapport.chat_stream`: ``async for event in await
        client.chat_stream(...)``."""
        request = await asyncio.to_thread(
            api.chat_request,
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
        response = await self._open(api.chat(user_id, request))
        return self._events(response)

    @staticmethod
    async def _events(response: httpx.Response) -> AsyncIterator[ChatEvent]:
        decoder = SSEDecoder()
        try:
            async for line in response.aiter_lines():
                for event in _typed(decoder.feed(line)):
                    yield event
            for event in _typed(decoder.flush()):
                yield event
        except httpx.TimeoutException as error:
            raise Timeout("the chat stream stalled") from error
        except httpx.TransportError as error:
            raise TransportError(f"the chat stream broke off: {error}") from error
        finally:
            await response.aclose()

    async def playground(
        self,
        user_id: str,
        question: str,
        *,
        image: PhotoInput | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> m.Playground:
        """See :meth:`Rapport.playground`."""
        call = await asyncio.to_thread(api.playground, user_id, question, image, top_k, min_score)
        return await self._send(call)

    async def health(self) -> bool:
        """See :meth:`Rapport.health`."""
        return await self._send(api.health())

    async def ready(self) -> m.Readiness:
        """See :meth:`Rapport.ready`."""
        try:
            response = await self._http.get(self._base_url + "/readyz")
        except httpx.TimeoutException as error:
            raise Timeout("GET /readyz: no answer in time") from error
        except httpx.TransportError as error:
            raise TransportError(f"GET /readyz: {error}") from error
        if response.status_code not in (200, 503):
            raise error_from_response(response)
        return m.Readiness.model_validate_json(response.content)


class AsyncRapportAdmin(_AsyncClient):
    """Tenants and their keys, for asyncio: the same methods as :class:`RapportAdmin`."""

    async def create_tenant(self, name: str) -> m.Tenant:
        """See :meth:`RapportAdmin.create_tenant`."""
        return await self._send(api.create_tenant(name))

    async def list_tenants(self) -> list[m.Tenant]:
        """See :meth:`RapportAdmin.list_tenants`."""
        return await self._send(api.list_tenants())

    async def create_key(self, tenant: str, *, expires_at: datetime | None = None) -> m.NewApiKey:
        """See :meth:`RapportAdmin.create_key`."""
        return await self._send(api.create_key(tenant, expires_at))

    async def list_keys(self, tenant: str) -> list[m.ApiKey]:
        """See :meth:`RapportAdmin.list_keys`."""
        return await self._send(api.list_keys(tenant))

    async def revoke_key(self, tenant: str, prefix: str) -> None:
        """See :meth:`RapportAdmin.revoke_key`."""
        await self._send(api.revoke_key(tenant, prefix))

    async def tenant_usage(self, tenant: str) -> m.TenantUsage:
        """See :meth:`RapportAdmin.tenant_usage`."""
        return await self._send(api.tenant_usage(tenant))


def _typed(raw: tuple[str | None, str] | None) -> Iterator[ChatEvent]:
    if raw is not None and (event := to_event(*raw)) is not None:
        yield event


async def _download(url: str, timeout: httpx.Timeout) -> bytes:
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError as error:
        raise TransportError(f"cannot download {url}: {error}") from error
    if response.status_code >= 400:
        raise TransportError(f"cannot download {url}: {response.status_code}")
    return response.content
