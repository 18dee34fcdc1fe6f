"""The attacks that once took the service down, each bounded and measured.

Memory is measured on a real ``rapport serve`` process (its own peak RSS, reset
before each attack); time and /healthz latency on a live in-process server.
"""

from __future__ import annotations

import base64
import contextlib
import io
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.settings import Settings
from tests import factories
from tests.app.processes import ServeProcess, rapport_env, run_cli
from tests.conftest import LiveServer, make_settings

MB = 1024 * 1024


def gif_bomb(side: int = 6300) -> str:
    """A 37-byte GIF whose canvas is side x side (a 1x1 frame): ~119 MB decoded at 6300."""
    buffer = io.BytesIO()
    Image.new("P", (1, 1)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", side, side)
    return "data:image/gif;base64," + base64.b64encode(bytes(data)).decode()


def chat_body(photos: list[str], text: str = "what is this?") -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": p}} for p in photos]
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]}


class Memory:
    """Peak and current resident memory of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{name} not in /proc/{self.pid}/status")

    def reset_peak(self) -> int:
        """Reset the peak to the current RSS (Linux: clear_refs 5); return the current RSS."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.rss()

    def rss(self) -> int:
        return self._field("VmRSS")

    def peak(self) -> int:
        return self._field("VmHWM")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    data = tmp_path_factory.mktemp("attacks")
    env = rapport_env(data / "data", RAPPORT_TORCH_THREADS="1", RAPPORT_HEADER_TIMEOUT_S="1")
    assert run_cli(["db", "upgrade"], env).returncode == 0
    key = run_cli(["keys", "create", "--tenant", "acme"], env).stdout.strip()
    server = ServeProcess(env, data / "serve.log").wait_ready()
    try:
        yield server, key
    finally:
        server.stop()


