"""Reading concepts to import: a folder tree, or a RAP ``database.json``.

Folder tree: every folder (``root`` included) that directly holds photos is one
concept, its photos taken in file-name order. Its name is the folder's, unless a
``concept.json`` ({"name", "description" or "info", "category"}) says otherwise;
without a description there, the first line of ``info.txt`` is the description.
RAP layout: ``root`` is a JSON file, or a folder holding ``database.json``, of
the form {"concept_dict": {key: {"name", "image", "info", "category"}}} (or the
concepts at the top level), image paths relative to the JSON file's folder.

Only regular files inside the tree given are read: symlinks are not followed,
and absolute or ``..`` image paths are refused, so an import cannot pull an
operator's private file into a concept (which the tenant could then export).
Metadata files are read up to a bound (``MAX_METADATA_BYTES``, the first
``MAX_INFO_BYTES`` of ``info.txt``), and a JSON file nested too deep to parse
is refused by name.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.domain.text_fields import Category, Description, Name
from retrieval.errors import InvalidRequest
from retrieval.images import PHOTO_SUFFIXES

RAP_DATABASE = "database.json"
MAX_METADATA_BYTES = 64 * 1024  # concept.json: a name, a description, a category
MAX_INFO_BYTES = 16 * 1024  # info.txt: its first line is the description (4,000 characters)
MAX_DATABASE_BYTES = 256 * 1024 * 1024  # a RAP database.json of many concepts
NOT_INSIDE = "not a regular file inside the imported tree (symlinks are not followed)"
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
    sources: list[ConceptSource] = []
    failures: list[Failure] = []
    top = root.resolve()
    for folder, folders, files in os.walk(root):  # symlinked folders are not entered
        folders[:] = sorted(
            name for name in folders if not name.startswith(".") and name != NEGATIVES_FOLDER
        )
        here = Path(folder)
        photos = _photos_in(here, files, top, failures)
        if not photos and not {"concept.json", "info.txt"} & set(files):
            continue
        try:
            fields = _folder_fields(here, top)
        except (OSError, ValueError, RecursionError) as error:
            failures.append(Failure(str(here), f"metadata unreadable: {_why(error)}"))
            continue
        negatives = here / NEGATIVES_FOLDER
        listed = negatives.is_dir() and not negatives.is_symlink()
        not_it = _photos_in(negatives, os.listdir(negatives), top, failures) if listed else []
        sources.append(ConceptSource(origin=str(here), photos=photos, negatives=not_it, **fields))
    return sources, failures


def is_inside(path: Path, top: Path) -> bool:
    """Whether ``path`` is a regular file, not a symlink, inside the folder ``top``
    (resolved), whatever links its own folders are."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        return path.resolve().is_relative_to(top)
    except (OSError, RuntimeError):
        return False


def read_bounded(path: Path, limit: int, *, truncate: bool = False) -> str:
    """The text of ``path``, at most ``limit`` bytes of it: more is an error (ValueError),
    or with ``truncate`` is left unread."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        if not truncate:
            raise ValueError(f"{path.name} is over {limit} bytes")
        return data[:limit].decode("utf-8", errors="ignore")
    return data.decode("utf-8")


def _why(error: Exception) -> str:
    return "nested too deeply" if isinstance(error, RecursionError) else str(error)


def _photos_in(folder: Path, files: list[str], top: Path, failures: list[Failure]) -> list[Path]:
    """The photos among ``files`` of ``folder``; those not inside ``top`` are failures."""
    photos = []
    for name in sorted(files):
        if Path(name).suffix.lower() in PHOTO_SUFFIXES and not name.startswith("."):
            if is_inside(folder / name, top):
                photos.append(folder / name)
            else:
                failures.append(Failure(str(folder / name), NOT_INSIDE))
    return photos


def _folder_fields(folder: Path, top: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for name in ("concept.json", "info.txt"):
        if (folder / name).exists() and not is_inside(folder / name, top):
            raise ValueError(f"{name} is {NOT_INSIDE}")
    if (folder / "concept.json").is_file():
        entry = json.loads(read_bounded(folder / "concept.json", MAX_METADATA_BYTES))
        if not isinstance(entry, dict):
            raise ValueError("concept.json must hold a JSON object")
    fields = _entry_fields(entry, default_name=folder.name)
    if not fields["description"] and (folder / "info.txt").is_file():
        text = read_bounded(folder / "info.txt", MAX_INFO_BYTES, truncate=True)
        lines = text.splitlines()
        fields["description"] = lines[0].strip() if lines else ""
    return fields


def _rap_photo(folder: Path, image: str) -> Path | None:
    """The photo ``image`` names, relative to ``folder``; None when it is absolute, climbs
    out with ``..``, or is not a regular file inside ``folder``."""
    relative = Path(image)
    if relative.is_absolute() or ".." in relative.parts:
        return None
    path = folder / relative
    if not os.path.lexists(path):
        return path  # reported as unreadable when it is read
    return path if is_inside(path, folder.resolve()) else None


def _rap_sources(path: Path) -> tuple[list[ConceptSource], list[Failure]]:
    try:
        data = json.loads(read_bounded(path, MAX_DATABASE_BYTES))
    except RecursionError:
        raise InvalidRequest(f"{path} is nested too deeply to read") from None
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
        photos = []
        for image in images:
            photo = _rap_photo(path.parent, image)
            if photo is None:
                failures.append(Failure(f"{path} [{key}] {image}", NOT_INSIDE))
            else:
                photos.append(photo)
        try:
            fields = _entry_fields(entry, default_name=str(key))
        except RecursionError:
            failures.append(Failure(f"{path} [{key}]", "nested too deeply"))
            continue
        sources.append(ConceptSource(origin=f"{path} [{key}]", photos=photos, **fields))
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
