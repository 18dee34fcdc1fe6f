"""Concepts and photos through both clients, against a served rapport."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import rapport_client as rc
from PIL import Image

from tests import factories
from tests.clients.conftest import Drive
from tests.clients.driver import Driver


def dataset_paths(subject: str, count: int) -> list[Path]:
    files = sorted(
        p for p in (factories.DATASET / subject).iterdir() if p.suffix.lower() in (".jpg", ".png")
    )
    return files[:count]


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_a_concept_from_paths_bytes_and_files_round_trips(run: Drive) -> None:
    paths = dataset_paths("dog", 3)
    sizes = [size_of(p) for p in paths]

    async def scenario(api: Driver) -> None:
        progress: list[tuple[int, int | None]] = []
        with paths[2].open("rb") as third:
            concept = await api.create_concept(
                "alice",
                "<bo>",
                [paths[0], paths[1].read_bytes(), third],
                description="a corgi",
                category="dog",
                progress=lambda done, total: progress.append((done, total)),
            )
        assert isinstance(concept, rc.Concept)
        assert (concept.name, concept.description, concept.category) == ("<bo>", "a corgi", "dog")
        assert [(i.width, i.height) for i in concept.images] == sizes
        total = progress[-1][1]
        assert total is not None and progress[-1][0] == total > sum(p.stat().st_size for p in paths)
        assert [done for done, _ in progress] == sorted(done for done, _ in progress)

        assert await api.get_concept("alice", concept.id) == concept
        changed = await api.update_concept("alice", concept.id, name="<bo2>", category="")
        assert (changed.name, changed.description, changed.category) == ("<bo2>", "a corgi", None)
        # Stored as uploaded, byte for byte.
        first = concept.images[0]
        assert await api.get_photo("alice", concept.id, first.id) == paths[0].read_bytes()

        await api.delete_concept("alice", concept.id)
        with pytest.raises(rc.ConceptNotFound) as missing:
            await api.get_concept("alice", concept.id)
        assert (missing.value.status, missing.value.title) == (404, "Concept not found")
        assert missing.value.detail

    run(scenario)


def test_photos_are_added_thumbnailed_and_deleted(run: Drive) -> None:
    [path] = dataset_paths("cat", 1)

    async def scenario(api: Driver) -> None:
        concept = await api.create_concept("alice", "<mo>", [path])
        pil = Image.new("RGB", (300, 200), (10, 200, 30))
        added = await api.add_photos("alice", concept.id, [pil])
        assert [(i.width, i.height) for i in added.images][1] == (300, 200)
        new = added.images[1]
        stored = Image.open(io.BytesIO(await api.get_photo("alice", concept.id, new.id)))
        assert stored.size == (300, 200) and stored.getpixel((5, 5)) == (10, 200, 30)
        thumbnail = Image.open(io.BytesIO(await api.get_thumbnail("alice", concept.id, new.id, 64)))
        assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 64

        await api.delete_photo("alice", concept.id, new.id)
        assert [i.id for i in (await api.get_concept("alice", concept.id)).images] == [
            concept.images[0].id
        ]
        with pytest.raises(rc.ImageNotFound) as gone:
            await api.get_photo("alice", concept.id, new.id)
        assert (gone.value.status, gone.value.title) == (404, "Image not found")

        text_only = await api.create_concept("alice", "<mo's name>", description="named only")
        assert (text_only.images, text_only.description) == ([], "named only")
        found = await api.retrieve("alice", text="where is <mo's name>?")
        assert [m.concept.id for m in found.matches] == [text_only.id]

    run(scenario)


def test_listing_walks_every_page(run: Drive) -> None:
    [path] = dataset_paths("clock", 1)
    photo = path.read_bytes()

    async def scenario(api: Driver) -> None:
        made = [(await api.create_concept("bob", f"c{i}", [photo])).id for i in range(5)]
        listed = await api.collect("list_concepts", "bob", page_size=2)
        assert [c.id for c in listed] == made
        page = await api.concepts_page("bob", limit=2)
        assert len(page.items) == 2 and page.next_cursor is not None
        for user in ("carol", "dave"):
            await api.create_concept(user, "x", [photo])
        users = await api.collect("list_users", page_size=1)
        assert [(u.user_id, u.concepts) for u in users] == [("bob", 5), ("carol", 1), ("dave", 1)]
        assert [u.user_id for u in await api.collect("list_users", prefix="ca")] == ["carol"]
        assert (await api.get_user("bob")).photos == 5

    run(scenario)


def test_export_then_import_into_another_user(run: Drive, tmp_path: Path) -> None:
    paths = dataset_paths("backpack", 2)

    async def scenario(api: Driver) -> None:
        await api.create_concept("alice", "<pack>", paths, description="blue", category="bag")
        await api.create_concept("alice", "<one>", [paths[0]])
        progress: list[int] = []
        target = tmp_path / "alice.zip"
        written = await api.export_user(
            "alice", target, progress=lambda done, total: progress.append(done)
        )
        assert written == target and progress and progress[-1] == target.stat().st_size

        imported = await api.import_user("zoe", target)
        assert [(c.name, c.description, c.category, len(c.images)) for c in imported] == [
            ("<pack>", "blue", "bag", 2),
            ("<one>", "", None, 1),
        ]
        copy = imported[0]
        assert await api.get_photo("zoe", copy.id, copy.images[1].id) == paths[1].read_bytes()

        await api.erase_user("alice")
        with pytest.raises(rc.NotFound):
            await api.get_user("alice")
        assert (await api.get_user("zoe")).concepts == 2

    run(scenario)


def test_history_lists_every_change_newest_first_and_undo_refuses_an_api_change(
    run: Drive,
) -> None:
    [path] = dataset_paths("candle", 1)

    async def scenario(api: Driver) -> None:
        concept = await api.create_concept("alice", "<wick>", [path], description="tall")
        await api.update_concept("alice", concept.id, description="short")
        events = await api.collect("list_history", "alice", page_size=1)
        assert [(e.action, e.source, e.concept_id) for e in events] == [
            ("updated", "api", concept.id),
            ("created", "api", concept.id),
        ]
        updated, created = events
        assert created.before is None and created.after is not None
        assert created.after.photos == [concept.images[0].id]
        assert updated.before == created.after
        assert updated.after is not None and updated.after.description == "short"
        assert not updated.undoable
        with pytest.raises(rc.NotUndoable) as refused:
            await api.undo("alice", updated.id)
        assert refused.value.status == 409
        with pytest.raises(rc.EventNotFound):
            await api.undo("alice", concept.id)

    run(scenario)


def test_negatives_are_added_listed_exported_imported_and_deleted(
    run: Drive, tmp_path: Path
) -> None:
    own = factories.photo("dog", 0)
    not_bo = factories.photo("cat", 0)

    async def scenario(api: Driver) -> None:
        bo = await api.create_concept("alice", "<bo>", [own])
        added = await api.add_negatives("alice", bo.id, [not_bo])
        assert isinstance(added, rc.NegativePage)
        [negative] = added.items
        assert (negative.width, negative.height) == (512, 512)
        assert await api.list_negatives("alice", bo.id) == added
        assert await api.get_photo("alice", bo.id, negative.id) == not_bo
        with pytest.raises(rc.NegativeIsOwnPhoto) as refused:
            await api.add_negatives("alice", bo.id, [own])
        assert refused.value.status == 409

        await api.export_user("alice", tmp_path / "alice.zip")
        [copy] = await api.import_user("zoe", tmp_path / "alice.zip")
        [copied] = (await api.list_negatives("zoe", copy.id)).items
        assert await api.get_photo("zoe", copy.id, copied.id) == not_bo

        await api.delete_negative("alice", bo.id, negative.id)
        assert (await api.list_negatives("alice", bo.id)).items == []

    run(scenario)


def test_looks_like_is_set_only_when_asked(run: Drive) -> None:
    photo = factories.photo("dog", 0)

    async def scenario(api: Driver) -> None:
        first = await api.create_concept("alice", "<bo>", [photo])
        twin = await api.create_concept("alice", "<bo's twin>", [photo])
        assert (await api.get_concept("alice", twin.id)).looks_like is None
        asked = await api.get_concept("alice", twin.id, looks_like=True)
        assert asked.looks_like is not None and asked.looks_like.id == first.id
        listed = await api.collect("list_concepts", "alice", looks_like=True)
        assert [c.looks_like.id for c in listed if c.looks_like] == [twin.id, first.id]
        assert all(c.looks_like is None for c in await api.collect("list_concepts", "alice"))

    run(scenario)
