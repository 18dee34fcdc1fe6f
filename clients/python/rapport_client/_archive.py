"""Reading an export (the zip of GET /v1/users/{id}/export) back into concepts."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".img"}


@dataclass(frozen=True)
class ArchivedConcept:
    name: str
    description: str
    category: str | None
    photos: list[bytes]


def read_export(source: str | IO[bytes]) -> list[ArchivedConcept]:
    """The concepts of an export, in its order, each with its photos in upload order."""
    with zipfile.ZipFile(source) as archive:
        folders: dict[str, dict[str, bytes]] = {}
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if info.is_dir() or len(path.parts) != 2:
                continue
            folders.setdefault(path.parts[0], {})[path.parts[1]] = archive.read(info)
    concepts = []
    for folder, files in folders.items():
        fields = json.loads(files.get("concept.json", b"{}"))
        photos = [
            files[name]
            for name in sorted(files)
            if PurePosixPath(name).suffix.lower() in PHOTO_SUFFIXES
        ]
        concepts.append(
            ArchivedConcept(
                name=fields.get("name") or folder,
                description=fields.get("description") or "",
                category=fields.get("category"),
                photos=photos,
            )
        )
    return concepts
