"""`rapport doctor`: disagreements between SQL and the photo folder, found and repaired."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from app.services import Services
from app.storage.blobs import LocalBlobStore
from app.storage.blobs_s3 import S3BlobStore
from app.storage.db.models import Concept, Embedding, ImageRow
from app.usecases.doctor import Storage, check, repair
from app.usecases.reindex import reindex_all
from tests.app.helpers import register_subject, stored
from tests.app.processes import rapport_env, run_cli
from tests.conftest import BOTH_BLOB_STORES, LiveServer, make_settings
from tests.s3_server import as_env, backdate, put_raw

HOUR = 3600.0


def plant(services: Services, name: str, *, age_s: float = 0.0) -> str:
    """A file in the photo store that no row references, ``age_s`` seconds old."""
    blobs = services.blobs
    if isinstance(blobs, LocalBlobStore):
        path = blobs.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind by a crash")
        then = time.time() - age_s
        os.utime(path, (then, then))
    else:
        assert isinstance(blobs, S3BlobStore)
        key = blobs.config.prefix + name
        put_raw(blobs.endpoint, blobs.config.bucket, key, b"left behind by a crash")
        backdate(blobs.config.bucket, key, age_s)
    return name


def exists(services: Services, name: str) -> bool:
    return name in {stored.key for stored in services.blobs.files()}


def image_rows(services: Services, concept_id: str) -> list[ImageRow]:
    with services.sessions() as session:
        return list(session.scalars(select(ImageRow).where(ImageRow.concept_id == concept_id)))


def image_of(services: Services, concept_id: str) -> ImageRow:
    return image_rows(services, concept_id)[0]


def test_a_consistent_service_has_no_problems(server: LiveServer, api: httpx.Client) -> None:
    register_subject(api, "alice", "dog")
    report = check(Storage.of(server.services))
    assert report.problems == [] and report.notes == []
    assert report.lines() == ["database and photo folder agree"]


@BOTH_BLOB_STORES
def test_doctor_finds_and_repairs_what_a_crash_leaves(
    server: LiveServer, api: httpx.Client, database_url: str
) -> None:
    services = server.services
    dog = register_subject(api, "alice", "dog", count=2)
    cat = register_subject(api, "alice", "cat", count=1)
    folder = image_of(services, dog["id"]).blob_key.rsplit("/", 2)[0]
    old_orphan = plant(services, f"{folder}/ab/{'ab' * 32}", age_s=2 * HOUR)
    young_orphan = plant(services, f"{folder}/cd/{'cd' * 32}")
    old_temp = plant(services, f"{folder}/ab/.tmp-k3j2h1", age_s=2 * HOUR)
    erased_user = plant(services, f"t9/u99/ef/{'ef' * 32}", age_s=2 * HOUR)
    missing = image_of(services, dog["id"])
    photo = services.blobs.get(missing.blob_key)
    services.blobs.delete(missing.blob_key)
    with services.sessions() as session:
        user_id = session.get(Concept, dog["id"]).user_id  # type: ignore[union-attr]
        session.add(Concept(id="empty-concept", user_id=user_id, name="ghost", name_key="ghost"))
        stale = update(Embedding).where(Embedding.concept_id == cat["id"])
        session.execute(stale.values(model_id="some-older-model"))
        session.commit()
    if database_url.startswith("sqlite"):
        # Only a database without foreign keys can hold a vector without its photo.
        with sqlite3.connect(make_url(database_url).database or "") as raw:
            raw.execute(
                "INSERT INTO embeddings (image_id, concept_id, user_id, model_id, dim, vector)"
                " VALUES ('no-such-image', ?, ?, 'm', 1, x'00000000')",
                (dog["id"], user_id),
            )

    report = check(Storage.of(services))
    assert sorted(report.orphan_blobs) == sorted([old_orphan, erased_user])
    assert len(report.young_orphan_blobs) == 1 and len(report.temp_files) == 1
    assert report.missing_blobs == [missing.id]
    assert report.images_without_vector == 1
    assert report.vectors_without_image == (1 if database_url.startswith("sqlite") else 0)
    assert any("rapport reindex" in line for line in report.problems)
    assert any(missing.id in line for line in report.problems)

    repaired = repair(Storage.of(services))
    assert not any(exists(services, name) for name in (old_orphan, old_temp, erased_user))
    assert exists(services, young_orphan)  # may belong to a registration in flight
    assert repaired.vectors_without_image == 0
    with services.sessions() as session:  # a text-only concept, not garbage
        assert session.get(Concept, "empty-concept") is not None
    assert repaired.repaired and repaired.notes
    # What only an operator can fix stays reported.
    assert repaired.missing_blobs == [missing.id] and repaired.images_without_vector == 1

    assert repair(Storage.of(services), grace_s=0).orphan_blobs == []
    assert not exists(services, young_orphan)
    services.blobs.put(missing.blob_key, photo)
    assert reindex_all(services) == 1
    assert check(Storage.of(services), grace_s=0).problems == []
    assert api.get(f"/v1/users/alice/concepts/{dog['id']}").status_code == 200
    assert stored(services)["concepts"] == 3  # the text-only concept stays


@BOTH_BLOB_STORES
def test_the_doctor_command(
    start_server: Any, sqlite_url: str, tmp_path: Path, blob_store: dict[str, Any]
) -> None:
    server: LiveServer = start_server(make_settings(sqlite_url, tmp_path / "data", **blob_store))
    api = server.client(server.new_key("acme"))
    services = server.services
    dog = register_subject(api, "alice", "dog", count=2)
    orphan = plant(services, f"t1/u1/ab/{'ab' * 32}", age_s=2 * HOUR)
    gone, kept = image_rows(services, dog["id"])
    services.blobs.delete(gone.blob_key)
    env = rapport_env(
        services.settings.data_dir, RAPPORT_DATABASE_URL=sqlite_url, **as_env(blob_store)
    )
    result = run_cli(["doctor", "--repair"], env)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    # It says which settings it used: run without the server's environment, that shows.
    data = services.settings.data_dir
    photos = services.settings.blob_store or (data / "blobs").resolve()
    assert lines[0] == (
        f"using data folder {data.resolve()}, database {sqlite_url}, photos {photos}, "
        "model rapport-test-tiny:none"
    )
    assert "repaired: deleted 1 unreferenced files" in lines
    assert any(line.startswith("problem: 1 photos whose file is missing") for line in lines)
    # The command knows the configured model's id without loading it: the vectors match.
    assert not any("no vector of the configured model" in line for line in lines)
    assert lines[-1] == "problems remain" and "Traceback" not in result.stderr
    assert not exists(services, orphan)
    assert api.get(f"/v1/users/alice/concepts/{dog['id']}/images/{kept.id}").status_code == 200
