"""Bulk import of concept folders and RAP databases: what lands, what fails, resuming."""

from __future__ import annotations

import json
import os
import pty
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.domain.scope import UserScope
from app.main import build_services
from app.storage.repository.tenants import get_or_create_tenant
from app.usecases.concept_reads import list_concepts
from app.usecases.import_sources import find_sources
from app.usecases.importer import import_concepts
from app.usecases.photo_policy import PhotoPolicy
from retrieval.encoder import Encoder
from retrieval.errors import InvalidRequest
from tests import factories
from tests.app.helpers import stored
from tests.app.processes import RAPPORT, rapport_env, run_cli
from tests.conftest import BOTH_BLOB_STORES, make_settings


def copy_photos(subject: str, folder: Path, count: int, first: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + count):
        (folder / f"{index:02d}.jpg").write_bytes(factories.photo(subject, index))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Four concept folders (one nested): 7 good photos, 3 bad files, one hopeless concept."""
    root = tmp_path / "concepts"
    copy_photos("dog", root / "bo", 3)
    concept = {"name": "<bo>", "description": "a corgi who loves the beach", "category": "dog"}
    (root / "bo" / "concept.json").write_text(json.dumps(concept))
    copy_photos("cat", root / "pets" / "mochi", 2)
    (root / "pets" / "mochi" / "info.txt").write_text("my grey cat\nnot the description\n")
    copy_photos("backpack", root / "backpack", 2)
    (root / "backpack" / "notes.png").write_text("a text file, not a photo")
    (root / "backpack" / "torn.jpg").write_bytes(factories.photo("backpack", 2)[:3000])
    (root / "hopeless").mkdir()
    (root / "hopeless" / "only.jpg").write_bytes(b"")
    return root


@BOTH_BLOB_STORES
def test_import_registers_every_folder_reports_each_bad_file_and_resumes(
    start_server: Any, database_url: str, tmp_path: Path, tree: Path, blob_store: dict[str, Any]
) -> None:
    # Two photos a request: <bo> is registered with two, then given its third.
    settings = make_settings(
        database_url, tmp_path / "data", max_images_per_request=2, **blob_store
    )
    server = start_server(settings)
    calls: list[tuple[int, int]] = []

    def run(progress: Any = None) -> Any:
        return import_concepts(
            server.services,
            tenant_name="acme",
            external_user_id="alice",
            root=tree,
            progress=progress,
        )

    report = run(lambda done, total: calls.append((done, total)))

    assert sorted(report.created) == ["<bo>", "backpack", "mochi"]
    assert (report.photos_added, report.photos_skipped) == (7, 0)
    assert report.skipped_concepts == ["hopeless"]
    reasons = {Path(failure.where).name: failure.reason for failure in report.failures}
    assert reasons.keys() == {"notes.png", "torn.jpg", "only.jpg", "hopeless"}
    assert reasons["notes.png"].startswith("Unsupported media type")
    assert reasons["torn.jpg"].startswith("Corrupt image")
    assert reasons["only.jpg"] == "Unsupported media type: empty file"
    assert "not registered" in reasons["hopeless"]
    assert calls[0] == (0, 10) and calls[-1] == (10, 10)
    assert "failed: 4" in report.lines()

    api = server.client(server.new_key("acme"))
    concepts = {c["name"]: c for c in api.get("/v1/users/alice/concepts").json()["items"]}
    assert concepts.keys() == {"<bo>", "mochi", "backpack"}
    bo, mochi, backpack = concepts["<bo>"], concepts["mochi"], concepts["backpack"]
    assert (bo["description"], bo["category"], len(bo["images"])) == (
        "a corgi who loves the beach",
        "dog",
        3,
    )
    assert (mochi["description"], mochi["category"], len(mochi["images"])) == (
        "my grey cat",
        None,
        2,
    )
    assert (backpack["description"], len(backpack["images"])) == ("", 2)

    before = stored(server.services)
    again = run()
    assert (again.created, again.extended, again.photos_added) == ([], [], 0)
    assert again.photos_skipped == 7 and len(again.failures) == 4
    assert stored(server.services) == before

    copy_photos("dog", tree / "bo", 1, first=3)
    later = run()
    assert (later.created, later.extended, later.photos_added) == ([], ["<bo>"], 1)
    assert stored(server.services)["images"] == before["images"] + 1
    assert stored(server.services)["blobs"] == before["blobs"] + 1


def test_a_rap_database_imports_with_image_paths_relative_to_it(
    sqlite_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    rap = tmp_path / "rap"
    copy_photos("dog", rap / "images" / "bo", 2)
    copy_photos("cat", rap / "images" / "mam", 1)
    concepts = {
        "<bo>": {
            "name": "bo",
            "image": ["images/bo/00.jpg", "images/bo/01.jpg"],
            "info": {
                "category": "dog",
                "general": ["a corgi"],
                "distinct features": ["red collar"],
            },
            "category": "dog",
        },
        "<mam>": {"name": "mam", "image": "images/mam/00.jpg", "info": "a grey cat"},
        "<ghost>": {"name": "ghost", "image": ["images/ghost/00.jpg"], "info": "gone"},
    }
    database = {"concept_dict": concepts, "path_to_concept": {"images/bo/00.jpg": "<bo>"}}
    (rap / "database.json").write_text(json.dumps(database))
    (rap / "flat.json").write_text(json.dumps(concepts))
    services = build_services(make_settings(sqlite_url, tmp_path / "data"), encoder=encoder)
    try:
        report = import_concepts(services, tenant_name="acme", external_user_id="al", root=rap)
        flat = import_concepts(
            services, tenant_name="acme", external_user_id="al", root=rap / "flat.json"
        )
        with services.sessions() as session:
            tenant_id = get_or_create_tenant(session=session, name="acme").id
        scope = UserScope(tenant_id=tenant_id, external_user_id="al")
        views, _ = list_concepts(services, scope=scope, limit=10, after=None)
    finally:
        services.close()

    assert (report.created, report.photos_added, report.skipped_concepts) == (
        ["bo", "mam"],
        3,
        ["ghost"],
    )
    ghost_photo = rap / "images" / "ghost" / "00.jpg"
    assert report.failures[0].where == str(ghost_photo)
    assert report.failures[0].reason.startswith("unreadable: No such file")
    found = {
        v.concept.name: (v.concept.description, v.concept.category, len(v.images)) for v in views
    }
    assert found == {
        "bo": ("general: a corgi; distinct features: red collar", "dog", 2),
        "mam": ("a grey cat", None, 1),
    }
    assert (flat.created, flat.photos_added, flat.photos_skipped) == ([], 0, 3)


def test_quotas_fail_the_photos_and_concepts_over_them_and_the_import_goes_on(
    sqlite_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    root = tmp_path / "concepts"
    for folder, subject, count in (("a_dog", "dog", 3), ("b_cat", "cat", 1), ("c", "clock", 1)):
        copy_photos(subject, root / folder, count)
    settings = make_settings(
        sqlite_url, tmp_path / "data", max_photos_per_concept=2, max_concepts_per_user=2
    )
    services = build_services(settings, encoder=encoder)
    try:
        report = import_concepts(services, tenant_name="acme", external_user_id="al", root=root)
    finally:
        services.close()

    assert (report.created, report.photos_added) == (["a_dog", "b_cat"], 3)
    reasons = {Path(failure.where).name: failure.reason for failure in report.failures}
    assert reasons == {
        "02.jpg": "Quota exceeded: a concept holds at most 2 photos",
        "c": "1 photo(s) not added: Quota exceeded: this user has the most concepts allowed (2)",
    }


def test_each_photo_is_decoded_once(
    sqlite_url: str, tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The importer decodes each photo to name the one that fails; registering it must
    # not decode it again. Decodes are counted where every one starts: PIL's open.
    root = tmp_path / "concepts"
    copy_photos("dog", root / "bo", 3)
    opened: list[object] = []
    original = Image.open

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    services = build_services(make_settings(sqlite_url, tmp_path / "data"), encoder=encoder)
    try:
        PhotoPolicy.for_uploads(services, None).decode((root / "bo" / "00.jpg").read_bytes())
        per_decode = len(opened)
        opened.clear()
        report = import_concepts(services, tenant_name="acme", external_user_id="al", root=root)
    finally:
        services.close()
    assert report.photos_added == 3
    assert per_decode >= 1 and len(opened) == 3 * per_decode


def test_the_import_command_prints_a_summary_and_exits_1_on_a_bad_file(tmp_path: Path) -> None:
    data = tmp_path / "data"  # new: the command creates and migrates the database
    root = tmp_path / "concepts"
    copy_photos("dog", root / "bo", 2)
    (root / "bo" / "broken.jpg").write_bytes(b"not a photo")

    result = run_cli(
        ["import", str(root), "--tenant", "acme", "--user", "alice"], rapport_env(data)
    )

    assert result.returncode == 1, result.stderr
    assert "concepts created: 1\n" in result.stdout
    assert "photos added: 2\n" in result.stdout
    assert f"{root / 'bo' / 'broken.jpg'}: Unsupported media type" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_import_command_shows_a_progress_bar_in_a_terminal(tmp_path: Path) -> None:
    copy_photos("dog", tmp_path / "photos" / "dog", 3)
    env = rapport_env(tmp_path / "data")
    command = [*RAPPORT, "import", str(tmp_path / "photos"), "--tenant", "t", "--user", "u"]
    # A pseudo-terminal as a fresh one is: it reports no size (0 columns) until told one.
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the command, with the terminal as stdin, stdout and stderr
        os.execvpe(command[0], command, env)
    output = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(terminal)
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "3/3" in text and "photo/s" in text
    assert "photos added: 3" in text
    # "dog" is a common word: the summary says how questions name that concept.
    assert "note: dog is a common English word" in text and "(<dog>)" in text


def test_import_reads_only_regular_files_inside_the_tree_it_was_given(
    sqlite_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    # Before: symlinks and absolute or ".." paths were followed: an operator's private file
    # became a concept's description (which the tenant can export), photos came from anywhere.
    private = tmp_path / "operator"
    private.mkdir()
    (private / "secret.txt").write_text("the operator's secret\n")
    (private / "photo.jpg").write_bytes(factories.photo("cat", 0))
    tree = tmp_path / "tree"
    copy_photos("dog", tree / "bo", 1)
    (tree / "bo" / "info.txt").symlink_to(private / "secret.txt")
    (tree / "bo" / "01.jpg").symlink_to(private / "photo.jpg")
    (tree / "linked").symlink_to(private, target_is_directory=True)
    rap = tmp_path / "rap"
    copy_photos("dog", rap, 1)
    entries = {
        "mam": {
            "name": "mam",
            "image": ["00.jpg", str(private / "photo.jpg"), "../operator/photo.jpg"],
        }
    }
    (rap / "database.json").write_text(json.dumps({"concept_dict": entries}))
    services = build_services(make_settings(sqlite_url, tmp_path / "data"), encoder=encoder)
    try:
        folders = import_concepts(services, tenant_name="acme", external_user_id="al", root=tree)
        database = import_concepts(services, tenant_name="acme", external_user_id="al", root=rap)
        with services.sessions() as session:
            tenant_id = get_or_create_tenant(session=session, name="acme").id
        scope = UserScope(tenant_id=tenant_id, external_user_id="al")
        views, _ = list_concepts(services, scope=scope, limit=10, after=None)
    finally:
        services.close()
    found = {v.concept.name: (v.concept.description, len(v.images)) for v in views}
    assert found == {"mam": ("", 1)}  # bo's metadata is refused, so bo is not imported
    assert "secret" not in json.dumps([v.concept.description for v in views])
    refused = [failure.where for failure in folders.failures + database.failures]
    assert str(tree / "bo" / "01.jpg") in refused
    assert str(tree / "bo") in refused  # its info.txt is a link
    assert sum("photo.jpg" in where for where in refused) == 2  # the absolute and ".." paths
    assert database.photos_added == 1


def test_import_reads_a_bounded_part_of_metadata_files(tmp_path: Path) -> None:
    # Before: info.txt was read whole (a 1 MB zip held a 1 GB info.txt: +2.1 GB).
    tree = tmp_path / "tree"
    copy_photos("dog", tree / "bo", 1)
    with (tree / "bo" / "info.txt").open("wb") as handle:
        handle.write(b"a" * 100)
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB to read, no disk used
    tracemalloc.start()
    try:
        sources, failures = find_sources(tree)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not failures
    assert len(sources) == 1 and sources[0].description.startswith("a" * 100)
    assert peak < 5 * 1024 * 1024, peak


def test_a_rap_database_nested_too_deeply_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "database.json"
    path.write_text('{"c": {"image": "x.jpg", "info": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        find_sources(path)
