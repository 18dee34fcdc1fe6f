"""Reading an export (the zip of GET /v1/users/{id}/export) back into concepts."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

NEGATIVES_FOLDER = "not"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".img"}


@dataclass(frozen=True)
class ArchivedConcept:
    name: str
    description: str
    category: str | None
    photos: list[bytes]
    negatives: list[bytes]


def read_export(source: str | IO[bytes]) -> list[ArchivedConcept]:
    """The concepts of an export, in its order, each with its photos and its negatives
    in upload order."""
    with zipfile.ZipFile(source) as archive:
        folders: dict[str, dict[str, bytes]] = {}
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            # <concept>/<file>, or <concept>/not/<file> for its negatives; history.json
            # at the root is not a concept's.
            if info.is_dir() or len(path.parts) not in (2, 3):
                continue
            if len(path.parts) == 3 and path.parts[1] != NEGATIVES_FOLDER:
                continue
            folders.setdefault(path.parts[0], {})["/".join(path.parts[1:])] = archive.read(info)
    concepts = []
    for folder, files in folders.items():
        fields = json.loads(files.get("concept.json", b"{}"))
        photos: list[bytes] = []
        negatives: list[bytes] = []
        for name in sorted(files):
            if PurePosixPath(name).suffix.lower() in PHOTO_SUFFIXES:
                is_negative = name.startswith(f"{NEGATIVES_FOLDER}/")
                (negatives if is_negative else photos).append(files[name])
        concepts.append(
            ArchivedConcept(
                name=fields.get("name") or folder,
                description=fields.get("description") or "",
                category=fields.get("category"),
                photos=photos,
                negatives=negatives,
            )
        )
    return concepts
