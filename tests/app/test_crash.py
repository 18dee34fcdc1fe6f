"""SIGKILL in the middle of writes: every acknowledged write survives, nothing is half-written.

A real `rapport serve` takes a stream of registrations, photo additions and
deletions from several clients; it is killed (SIGKILL, requests in flight)
once enough writes were acknowledged, then restarted on the same database and
photo folder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, exists, func, select, text

from app.main import build_services
from app.storage.db.models import Concept, Embedding, ImageRow
from app.usecases.doctor import Storage, check, repair
from retrieval.encoder import Encoder
from tests import factories
from tests.app.processes import ServeProcess, rapport_env, run_cli
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres

EXACT = 0.9999
WRITERS = 3
ACKED_BEFORE_KILL = 12


@dataclass
class Ledger:
    """What the server acknowledged (2xx), shared by the writer threads."""

    photos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # concept -> image -> bytes
    users: dict[str, str] = field(default_factory=dict)  # concept -> user
    deleted: set[str] = field(default_factory=set)
    acked: int = 0
    unexpected: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def ack(self) -> None:
        with self.changed:
            self.acked += 1
            self.changed.notify_all()


def all_photos() -> list[bytes]:
    return [
        factories.photo(subject, i)
        for subject in factories.subjects()
        for i in range(factories.photo_count(subject))
    ]


def write(client: httpx.Client, user: str, photos: Iterator[bytes], ledger: Ledger) -> None:
    """Register, add photos, delete, until the server dies (or the photos run out)."""
    mine: list[str] = []
    step = 0
    try:
        while True:
            step += 1
            if step % 4 == 0 and mine:
                concept = mine.pop(0)
                response = client.delete(f"/v1/users/{user}/concepts/{concept}")
                if response.status_code == 204:
                    ledger.deleted.add(concept)
            elif step % 3 == 0 and mine:
                concept, photo = mine[-1], next(photos)
                files = [("images", ("p.jpg", photo, "image/jpeg"))]
                response = client.post(f"/v1/users/{user}/concepts/{concept}/images", files=files)
                if response.status_code == 201:
                    known = ledger.photos[concept]
                    new = [i["id"] for i in response.json()["images"] if i["id"] not in known]
                    known[new[0]] = photo
            else:
                sent = [next(photos), next(photos)]
                files = [("images", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(sent)]
                data = {"name": f"{user}-{step}"}
                response = client.post(f"/v1/users/{user}/concepts", data=data, files=files)
                if response.status_code == 201:
                    body = response.json()
                    ids = [image["id"] for image in body["images"]]
                    ledger.photos[body["id"]] = dict(zip(ids, sent, strict=True))
                    ledger.users[body["id"]] = user
                    mine.append(body["id"])
            if response.is_success:
                ledger.ack()
            else:
                ledger.unexpected.append(f"{response.status_code} {response.text}")
    except (httpx.TransportError, StopIteration):
        return  # the server is gone: this client stops, its last write unacknowledged


def crash_during_writes(env: dict[str, str], tmp_path: Path) -> tuple[Ledger, str]:
    """Start a server, write through it from several clients, SIGKILL it: (acked, API key).

    The kill comes while a write has stored its photo files and waits for its vectors'
    INSERT (held up by a table lock of the test's): the worst moment for consistency.
    """
    server = ServeProcess(env, tmp_path / "serve-before.log").wait_ready()
    key = run_cli(["keys", "create", "--tenant", "acme"], env).stdout.strip()
    ledger = Ledger()
    photos = all_photos()
    share = len(photos) // WRITERS
    clients = [
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        for _ in range(WRITERS)
    ]
    threads = [
        threading.Thread(
            target=write,
            args=(clients[n], f"user{n}", iter(photos[n * share : (n + 1) * share]), ledger),
        )
        for n in range(WRITERS)
    ]
    try:
        for thread in threads:
            thread.start()
        with ledger.changed:
            assert ledger.changed.wait_for(lambda: ledger.acked >= ACKED_BEFORE_KILL, timeout=120)
        with vector_writes_held(env["RAPPORT_DATABASE_URL"]):
            server.process.kill()  # SIGKILL, with the writers' next requests in flight
            server.process.wait()
    finally:
        server.stop()
        for thread in threads:
            thread.join(timeout=60)
        for client in clients:
            client.close()
    assert ledger.unexpected == []
    return ledger, key


def test_acknowledged_writes_survive_a_sigkill(
    postgres_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    env = rapport_env(tmp_path / "data", RAPPORT_DATABASE_URL=postgres_url)
    ledger, key = crash_during_writes(env, tmp_path)
    assert ledger.deleted, "the stream should have acknowledged deletions before the kill"

    server = ServeProcess(env, tmp_path / "serve-after.log").wait_ready()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            for concept, photos in ledger.photos.items():
                user = ledger.users[concept]
                found = client.get(f"/v1/users/{user}/concepts/{concept}")
                if concept in ledger.deleted:
                    assert found.status_code == 404
                    continue
                assert found.status_code == 200, found.text
                for image, photo in photos.items():
                    url = f"/v1/users/{user}/concepts/{concept}/images/{image}"
                    assert client.get(url).content == photo
                for photo in photos.values():
                    matches = retrieve_ids(client, user, photo)
                    assert concept in matches
            for concept in ledger.deleted:
                photo = next(iter(ledger.photos[concept].values()))
                assert concept not in retrieve_ids(client, ledger.users[concept], photo)
    finally:
        server.stop()
    assert_every_concept_is_whole(postgres_url, encoder.model_id)

    services = build_services(make_settings(postgres_url, tmp_path / "data"), encoder=encoder)
    try:
        # Orphans of the writes the kill cut short are young: reported, left alone...
        report = check(Storage.of(services))
        assert report.problems == [] and report.young_orphan_blobs and report.notes
        # ...and once past the grace period, repaired.
        repaired = repair(Storage.of(services), grace_s=0)
        assert repaired.problems == [] and repaired.young_orphan_blobs == []
        assert repaired.young_temp_files == [] and repaired.repaired
    finally:
        services.close()


@contextmanager
def vector_writes_held(url: str) -> Iterator[None]:
    """Hold every INSERT INTO embeddings until one is waiting, then run the block."""
    engine = create_engine(url)
    try:
        with engine.connect() as holder, engine.connect() as observer:
            holder.execute(text("LOCK TABLE embeddings IN SHARE MODE"))
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO embeddings%'"
            )
            deadline = time.monotonic() + 60
            while not observer.execute(waiting).scalar():
                assert time.monotonic() < deadline, "no write reached its vectors"
                observer.rollback()
                time.sleep(0.02)
            yield
            holder.rollback()
    finally:
        engine.dispose()


def retrieve_ids(client: httpx.Client, user: str, photo: bytes) -> list[str]:
    response = client.post(
        f"/v1/users/{user}/retrieve",
        files={"image": ("q.jpg", photo, "image/jpeg")},
        data={"min_score": str(EXACT), "top_k": "100"},
    )
    assert response.status_code == 200, response.text
    return [match["concept"]["id"] for match in response.json()["matches"]]


def assert_every_concept_is_whole(url: str, model_id: str) -> None:
    """No concept without photos, no photo without its vector, no vector without its photo."""
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            without_images = ~exists().where(ImageRow.concept_id == Concept.id)
            has_vector = exists().where(
                Embedding.image_id == ImageRow.id, Embedding.model_id == model_id
            )
            without_image = ~exists().where(ImageRow.id == Embedding.image_id)
            assert db.scalar(select(func.count(Concept.id)).where(without_images)) == 0
            assert db.scalar(select(func.count(ImageRow.id)).where(~has_vector)) == 0
            assert db.scalar(select(func.count(Embedding.id)).where(without_image)) == 0
            assert db.execute(select(func.count(Concept.id))).scalar_one() > 0
    finally:
        engine.dispose()
