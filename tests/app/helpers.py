"""Calls and checks shared by the API tests."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.db.models import Concept, Embedding, ImageRow
from app.services import Services
from tests import factories


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
    root: Path = services.blobs.root
    counts["blobs"] = sum(1 for p in root.rglob("*") if p.is_file())
    return counts


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body
