"""Targeted hostile inputs: bodies that never end or are huge, odd photos, odd ids and names."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from app.storage.blobs import LocalBlobStore
from tests import factories
from tests.app.helpers import assert_problem, matched_names, register, retrieve, stored
from tests.conftest import LiveServer, make_settings

MIB = 1024 * 1024


def raw_request(server: LiveServer, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` and ``body`` and nothing more; return what the server answers."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_body_that_never_ends_is_cut_off(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", request_body_timeout_s=1.0)
    )
    key = server.new_key("acme")
    head = (
        "POST /v1/users/alice/concepts HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    # A few bytes of a million, then silence: the server must answer on its own.
    answer = raw_request(server, head, b'--b\r\nContent-Disposition: form-data; name="name"\r\n')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert stored(server.services)["concepts"] == 0


def test_a_100_mb_body_is_refused(server: LiveServer) -> None:
    key = server.new_key("acme")
    head = (
        "POST /v1/users/alice/concepts HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {100 * MIB}\r\n\r\n"
    ).encode()
    assert raw_request(server, head).startswith(b"HTTP/1.1 413")

    def endless() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
        for _ in range(100):
            yield b"\xff" * MIB

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        response = client.post(
            "/v1/users/alice/concepts",
            content=endless(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert_problem(response, 413)
    assert stored(server.services) == {"concepts": 0, "images": 0, "vectors": 0, "blobs": 0}


def test_animated_gif_and_a_one_pixel_photo(api: httpx.Client) -> None:
    frames = [
        Image.new("RGB", (30, 20), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    ]
    gif = factories.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    one = factories.encode(Image.new("RGB", (1, 1), (9, 9, 9)))
    for name, data, size in (("gif", gif, (30, 20)), ("dot", one, (1, 1))):
        response = register(api, "alice", name, [data])
        assert response.status_code == 201, response.text
        image = response.json()["images"][0]
        assert (image["width"], image["height"]) == size
    assert matched_names(retrieve(api, "alice", one, min_score=0.9999)) == ["dot"]


@pytest.mark.parametrize("user", ["../etc", "..", "ユーザー", "a b", "x%2Fy", "emoji-🐶", "."])
def test_odd_user_ids_are_just_ids(api: httpx.Client, server: LiveServer, user: str) -> None:
    path_user = quote(user, safe="")
    created = register(api, path_user, "<ボ>", [factories.photo("dog", 0)])
    if user in ("..", ".") or "/" in user:
        # A slash or a dot segment never reaches a route as a user id: nothing is stored.
        assert created.status_code in (404, 405), created.text
        assert stored(server.services)["concepts"] == 0
        return
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "<ボ>"
    found = api.post(f"/v1/users/{path_user}/retrieve", json={"text": "where is <ボ>?"})
    assert matched_names(found) == ["<ボ>"]
    # Nothing of this user is visible under the plain name or another spelling.
    assert api.get("/v1/users/etc/concepts").json()["items"] == []
    blobs = server.services.blobs
    assert isinstance(blobs, LocalBlobStore)
    assert all(p.is_relative_to(blobs.root) for p in blobs.root.rglob("*"))


def test_oversized_text_fields_are_refused(api: httpx.Client) -> None:
    assert_problem(
        register(api, "alice", "x", [factories.solid_png()], description="d" * 4001), 422
    )
    assert_problem(api.post("/v1/users/alice/retrieve", json={"text": "t" * 4001}), 422)
    assert_problem(api.post("/v1/users/alice/chat", json={"question": "q" * 8001}), 422)
    long_user = "u" * 129
    assert_problem(api.get(f"/v1/users/{long_user}/concepts"), 422)
