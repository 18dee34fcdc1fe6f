"""What each API call sends and how its answer is read, shared by the sync and async
clients, which differ only in how they send it."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from rapport_client._errors import retry_after_s
from rapport_client._models import Body
from rapport_client._photos import PhotoInput, read_photo

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Called with (bytes sent or received so far, total bytes or None when unknown).
Progress = Callable[[int, int | None], None]
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Retries:
    """When to send a call again: on ``statuses`` (429 and 503 by default) and on a
    connection that could not be made, at most ``attempts`` times in all.

    The wait is the server's Retry-After when it sends one, else ``backoff_s`` doubled at
    each attempt, with jitter; a Retry-After over ``max_wait_s`` is not waited for (the
    error is raised). Calls that change data (creating a concept, adding photos, chat)
    are retried on a status only with ``non_idempotent=True``.
    """

    attempts: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0
    non_idempotent: bool = False
    statuses: frozenset[int] = frozenset({429, 503})

    def after_status(
        self, attempt: int, response: httpx.Response, idempotent: bool
    ) -> float | None:
        """Seconds to wait before sending again after this answer, or None: do not."""
        if response.status_code not in self.statuses:
            return None
        if not (idempotent or self.non_idempotent):
            return None
        return self._wait(attempt, retry_after_s(response.headers))

    def after_connect_error(self, attempt: int) -> float | None:
        """Seconds to wait before trying again to connect (nothing was sent), or None."""
        return self._wait(attempt, None)

    def _wait(self, attempt: int, retry_after: float | None) -> float | None:
        if attempt + 1 >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait_s else None
        return min(self.max_wait_s, self.backoff_s * 2**attempt * (0.5 + random.random() / 2))


NO_RETRIES = Retries(attempts=1)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP exchange: what to send, whether sending it twice is harmless, and how to
    read a successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    idempotent: bool = True

    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type else {}


def chunks(content: bytes, progress: Progress) -> Iterator[bytes]:
    total = len(content)
    progress(0, total)
    for start in range(0, total, CHUNK):
        piece = content[start : start + CHUNK]
        yield piece
        progress(start + len(piece), total)


def segment(value: str) -> str:
    """A path segment (a user id may hold any character but a control)."""
    return quote(value, safe="")


def user_path(user_id: str, *rest: str) -> str:
    return "/".join(["/v1/users", segment(user_id), *(segment(part) for part in rest)])


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate_json(response.content)


def model_list(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    return lambda response: [cls.model_validate(item) for item in response.json()]


def nothing(response: httpx.Response) -> None:
    return None


def raw_bytes(response: httpx.Response) -> bytes:
    return response.content


def body(value: Body) -> dict[str, Any]:
    """A request body as JSON, without its unset fields."""
    return value.model_dump(mode="json", exclude_none=True)


def params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def multipart(
    fields: Mapping[str, str | None], photos: Sequence[PhotoInput], field: str
) -> tuple[bytes, str]:
    """A multipart/form-data body (and its content type) with each photo as ``field``."""
    files = [(field, read_photo(photo, i)) for i, photo in enumerate(photos)]
    request = httpx.Request(
        "POST",
        "http://body.invalid/",
        data={k: v for k, v in fields.items() if v is not None},
        files=files,
    )
    return request.read(), request.headers["content-type"]


def photo_upload(
    method_path: tuple[str, str],
    fields: Mapping[str, str | None],
    photos: Sequence[PhotoInput],
    parse: Callable[[httpx.Response], T],
    *,
    field: str,
    idempotent: bool,
) -> Call[T]:
    if isinstance(photos, str | bytes) or not isinstance(photos, Sequence):
        raise TypeError("photos is a list (of paths, bytes, files or PIL images)")
    content, content_type = multipart(fields, photos, field)
    method, path = method_path
    return Call(
        method,
        path,
        parse,
        content=content,
        content_type=content_type,
        idempotent=idempotent,
    )
