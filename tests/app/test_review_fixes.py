"""Defects a code review found: each reproduced, each fixed."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.http.errors import STATUS
from app.main import build_services
from app.settings import Settings
from app.usecases.reindex import reindex_all
from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from tests import factories
from tests.app.helpers import assert_problem, register
from tests.app.test_hostile_inputs import raw_request
from tests.conftest import LiveServer, make_settings

ADMIN = "admin-" + "k" * 40
MIB = 1024 * 1024


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sqlite_file_is_readable_by_its_owner_only(server: LiveServer) -> None:
    url = server.services.settings.resolved_database_url
    with server.client(server.new_key("acme")) as client:
        assert register(client, "alice", "<bo>", [factories.photo("dog", 0)]).status_code == 201
    database = Path(url.removeprefix("sqlite:///"))
    for path in [database, *database.parent.glob(database.name + "-*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    secret = server.services.settings.data_dir / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) & 0o077 == 0


@pytest.fixture
def admin(start_server: Any, database_url: str, tmp_path: Path) -> httpx.Client:
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", admin_key=ADMIN)
    )
    return server.client(ADMIN)


def test_a_key_cannot_be_created_already_expired(admin: httpx.Client) -> None:
    assert admin.post("/v1/admin/tenants", json={"name": "acme"}).status_code == 201
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    answer = admin.post("/v1/admin/tenants/acme/keys", json={"expires_at": past})
    assert "future" in assert_problem(answer, 422)["detail"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert admin.post("/v1/admin/tenants/acme/keys", json={"expires_at": future}).status_code == 201


def test_concurrent_creates_of_one_tenant_answer_201_once_and_409_otherwise(
    admin: httpx.Client,
) -> None:
    statuses: Counter[int] = Counter()
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(10):
            body = {"name": f"tenant{round_}"}
            futures = [pool.submit(admin.post, "/v1/admin/tenants", json=body) for _ in range(8)]
            answers = [future.result() for future in futures]
            round_statuses = Counter(a.status_code for a in answers)
            assert round_statuses[201] == 1, round_statuses
            statuses.update(round_statuses)
    assert set(statuses) == {201, 409}, statuses


def test_every_status_of_the_error_table_is_documented(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    chat = schema["paths"]["/v1/users/{user_id}/chat"]["post"]["responses"]
    completions = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    photo = schema["paths"]["/v1/users/{user_id}/concepts/{concept_id}/images/{image_id}"]
    for status in set(STATUS.values()) - {501}:
        assert str(status) in chat, status
    assert "400" in completions and "501" in completions
    assert "500" in photo["get"]["responses"]


def test_a_slow_body_on_retrieve_is_408(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", request_body_timeout_s=1.0)
    )
    head = (
        "POST /v1/users/alice/retrieve HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.new_key('acme')}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    answer = raw_request(server, head, b'--b\r\nContent-Disposition: form-data; name="text"\r\n')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_a_large_base64_photo_is_refused_from_its_length_off_the_event_loop(
    server: LiveServer,
) -> None:
    limit = server.services.settings.max_image_bytes
    payload = base64.b64encode(os.urandom(limit + 3 * MIB)).decode()  # ~17 MB of JSON
    worst = 0.0
    done = threading.Event()

    def probe() -> None:
        nonlocal worst
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                started = time.monotonic()
                client.get(f"{server.url}/healthz")
                worst = max(worst, time.monotonic() - started)
                done.wait(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with server.client(server.new_key("acme")) as client:
            answers = [
                client.post("/v1/users/alice/retrieve", json={"image": payload}, timeout=60)
                for _ in range(3)
            ]
    finally:
        done.set()
        prober.join()
    for answer in answers:
        assert_problem(answer, 413)
    # Parsing and decoding run in the thread pool: /healthz is never held for long (a loaded
    # 2-core machine adds its own scheduling delays, hence the margin: 1.01 s was seen once
    # in CI; parsing three such bodies on the loop stalls it for seconds).
    assert worst < 1.5, worst


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"default_max_new_tokens": 4096, "max_new_tokens_limit": 2048}, "DEFAULT_MAX_NEW"),
        ({"encode_queue_size": 4}, "ENCODE_QUEUE_SIZE"),
        # 20 photos of 14 grid regions each need 280 places.
        ({"regions": "grid", "encode_queue_size": 279}, "ENCODE_QUEUE_SIZE"),
        ({"regions": "grid", "encode_queue_per_app": 279}, "ENCODE_QUEUE_PER_APP"),
        ({"max_request_pixels": 1000}, "MAX_REQUEST_PIXELS"),
        ({"region_grid_scales": (0,)}, "REGION_GRID_SCALES"),
    ],
)
def test_settings_that_break_every_request_together_fail_at_start_up(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        Settings(**values)


def big_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (2100, 2100, 3), dtype=np.uint8)
    data = factories.encode(Image.fromarray(noise))  # a ~13 MB PNG, over the default 10 MB
    assert len(data) > 10 * MIB
    return data


def raised_caps(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        max_image_bytes=30 * MIB,
        max_request_bytes=60 * MIB,
        **extra,
    )


def register_big(server: LiveServer, key: str) -> None:
    with server.client(key) as client:
        created = client.post(
            "/v1/users/alice/concepts",
            data={"name": "<bo>"},
            files=[("images", ("bo.png", big_png(), "image/png"))],
            timeout=60,
        )
    assert created.status_code == 201, created.text


def test_a_photo_accepted_under_raised_caps_still_serves_in_chat(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(raised_caps(database_url, tmp_path))
    key = server.new_key("acme")
    register_big(server, key)
    with server.client(key) as client:
        answer = client.post("/v1/users/alice/chat", json={"question": "where is <bo>?"})
    assert answer.status_code == 200, answer.text
    assert [c["name"] for c in answer.json()["concepts"]] == ["<bo>"]


def test_a_photo_accepted_under_raised_caps_is_reindexed(
    start_server: Any, encoder: Encoder, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(raised_caps(database_url, tmp_path))
    register_big(server, server.new_key("acme"))
    server.stop()
    weights = tmp_path / "other.pt"
    torch.save({k: v + 0.01 for k, v in encoder._model.state_dict().items()}, weights)
    other = Encoder.from_config(EncoderConfig(model="rapport-test-tiny", pretrained=str(weights)))
    services = build_services(
        raised_caps(database_url, tmp_path, clip_pretrained=str(weights)), encoder=other
    )
    try:
        assert reindex_all(services) == 1
    finally:
        services.close()
