"""How ``rapport serve`` runs uvicorn: bounded connections, and a deadline for headers.

Uvicorn bounds the body (BodyLimitMiddleware does) and idle keep-alive
connections, but not the time a client takes to send its request headers: a
client sending one header line every few seconds (slow loris) held a
connection forever, before any authentication. ``HeaderDeadlineProtocol``
closes a connection whose request headers are not complete within
RAPPORT_HEADER_TIMEOUT_S of its first byte (or of the connection, for the first
request), and RAPPORT_MAX_CONNECTIONS bounds what one process holds open.
X-Forwarded-For is believed only from RAPPORT_FORWARDED_ALLOW_IPS.

RAPPORT_MAX_CONNECTIONS counts every open connection, idle ones included, so one
client's idle sockets (1,050 that reconnect when cut) made another tenant's
requests answer 503. One client address may hold at most an eighth of it
(``per_address_limit``); connections from the trusted proxies are not counted,
as every client behind them shares their address.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from app.settings import Settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers come too slowly."""

    # Set from the settings in each worker process by ``configure`` (uvicorn builds
    # protocols itself, from the class, in every worker).
    header_timeout_s: ClassVar[float] = 10.0
    per_address_limit: ClassVar[int] = 0  # 0: no limit
    trusted_proxies: ClassVar[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = ()
    # Open connections per client address, in this worker process (one event loop).
    _open: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and self.per_address_limit and not self._trusted(address):
            if self._open[address] >= self.per_address_limit:
                transport.close()  # connection_lost follows and forgets it
                return
            self._open[address] += 1
            self._counted = address
        self._arm()

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted is not None:
            self._open[self._counted] -= 1
            if self._open[self._counted] <= 0:
                del self._open[self._counted]
            self._counted = None
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
    HeaderDeadlineProtocol.per_address_limit = max(4, settings.max_connections // 8)
    HeaderDeadlineProtocol.trusted_proxies = tuple(
        ipaddress.ip_network(item, strict=False)
        for item in settings.forwarded_allow_ips.split(",")
        if item
    )


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
