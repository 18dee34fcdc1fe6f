"""Recognition as a user meets it: open-set identification (1:N), as face identification
is measured (NIST FRVT 1:N: FPIR against FNIR).

A simulated user registers ``concepts`` of a dataset's subjects (their first
``references`` photos each) and sends every other photo of every subject. A photo
of a registered subject is right when that concept comes first among the concepts
marked present; a photo of an unregistered one is right when nothing is present.
Each size is drawn ``users`` times (seeded), and every query goes through
``search_photos`` and the decision rule exactly as the service runs them.

- found: registered subjects' photos whose concept is present and first (1 - FNIR);
- rejected: unregistered subjects' photos with nothing present (1 - FPIR);
- balanced: their mean; ``oracle``: the best balanced figure any one threshold on the
  top score could reach, chosen afterwards with the answers (an upper bound for a
  rule that uses no labels, and the baseline a rule must meet).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from retrieval.decision import DecisionRule, fit_decision
from retrieval.image_encoder import ImageEncoder
from retrieval.index import UserIndex
from retrieval.regions import RegionProposer
from retrieval.search import SearchOptions, search_photos

SIZES = (1, 5, 15, 30)
# A decision rule from a user's photos: (vectors, labels, background vectors) -> rule.
Fit = Callable[[np.ndarray, list[str], np.ndarray], DecisionRule]


@dataclass(frozen=True)
class OpenSetPoint:
    """The figures of users holding ``concepts`` concepts."""

    concepts: int
    users: int
    registered_queries: int
    unregistered_queries: int
    found: float
    rejected: float
    balanced: float
    fpir: float
    fnir: float
    oracle: float
    oracle_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_set(
    photos: dict[str, list[Image.Image]],
    encoder: ImageEncoder,
    proposer: RegionProposer,
    options: SearchOptions,
    background: np.ndarray,
    *,
    references: int = 3,
    sizes: Sequence[int] = SIZES,
    users: int = 10,
    seed: int = 0,
    random_weights: bool = False,
    fit: Fit | None = None,
) -> list[OpenSetPoint]:
    """One point per size that leaves at least one subject unregistered (sizes larger
    than the dataset allows are left out). Needs subjects with more than ``references``
    photos; raises ValueError for fewer than two subjects. ``fit``: another decision
    rule to measure (benchmarks compare rules in one run), the service's by default."""
    names = sorted(name for name, images in photos.items() if len(images) > references)
    if len(names) < 2:
        raise ValueError("open-set needs two or more subjects with held-out photos")
    cache = _Vectors(encoder, [image for name in names for image in photos[name]])
    rng = random.Random(seed)
    points = []
    for size in sizes:
        if size >= len(names):
            continue
        trials: list[tuple[bool, bool, float]] = []  # (registered, right, top score)
        for _ in range(users):
            chosen = rng.sample(names, size)
            rule, index = _register(
                chosen, photos, cache, references, background, fit or _service_rule(random_weights)
            )
            for name in names:
                for image in photos[name][references:]:
                    trials.append(
                        _query(index, rule, encoder, proposer, options, cache, image, name, chosen)
                    )
        points.append(_point(size, users, trials))
    return points


def _register(
    chosen: list[str],
    photos: dict[str, list[Image.Image]],
    cache: _Vectors,
    references: int,
    background: np.ndarray,
    fit: Fit,
) -> tuple[DecisionRule, UserIndex]:
    index = UserIndex(cache.encoder.dim)
    labels: list[str] = []
    parts = []
    for name in chosen:
        vectors = cache.encode(photos[name][:references])
        index.add(range(len(labels), len(labels) + len(vectors)), [name] * len(vectors), vectors)
        labels += [name] * len(vectors)
        parts.append(vectors)
    return fit(np.concatenate(parts), labels, background), index


def _service_rule(random_weights: bool) -> Fit:
    return lambda vectors, labels, background: fit_decision(
        vectors, labels, background, random_weights=random_weights
    )


def _query(
    index: UserIndex,
    rule: DecisionRule,
    encoder: ImageEncoder,
    proposer: RegionProposer,
    options: SearchOptions,
    cache: _Vectors,
    image: Image.Image,
    name: str,
    chosen: list[str],
) -> tuple[bool, bool, float]:
    # Pooled regions need the encoder itself (one pass per photo).
    searching = cache if options.encoding == "crop" else encoder
    found = search_photos(index, searching, proposer, [image], options)  # type: ignore[arg-type]
    present = [
        m.label
        for m in found.matches
        if rule.present(m.label, m.score, pooled=found.pooled, vectors=found.vectors)
    ]
    top = found.matches[0] if found.matches else None
    registered = name in chosen
    right = (present[:1] == [name]) if registered else not present
    top_score = top.score if top is not None and (not registered or top.label == name) else -2.0
    return registered, right, top_score


def _point(size: int, users: int, trials: list[tuple[bool, bool, float]]) -> OpenSetPoint:
    registered = [t for t in trials if t[0]]
    unregistered = [t for t in trials if not t[0]]
    found = float(np.mean([t[1] for t in registered])) if registered else 0.0
    rejected = float(np.mean([t[1] for t in unregistered])) if unregistered else 0.0
    oracle, oracle_threshold = _oracle(
        np.asarray([t[2] for t in registered]), np.asarray([t[2] for t in unregistered])
    )
    return OpenSetPoint(
        concepts=size,
        users=users,
        registered_queries=len(registered),
        unregistered_queries=len(unregistered),
        found=found,
        rejected=rejected,
        balanced=(found + rejected) / 2,
        fpir=1 - rejected,
        fnir=1 - found,
        oracle=oracle,
        oracle_threshold=oracle_threshold,
    )


def _oracle(right_top: np.ndarray, impostor_top: np.ndarray) -> tuple[float, float]:
    """The best balanced accuracy of one threshold on the top score (a registered photo
    whose top concept is wrong counts as -2: no threshold finds it)."""
    if not len(right_top) or not len(impostor_top):
        return 0.0, 0.0
    candidates = np.unique(np.concatenate([right_top, impostor_top, [np.inf]]))
    found = (right_top[None, :] >= candidates[:, None]).mean(axis=1)
    rejected = (impostor_top[None, :] < candidates[:, None]).mean(axis=1)
    best = int(np.argmax(found + rejected))
    return float((found[best] + rejected[best]) / 2), float(candidates[best])


class _Vectors:
    """The encoder, remembering the vectors of the dataset's photos: every simulated
    user registers and queries the same photos, and one pass each is enough (crops of
    them are other objects, encoded anew every time)."""

    def __init__(self, encoder: ImageEncoder, dataset: Sequence[Image.Image]) -> None:
        self.encoder = encoder
        self._known = {id(image): image for image in dataset}  # held: ids stay theirs
        self._seen: dict[int, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_images(images)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        missing = [image for image in images if id(image) not in self._seen]
        fresh: dict[int, np.ndarray] = {}
        if missing:
            fresh = dict(zip(map(id, missing), self.encoder.encode_images(missing), strict=True))
        for key, vector in fresh.items():
            if key in self._known:
                self._seen[key] = vector
        return np.stack(
            [
                self._seen[id(image)] if id(image) in self._seen else fresh[id(image)]
                for image in images
            ]
        )
