"""A user's concepts as a zip that ``rapport import`` reads back: one folder per concept
holding its photos (as uploaded, in upload order), a ``concept.json``, and in ``not/``
the photos the user said are not the concept (corrections); and their history of
changes, ``history.json`` at the root (which the import leaves alone)."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.domain.errors import NotFound
from app.domain.scope import UserScope
from app.services import Services
from app.storage.db.models import NEGATIVE, utcnow
from app.storage.repository import concepts as concept_rows
from app.storage.repository import history as history_rows
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.usecases.concept_reads import read_blob
from app.usecases.import_sources import NEGATIVES_FOLDER
from retrieval.images import SUFFIX_OF

CHUNK = 256 * 1024


@dataclass(frozen=True)
class ExportedConcept:
    folder: str
    fields: dict[str, str | None]
    photos: list[tuple[str, str, str, str]]  # (file name, blob key, photo id, concept id)


@dataclass(frozen=True)
class Export:
    filename: str
    concepts: list[ExportedConcept]
    history: list[dict[str, Any]]

    def chunks(self, services: Services) -> Iterator[bytes]:
        """The zip, written as it is read: one photo in memory at a time (blocking I/O)."""
        sink = _Sink()
        stamp = utcnow().timetuple()[:6]
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
            info = zipfile.ZipInfo("history.json", stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, json.dumps(self.history, ensure_ascii=False, indent=2))
            for concept in self.concepts:
                info = zipfile.ZipInfo(f"{concept.folder}/concept.json", stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, json.dumps(concept.fields, ensure_ascii=False, indent=2))
                yield from sink.drain()
                for name, key, photo_id, concept_id in concept.photos:
                    data = read_blob(services, key, image_id=photo_id, concept_id=concept_id)
                    archive.writestr(zipfile.ZipInfo(f"{concept.folder}/{name}", stamp), data)
                    yield from sink.drain()
        yield from sink.drain()


def plan_export(services: Services, *, scope: UserScope) -> Export:
    """What the export of the user holds; NotFound for a user the tenant does not have."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            raise NotFound("no such user")
        concepts = concept_rows.every_concept(session=session, user_id=user.id)
        ids = [c.id for c in concepts]
        images = image_rows.images_of(session=session, concept_ids=ids)
        negatives = image_rows.images_of(session=session, concept_ids=ids, role=NEGATIVE)
        exported = []
        for concept in concepts:
            photos = [
                (
                    f"{n:03d}{SUFFIX_OF.get(row.media_type, '.img')}",
                    row.blob_key,
                    row.id,
                    concept.id,
                )
                for n, row in enumerate(images[concept.id], start=1)
            ] + [
                (
                    f"{NEGATIVES_FOLDER}/{n:03d}{SUFFIX_OF.get(row.media_type, '.img')}",
                    row.blob_key,
                    row.id,
                    concept.id,
                )
                for n, row in enumerate(negatives[concept.id], start=1)
            ]
            fields = {
                "name": concept.name,
                "description": concept.description,
                "category": concept.category,
            }
            folder = f"{_slug(concept.name)}-{concept.id[-8:]}"
            exported.append(ExportedConcept(folder, fields, photos))
        history = [
            {
                "id": event.id,
                "time": event.created_at.isoformat(),
                "source": event.source,
                "action": event.action,
                "concept_id": event.concept_id,
                "before": event.before,
                "after": event.after,
                "undoes": event.undoes,
                "undone_at": event.undone_at.isoformat() if event.undone_at else None,
            }
            for event in history_rows.every_event(session=session, user_id=user.id)
        ]
    return Export(
        filename=f"{_slug(scope.external_user_id)}-rapport-export.zip",
        concepts=exported,
        history=history,
    )


def _slug(text: str) -> str:
    """A file-name-safe form of user text (never a path: no separators, no dots first)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    return slug[:40] or "x"


class _Sink:
    """A write-only file for ZipFile, emptied as chunks are yielded (no seeking needed)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        data, self._parts = b"".join(self._parts), []
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
