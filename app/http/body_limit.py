"""Caps on request bodies: their size (from Content-Length, and while they stream in) and
the time they take to arrive, so that a body that never ends (slow loris) cannot hold a
connection and a worker's memory forever."""

from __future__ import annotations

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import error_answer


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
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
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
                    if received > self.max_bytes:
                        raise BodyTooLarge(self.max_bytes)
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
