"""Caps on request bodies: their size (from Content-Length, and while they stream in) and
the time they take to arrive, so that a body that never ends (slow loris) cannot hold a
connection and a worker's memory forever.

JSON bodies are small except on the routes that carry photos as base64 (those parse
through ``app.http.json_body``): elsewhere (a concept's PATCH, the admin API) FastAPI
parses them on the event loop, and a 48 MB list of empty objects stalled every tenant
for a second. They are capped at SMALL_JSON_BYTES.
"""

from __future__ import annotations

import re

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import error_answer

SMALL_JSON_BYTES = 1024 * 1024
# The routes whose JSON may carry photos (base64): the request's whole cap applies.
_PHOTO_JSON = re.compile(r"^/v1/(users/[^/]+/(chat|playground|retrieve)|chat/completions)$")


class BodyTooLarge(HTTPException):
    # An HTTPException, so that FastAPI's body parsing lets it through to the error handler.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before reading them whole, and bodies
    still arriving ``timeout_s`` after the request began with 408."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if _is_json(scope) and not _PHOTO_JSON.match(scope.get("path", "")):
            limit = min(limit, SMALL_JSON_BYTES)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            error = BodyTooLarge(limit)
            response = error_answer(scope["path"], 413, "Payload too large", str(error.detail))
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received, complete = 0, False
        deadline = anyio.current_time() + self.timeout_s

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:
                # After the body, receive() only waits for a disconnect: no deadline.
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    complete = not message.get("more_body", False)
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message
            raise BodyTimeout(self.timeout_s)

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # FastAPI reads a body without a content type as JSON
