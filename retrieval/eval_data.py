"""What an evaluation queries: concept folders of photos, and 2x2 collages of them."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image, ImageOps

from retrieval.images import PHOTO_SUFFIXES, decode_image

COLLAGE_CELL = 256


def load_concepts(dataset_dir: str | Path) -> dict[str, list[Image.Image]]:
    """Each sub-folder's photos, sorted by file name, decoded like uploads (EXIF applied, RGB).

    Folders without photos are left out; a missing ``dataset_dir`` raises ValueError.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    concepts = {}
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if paths:
            concepts[folder.name] = [decode_image(path.read_bytes()).image for path in paths]
    return concepts


def category_words(names: Iterable[str]) -> list[str]:
    """Detector prompts from folder names: "grey_sloth_plushie" -> "grey sloth plushie",
    "dog2" -> "dog"; each once, in order."""
    words = (" ".join(name.replace("_", " ").replace("-", " ").split()) for name in names)
    return list(dict.fromkeys(word.rstrip("0123456789").strip() for word in words))


def draw_collages(
    photos: dict[str, list[Image.Image]], *, count: int, seed: int
) -> Iterator[tuple[Image.Image, list[str]]]:
    """``count`` collages, each a 2x2 grid of one photo of four different concepts.

    The same ``photos`` and ``seed`` always give the same collages. Yields
    (collage, its concepts in reading order); needs at least four concepts.
    """
    if len(photos) < 4:
        raise ValueError(f"a collage needs four concepts with photos, got {len(photos)}")
    rng = random.Random(seed)
    names = sorted(photos)
    for _ in range(count):
        chosen = rng.sample(names, 4)
        collage = Image.new("RGB", (2 * COLLAGE_CELL, 2 * COLLAGE_CELL))
        for slot, name in enumerate(chosen):
            cell = ImageOps.fit(rng.choice(photos[name]), (COLLAGE_CELL, COLLAGE_CELL))
            collage.paste(cell, ((slot % 2) * COLLAGE_CELL, (slot // 2) * COLLAGE_CELL))
        yield collage, chosen
