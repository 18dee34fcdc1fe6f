"""Server-sent events from a blocking generator stream, without blocking the event loop."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from app.http.errors import status_of
from retrieval.errors import RapportError
from retrieval.generators import Generation, Stream

logger = logging.getLogger(__name__)
_END = object()


def sse(data: Any, event: str | None = None) -> bytes:
    """One event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class StartedStream:
    """A stream whose first item has been produced, so that a failing backend is
    still answered with an HTTP error status rather than a broken event stream."""

    def __init__(
        self, stream: Stream, first: object, on_stop: Callable[[], None] | None = None
    ) -> None:
        self._stream = stream
        self._first = first
        self._on_stop = on_stop

    @classmethod
    async def start(
        cls, stream: Stream, *, on_stop: Callable[[], None] | None = None
    ) -> StartedStream:
        """``on_stop`` runs at once (on the event loop, before anything is awaited) when
        the stream is left before its end: the client is gone."""
        try:
            first = await run_in_threadpool(next, stream, _END)
        except BaseException:
            if on_stop is not None:
                on_stop()
            await run_in_threadpool(stream.close)
            raise
        return cls(stream, first, on_stop)

    async def items(self) -> AsyncIterator[str | Generation]:
        """Deltas, then the final Generation; closing early stops the generation."""
        item = self._first
        try:
            while item is not _END:
                yield item  # type: ignore[misc]
                item = await self._next()
        finally:
            if item is not _END and self._on_stop is not None:
                self._on_stop()
            await run_in_threadpool(self._stream.close)

    async def _next(self) -> object:
        if self._on_stop is None:
            return await run_in_threadpool(next, self._stream, _END)
        # A stream that must know at once that its client left (to run no tool call for
        # it) is not waited for when cancelled: ``on_stop`` runs, the thread finishes alone.
        return await anyio.to_thread.run_sync(next, self._stream, _END, abandon_on_cancel=True)


def event_stream(
    events: AsyncIterator[bytes], on_error: Callable[[dict[str, Any]], bytes]
) -> StreamingResponse:
    """An SSE response; an error after the first byte becomes a last event made by ``on_error``."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in events:
                yield chunk
        except RapportError as error:
            yield on_error(
                {"title": error.title, "status": status_of(error), "detail": error.detail}
            )
        except Exception:
            logger.exception("stream failed")
            yield on_error(
                {"title": "Internal server error", "status": 500, "detail": "the stream failed"}
            )

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
