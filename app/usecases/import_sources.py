"""Reading concepts to import: a folder tree, or a RAP ``database.json``.

Folder tree: every folder (``root`` included) that directly holds photos is one
concept, its photos taken in file-name order. Its name is the folder's, unless a
``concept.json`` ({"name", "description" or "info", "category"}) says otherwise;
without a description there, the first line of ``info.txt`` is the description.
RAP layout: ``root`` is a JSON file, or a folder holding ``database.json``, of
the form {"concept_dict": {key: {"name", "image", "info", "category"}}} (or the
concepts at the top level), image paths relative to the JSON file's folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.domain.text_fields import Category, Description, Name
from retrieval.errors import InvalidRequest
from retrieval.images import PHOTO_SUFFIXES

RAP_DATABASE = "database.json"
# A concept folder's sub-folder of photos that are not the concept (corrections).
NEGATIVES_FOLDER = "not"
# The same rules for a concept's fields as the HTTP API's.
_FIELDS: dict[str, TypeAdapter[str]] = {
    "name": TypeAdapter(Name),
    "description": TypeAdapter(Description),
    "category": TypeAdapter(Category),
}


@dataclass(frozen=True)
class ConceptSource:
    """One concept found in the source: where (for messages), its fields, its photo files."""

    origin: str  # its folder, or "<json file> [<key>]"
    name: str
    description: str
    category: str | None
    photos: list[Path]
    # Photos the user said are not the concept (an export's ``not/`` folder).
    negatives: list[Path] = field(default_factory=list)

    def check(self) -> None:
        """Raise InvalidRequest naming the first field the HTTP API would refuse."""
        values = (self.name, self.description, self.category or "")
        for (field_name, adapter), value in zip(_FIELDS.items(), values, strict=True):
            try:
                adapter.validate_python(value)
            except ValidationError as error:
                raise InvalidRequest(f"{field_name}: {error.errors()[0]['msg']}") from None


@dataclass(frozen=True)
class Failure:
    """Something not imported, and why."""

    where: str  # a photo file, or the folder or JSON entry of a concept
    reason: str


def find_sources(root: Path) -> tuple[list[ConceptSource], list[Failure]]:
    """The concepts under ``root`` in either layout, and the metadata files that failed.

    Raises InvalidRequest when ``root`` is missing or its RAP database unreadable.
    """
    if root.is_file():
        return _rap_sources(root)
    if (root / RAP_DATABASE).is_file():
        return _rap_sources(root / RAP_DATABASE)
    if not root.is_dir():
        raise InvalidRequest(f"{root} is neither a folder nor a JSON file")
    sources, failures = [], []
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(
            name for name in folders if not name.startswith(".") and name != NEGATIVES_FOLDER
        )
        here = Path(folder)
        photos = _photos_in(here, files)
        if not photos and not {"concept.json", "info.txt"} & set(files):
            continue
        try:
            fields = _folder_fields(here)
        except (OSError, ValueError) as error:
            failures.append(Failure(str(here), f"metadata unreadable: {error}"))
            continue
        negatives = here / NEGATIVES_FOLDER
        not_it = _photos_in(negatives, os.listdir(negatives)) if negatives.is_dir() else []
        sources.append(ConceptSource(origin=str(here), photos=photos, negatives=not_it, **fields))
    return sources, failures


def _photos_in(folder: Path, files: list[str]) -> list[Path]:
    return sorted(
        folder / name
        for name in files
        if Path(name).suffix.lower() in PHOTO_SUFFIXES and not name.startswith(".")
    )


def _folder_fields(folder: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if (folder / "concept.json").is_file():
        entry = json.loads((folder / "concept.json").read_text(encoding="utf-8"))
        if not isinstance(entry, dict):
            raise ValueError("concept.json must hold a JSON object")
    fields = _entry_fields(entry, default_name=folder.name)
    if not fields["description"] and (folder / "info.txt").is_file():
        lines = (folder / "info.txt").read_text(encoding="utf-8").splitlines()
        fields["description"] = lines[0].strip() if lines else ""
    return fields


def _rap_sources(path: Path) -> tuple[list[ConceptSource], list[Failure]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidRequest(f"{path} is not a readable JSON file: {error}") from None
    nested = isinstance(data, dict) and "concept_dict" in data
    entries = data["concept_dict"] if nested else data
    if not isinstance(entries, dict):
        raise InvalidRequest(f"{path}: expected an object of concepts")
    sources, failures = [], []
    for key, entry in entries.items():
        if key == "path_to_concept" and not nested:
            continue  # RAP's reverse map, not a concept
        images = entry.get("image", entry.get("images")) if isinstance(entry, dict) else None
        images = [images] if isinstance(images, str) else images
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            failures.append(Failure(f"{path} [{key}]", "no 'image' path or list of paths"))
            continue
        sources.append(
            ConceptSource(
                origin=f"{path} [{key}]",
                photos=[path.parent / image for image in images],
                **_entry_fields(entry, default_name=str(key)),
            )
        )
    return sources, failures


def _entry_fields(entry: dict[str, Any], *, default_name: str) -> dict[str, Any]:
    info = entry.get("description", entry.get("info"))
    category = entry.get("category")
    if category is None and isinstance(info, dict):
        category = info.get("category")
    return {
        "name": _text(entry.get("name")) or default_name,
        "description": _text(info),
        "category": _text(category) or None,
    }


def _text(value: object) -> str:
    """RAP's info may be a string, a list of strings or an object of them."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(filter(None, map(_text, value)))
    if isinstance(value, dict):
        parts = (f"{key}: {_text(item)}" for key, item in value.items() if key != "category")
        return "; ".join(parts)
    return str(value).strip()
