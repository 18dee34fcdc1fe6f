"""How ``rapport serve`` runs uvicorn: bounded connections, and a deadline for headers.

Uvicorn bounds the body (BodyLimitMiddleware does) and idle keep-alive
connections, but not the time a client takes to send its request headers: a
client sending one header line every few seconds (slow loris) held a
connection forever, before any authentication. ``HeaderDeadlineProtocol``
closes a connection whose request headers are not complete within
RAPPORT_HEADER_TIMEOUT_S of its first byte (or of the connection, for the first
request), and RAPPORT_MAX_CONNECTIONS bounds what one process holds open.
X-Forwarded-For is believed only from RAPPORT_FORWARDED_ALLOW_IPS.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from app.settings import Settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers come too slowly."""

    # Set from the settings in each worker process by ``configure`` (uvicorn builds
    # protocols itself, from the class, in every worker).
    header_timeout_s: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expire(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def configure(settings: Settings) -> None:
    HeaderDeadlineProtocol.header_timeout_s = settings.header_timeout_s


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` from the settings."""
    configure(settings)
    return {
        "http": HeaderDeadlineProtocol,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
        "access_log": settings.access_log,
        # Only the configured proxies may name the client (uvicorn would trust 127.0.0.1,
        # and so any local process, by default).
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or "",
    }