def post_chat(server: ServeProcess, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/users/alice/chat",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_photos_over_the_count_cost_no_memory(served: tuple[ServeProcess, str]) -> None:
    server, key = served
    memory = Memory(server.process.pid)
    before = memory.reset_peak()
    started = time.monotonic()
    answer = post_chat(server, key, chat_body([gif_bomb()] * 22))  # 2.8 KB, once 3.4 GB
    elapsed = time.monotonic() - started
    assert answer.status_code == 422, answer.text
    assert "22 photos" in answer.json()["detail"]
    assert elapsed < 2.0  # was 2.7 s and +3.4 GB before photos were counted first
    print(f"22 GIF bombs: {elapsed * 1000:.0f} ms, peak +{(memory.peak() - before) / MB:.0f} MB")
    assert memory.peak() - before < 50 * MB


def test_pixels_over_the_request_budget_are_refused_before_decoding(
    served: tuple[ServeProcess, str],
) -> None:
    server, key = served
    memory = Memory(server.process.pid)
    before = memory.reset_peak()
    # Each is under the per-photo cap (40 MP); four are over the request's 120 MP.
    answer = post_chat(server, key, chat_body([gif_bomb()] * 4))
    assert answer.status_code == 413, answer.text
    assert "RAPPORT_MAX_REQUEST_PIXELS" in answer.json()["detail"]
    print(f"4 x 40 MP photos (refused): peak +{(memory.peak() - before) / MB:.0f} MB")
    # Three were decoded one at a time (~120 MB each) before the fourth was counted.
    assert memory.peak() - before < 400 * MB


def test_an_allowed_request_at_the_pixel_budget_stays_well_under_a_gigabyte(
    served: tuple[ServeProcess, str],
) -> None:
    server, key = served
    memory = Memory(server.process.pid)
    before = memory.reset_peak()
    answer = post_chat(server, key, chat_body([gif_bomb()] * 3))
    assert answer.status_code == 200, answer.text
    peak = memory.peak() - before
    print(
        f"3 x 40 MP photos: peak +{peak / MB:.0f} MB, after +{(memory.rss() - before) / MB:.0f} MB"
    )
    assert peak < 400 * MB, f"peak {peak / MB:.0f} MB over the idle process"
    # Kept photos are reduced to what the encoder and the MLLM need, and freed after.
    assert memory.rss() - before < 100 * MB


def test_slow_headers_are_cut_off_before_authentication(served: tuple[ServeProcess, str]) -> None:
    server, _ = served
    started = time.monotonic()
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    silent = socket.create_connection(("127.0.0.1", server.port))  # sends nothing at all
    for sock in slow:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    open_socks = {*slow, silent}
    closed_at: dict[socket.socket, float] = {}
    # One header line every 0.2 s from each: never complete, never idle. Bounded at 6 s.
    while open_socks and time.monotonic() - started < 6:
        readable, _, _ = select.select(list(open_socks), [], [], 0.2)
        for sock in readable:
            try:
                data = sock.recv(1024)
            except ConnectionResetError:
                data = b""
            if not data:
                closed_at[sock] = time.monotonic() - started
                open_socks.discard(sock)
        for sock in open_socks - {silent}:
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Slow: 1\r\n")
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    for sock in [*slow, silent]:
        sock.close()
    assert not open_socks, f"{len(open_socks)} slow connections still open after 6 s"
    # RAPPORT_HEADER_TIMEOUT_S=1: every connection was closed within about a second.
    assert max(closed_at.values()) < 3.0, max(closed_at.values())


class HealthProbe:
    """Polls /healthz in a thread while an attack runs; keeps the worst latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                assert client.get(f"{self.url}/healthz").status_code == 200
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1
                self._stop.wait(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def many_concepts(start_server: Any, database_url: str, tmp_path: Path) -> tuple[LiveServer, str]:
    settings: Settings = make_settings(database_url, tmp_path / "data", rate_limit_rps=0)
    server: LiveServer = start_server(settings)
    key = server.new_key("acme")
    photo = factories.solid_png(8, 8)
    with server.client(key) as client:
        for number in range(200):
            answer = client.post(
                "/v1/users/alice/concepts",
                data={"name": f"<thing{number}>", "description": "a thing"},
                files=[("images", ("a.png", photo, "image/png"))],
            )
            assert answer.status_code == 201, answer.text
    return server, key


def test_long_text_is_refused_and_text_at_the_caps_is_cheap_with_many_concepts(
    many_concepts: tuple[LiveServer, str],
) -> None:
    server, key = many_concepts
    settings = server.services.settings
    huge = {"messages": [{"role": "user", "content": "x " * 5_000_000}]}  # 10 MB, once 30 s
    at_caps = {
        "messages": [
            {"role": "user", "content": ("is thing7 here? " * 2000)[: settings.max_message_chars]}
            for _ in range(settings.max_request_text_chars // settings.max_message_chars)
        ]
    }
    with server.client(key) as client, HealthProbe(server.url) as probe:
        started = time.monotonic()
        refused = client.post("/v1/users/alice/chat", json=huge, timeout=60)
        refused_s = time.monotonic() - started
        started = time.monotonic()
        allowed = client.post("/v1/users/alice/chat", json=at_caps, timeout=60)
        allowed_s = time.monotonic() - started
    assert refused.status_code == 422, refused.text
    assert "RAPPORT_MAX_MESSAGE_CHARS" in refused.json()["detail"]
    assert allowed.status_code == 200, allowed.text
    assert [c["name"] for c in allowed.json()["concepts"]] == ["<thing7>"]
    print(
        f"10 MB text: {refused_s:.3f} s; text at the caps: {allowed_s:.3f} s; "
        f"/healthz worst {probe.worst:.3f} s"
    )
    # 200 concepts x 64,000 characters: one scan, not one per concept.
    assert refused_s < 2.0 and allowed_s < 2.0, (refused_s, allowed_s)
    assert probe.count > 0 and probe.worst < 0.5, probe.worst


def test_too_much_text_over_all_messages_is_413(server: LiveServer) -> None:
    settings = server.services.settings
    message = {"role": "user", "content": "y" * settings.max_message_chars}
    count = settings.max_request_text_chars // settings.max_message_chars + 1
    with server.client(server.new_key("acme")) as client:
        answer = client.post("/v1/users/alice/chat", json={"messages": [message] * count})
    assert answer.status_code == 413, answer.text
    assert "RAPPORT_MAX_REQUEST_TEXT_CHARS" in answer.json()["detail"]


@pytest.mark.parametrize("value", ["", "   ", "short", " " + "k" * 40, "k" * 31])
@pytest.mark.parametrize("name", ["admin_key", "secret_key"])
def test_an_empty_blank_or_short_secret_fails_at_start_up(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"RAPPORT_{name.upper()}"):
        Settings(**{name: value})  # type: ignore[arg-type]


def test_the_cli_refuses_to_start_with_an_empty_admin_key(tmp_path: Path) -> None:
    result = run_cli(["db", "upgrade"], rapport_env(tmp_path / "data", RAPPORT_ADMIN_KEY=""))
    assert result.returncode != 0
    assert "RAPPORT_ADMIN_KEY is empty" in result.stderr
    assert not (tmp_path / "data").exists()
