"""A real HTTP server on loopback that serves photos, and misbehaves on purpose, for tests.

It records every TCP connection it accepts and every request (path and Host
header), so a test can prove that a refused URL was never connected to.

Paths: ``/photo.jpg`` (``photo``), ``/page.html`` (not an image), ``/missing``
(404), ``/huge`` (endless body, no Content-Length), ``/declared-huge`` (a huge
Content-Length, then nothing), ``/slow`` (half the photo, then a wait on
``release``), ``/hop/N`` (N same-host redirects, then the photo), ``/loop``
(redirects to itself), ``/elsewhere`` (redirects to ``localhost``, another host).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT_S = 30.0  # a safety net only: tests release the slow handler at teardown
CHUNK = b"\0" * 65536


class PhotoServer:
    """The server's state, shared with its handler threads."""

    def __init__(self, photo: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.photo = photo
        self.scheme = "https" if tls else "http"
        self.release = threading.Event()
        self.connections = 0
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.huge_bytes_sent = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self), self)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def record_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def record_request(self, path: str, host: str) -> None:
        with self._lock:
            self.requests.append((path, host))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, state: PhotoServer) -> None:
        super().__init__(address, handler)
        self.state = state

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.state.record_connection()
        return True


def _handler_for(state: PhotoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            state.record_request(self.path, self.headers.get("Host", ""))
            if self.path == "/photo.jpg":
                self._answer(200, state.photo, "image/jpeg")
            elif self.path == "/page.html":
                self._answer(200, b"<html>not a photo</html>", "text/html")
            elif self.path == "/huge":
                self._endless()
            elif self.path == "/declared-huge":
                self._head(200, {"Content-Length": str(10**12), "Content-Type": "image/jpeg"})
                state.release.wait(HANG_LIMIT_S)
            elif self.path == "/slow":
                self._head(200, {"Content-Length": str(len(state.photo))})
                self.wfile.write(state.photo[: len(state.photo) // 2])
                self.wfile.flush()
                state.release.wait(HANG_LIMIT_S)
            elif self.path.startswith("/hop/"):
                left = int(self.path.rsplit("/", 1)[1])
                self._redirect(f"/hop/{left - 1}" if left > 1 else "/photo.jpg")
            elif self.path == "/loop":
                self._redirect("/loop")
            elif self.path == "/elsewhere":
                self._redirect(f"http://localhost:{state.port}/photo.jpg")
            else:
                self._answer(404, b"no such photo", "text/plain")

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _answer(self, status: int, body: bytes, media_type: str) -> None:
            self._head(status, {"Content-Type": media_type, "Content-Length": str(len(body))})
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self._head(302, {"Location": location, "Content-Length": "0"})

        def _endless(self) -> None:
            self.close_connection = True
            self._head(200, {"Content-Type": "image/jpeg", "Connection": "close"})
            try:
                while state.huge_bytes_sent < 1024 * 1024 * 1024:
                    self.wfile.write(CHUNK)
                    state.huge_bytes_sent += len(CHUNK)
            except OSError:
                pass  # the client stopped reading: what the test wants

    return Handler


@contextmanager
def running_photo_server(photo: bytes, tls: ssl.SSLContext | None = None) -> Iterator[PhotoServer]:
    server = PhotoServer(photo, tls)
    server._thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server._server.shutdown()
        server._server.server_close()


def closed_port() -> int:
    """A loopback port with nothing listening (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
