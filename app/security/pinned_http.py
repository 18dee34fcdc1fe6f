"""An httpx transport that connects only to addresses checked beforehand, by a deadline.

Requests keep their URL's host name (so the Host header, TLS SNI and the
certificate check use it), but the sockets go to the given addresses: the name
is never resolved again. Every socket operation ends by one deadline, so a
server that drips bytes cannot stretch a fetch past it.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from ipaddress import IPv4Address, IPv6Address

import httpcore
import httpx


def pinned_transport(
    host: str, addresses: Sequence[IPv4Address | IPv6Address], deadline: float
) -> httpx.BaseTransport:
    """A transport for URLs of ``host`` only, connecting to ``addresses`` in order.

    ``deadline`` is a ``time.monotonic()`` value; past it, every operation raises
    ``httpx.TimeoutException``. Other hosts fail with ``httpx.ConnectError``.
    """
    return _PinnedTransport(_PinnedBackend(host.lower(), addresses, deadline))


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class _PinnedBackend(httpcore.NetworkBackend):
    def __init__(
        self, host: str, addresses: Sequence[IPv4Address | IPv6Address], deadline: float
    ) -> None:
        self._host, self._addresses, self._deadline = host, addresses, deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower() != self._host:
            raise httpcore.ConnectError(f"refusing to connect to {host!r}")
        error: Exception = httpcore.ConnectError("no address to connect to")
        for address in self._addresses:
            try:
                stream = self._sockets.connect_tcp(
                    str(address),
                    port,
                    timeout=_left(self._deadline, timeout, httpcore.ConnectTimeout),
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as failed:
                error = failed
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream, self._deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        tls = self._stream.start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


def _left(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the deadline has passed")
    return left if timeout is None else min(timeout, left)


class _PinnedTransport(httpx.BaseTransport):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls_context(), network_backend=backend, max_connections=1
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        with _as_httpx_errors(request):
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, request),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream, self._request = stream, request

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as error:
        raise httpx.TimeoutException(str(error), request=request) from error
    except httpcore.ConnectError as error:
        raise httpx.ConnectError(str(error), request=request) from error
    except httpcore.RemoteProtocolError as error:
        raise httpx.RemoteProtocolError(str(error), request=request) from error
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        raise httpx.TransportError(str(error), request=request) from error
