"""Chat photos given by http(s) URL: fetched from a real loopback server, or refused."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.errors import RemotePhotoRefused, RemotePhotoUnavailable
from app.security import pinned_http
from app.security.remote_photos import RemotePhotoPolicy, fetch_photo, is_public, require_public
from tests import factories
from tests.app.helpers import assert_problem, decoded, image_urls, openai_settings, register
from tests.conftest import LiveServer, make_settings
from tests.fake_openai_server import FakeOpenAI, running_fake_openai
from tests.photo_server import PhotoServer, closed_port, running_photo_server

PHOTO = ("dog", 0)
EXACT = 0.9999


@pytest.fixture
def photos() -> Iterator[PhotoServer]:
    with running_photo_server(factories.photo(*PHOTO)) as server:
        yield server


def start(start_server: Any, sqlite_url: str, tmp_path: Path, **overrides: Any) -> httpx.Client:
    server: LiveServer = start_server(make_settings(sqlite_url, tmp_path / "data", **overrides))
    return server.client(server.new_key("acme"))


def ask(client: httpx.Client, url: str) -> httpx.Response:
    return client.post("/v1/users/alice/chat", json={"question": "who is this?", "image": url})


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.0.192",
        "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1",
        "::ffff:10.0.0.1", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "2001:db8::1", "fec0::1",
    ],
)  # fmt: skip
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_every_resolved_address_must_be_public() -> None:
    mixed = [ipaddress.ip_address(a) for a in ("93.184.216.34", "10.0.0.1")]
    with pytest.raises(RemotePhotoRefused):
        require_public("photos.example", mixed)
    require_public("photos.example", mixed[:1])


def test_non_public_urls_are_refused_before_any_connection(
    start_server: Any, sqlite_url: str, tmp_path: Path, photos: PhotoServer
) -> None:
    client = start(start_server, sqlite_url, tmp_path)
    port = photos.port
    urls = [
        f"http://127.0.0.1:{port}/photo.jpg",
        f"http://localhost:{port}/photo.jpg",
        f"http://LocalHost:{port}/photo.jpg",
        f"http://[::1]:{port}/photo.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/photo.jpg",
        f"http://2130706433:{port}/photo.jpg",
        f"http://0x7f000001:{port}/photo.jpg",
        # Refused by the check, never connected to (these must never see traffic from tests).
        "http://10.0.0.1/photo.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest/meta-data/",
    ]
    for url in urls:
        problem = assert_problem(ask(client, url), 400)
        assert "public addresses only" in problem["detail"], url
        part = {"type": "image_url", "image_url": {"url": url}}
        messages = [{"role": "user", "content": [part]}]
        assert_problem(client.post("/v1/users/alice/chat", json={"messages": messages}), 400)
    credentials = f"http://user:pw@127.0.0.1:{port}/photo.jpg"
    assert "credentials" in assert_problem(ask(client, credentials), 400)["detail"]
    assert photos.connections == 0 and photos.requests == []


def test_remote_photos_can_be_turned_off(
    start_server: Any, sqlite_url: str, tmp_path: Path, photos: PhotoServer
) -> None:
    client = start(start_server, sqlite_url, tmp_path, remote_photos=False)
    problem = assert_problem(ask(client, photos.url("/photo.jpg")), 400)
    assert "data URL" in problem["detail"]
    assert photos.connections == 0


def test_a_photo_by_url_reaches_retrieval_and_the_prompt(
    start_server: Any, sqlite_url: str, tmp_path: Path, photos: PhotoServer
) -> None:
    client = start(start_server, sqlite_url, tmp_path, remote_photo_allow_private=True)
    assert register(client, "alice", "<bo>", [factories.photo(*PHOTO)]).status_code == 201
    body = {"question": "who is this?", "image": photos.url("/photo.jpg"), "min_score": EXACT}
    response = client.post("/v1/users/alice/chat", json=body)
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["concepts"]] == ["<bo>"]
    query_photo = decoded(image_urls(response.json()["prompt"])[0])
    assert query_photo.size == (512, 512)
    # Redirects within the same host are followed; the Host header names the host.
    part = {"type": "image_url", "image_url": {"url": photos.url("/hop/3")}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]
    response = client.post("/v1/users/alice/chat", json={"messages": messages, "min_score": EXACT})
    assert [c["name"] for c in response.json()["concepts"]] == ["<bo>"]
    assert {host for _, host in photos.requests} == {f"127.0.0.1:{photos.port}"}


def test_the_openai_endpoint_fetches_image_url_parts(
    start_server: Any, sqlite_url: str, tmp_path: Path, photos: PhotoServer
) -> None:
    with running_fake_openai() as backend:
        settings = openai_settings(sqlite_url, tmp_path, backend, remote_photo_allow_private=True)
        server: LiveServer = start_server(settings)
        client = server.client(server.new_key("acme"))
        part = {"type": "image_url", "image_url": {"url": photos.url("/photo.jpg")}}
        body = {"user": "alice", "messages": [{"role": "user", "content": [part]}]}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        sent = _backend_images(backend)
        assert len(sent) == 1 and decoded(sent[0]).size == (512, 512)


def _backend_images(backend: FakeOpenAI) -> list[str]:
    return image_urls(backend.requests[-1]["messages"])


def test_fetch_failures_answer_clearly(
    start_server: Any, sqlite_url: str, tmp_path: Path, photos: PhotoServer
) -> None:
    # A generous time cap for every check but the slow one, so that a busy machine
    # cannot turn a redirect loop or an HTTP error into a timeout.
    client = start(
        start_server,
        sqlite_url,
        tmp_path / "a",
        remote_photo_allow_private=True,
        remote_photo_max_bytes=100_000,
        remote_photo_timeout_s=10,
    )
    impatient = start(
        start_server,
        sqlite_url,
        tmp_path / "b",
        remote_photo_allow_private=True,
        remote_photo_timeout_s=0.5,
    )
    assert "over 100000 bytes" in assert_problem(ask(client, photos.url("/huge")), 413)["detail"]
    assert photos.huge_bytes_sent < 64 * 1024 * 1024  # stopped reading; the server gave up
    assert_problem(ask(client, photos.url("/declared-huge")), 413)
    started = time.monotonic()
    assert "within 0.5 s" in assert_problem(ask(impatient, photos.url("/slow")), 422)["detail"]
    assert time.monotonic() - started < 3
    elsewhere = assert_problem(ask(client, photos.url("/elsewhere")), 400)
    assert "another host" in elsewhere["detail"]
    assert [path for path, _ in photos.requests].count("/photo.jpg") == 0
    assert "more than 3" in assert_problem(ask(client, photos.url("/loop")), 422)["detail"]
    assert "HTTP 404" in assert_problem(ask(client, photos.url("/missing")), 422)["detail"]
    refused = f"http://127.0.0.1:{closed_port()}/photo.jpg"
    assert "could not connect" in assert_problem(ask(client, refused), 422)["detail"]
    assert_problem(ask(client, photos.url("/page.html")), 415)


def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    photos: PhotoServer,
) -> None:
    # DNS rebinding: the name is resolved once, and every connection (redirects too) goes
    # to that checked answer; a second lookup would get a loopback address nobody serves.
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["127.0.0.3"]

    url = f"http://photos.example:{photos.port}/hop/2"
    data = fetch_photo(url, RemotePhotoPolicy(allow_private=True), resolve=resolve)
    assert data == factories.photo(*PHOTO) and lookups == ["photos.example"]
    assert photos.requests[-1] == ("/photo.jpg", f"photos.example:{photos.port}")


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [
        *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", str(key), "-out", str(cert)),
        *("-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def test_https_verifies_the_certificate_of_the_name_while_connecting_to_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path, "photos.example")
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    policy = RemotePhotoPolicy(allow_private=True)

    def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    with running_photo_server(factories.photo(*PHOTO), tls=served) as photos:
        url = photos.url("/photo.jpg", host="photos.example")
        with pytest.raises(RemotePhotoUnavailable):  # not trusted yet
            fetch_photo(url, policy, resolve=resolve)
        monkeypatch.setattr(pinned_http, "_tls_context", lambda: trusted)
        assert fetch_photo(url, policy, resolve=resolve) == factories.photo(*PHOTO)
        with pytest.raises(RemotePhotoUnavailable):  # the certificate names another host
            fetch_photo(photos.url("/photo.jpg", host="other.example"), policy, resolve=resolve)


def test_a_host_that_does_not_resolve_in_time_or_at_all() -> None:
    policy = RemotePhotoPolicy(timeout_s=0.2)
    stuck = threading.Event()

    def never(host: str, port: int) -> list[str]:
        stuck.wait(30)
        return []

    def unknown(host: str, port: int) -> list[str]:
        raise socket.gaierror("Name or service not known")

    try:
        started = time.monotonic()
        with pytest.raises(RemotePhotoUnavailable, match="did not resolve in time"):
            fetch_photo("http://slow-dns.example/photo.jpg", policy, resolve=never)
        assert time.monotonic() - started < 2
    finally:
        stuck.set()

    # A name that does not resolve is refused exactly like one that resolves to a
    # private address: the answer must not tell which internal names exist.
    def private(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    answers = []
    for host, resolve in (("nowhere.example", unknown), ("intranet.example", private)):
        with pytest.raises(RemotePhotoRefused) as refused:
            fetch_photo(f"http://{host}/photo.jpg", policy, resolve=resolve)
        answers.append(refused.value.detail.replace(host, "HOST"))
    assert answers[0] == answers[1]
