"""Is a concept present? A per-concept threshold from the user's own photos, no labels.

For every concept c of one user, two score samples are taken from what the
service already holds:

- genuine: each of c's photos against c's other photos (leave one out), the
  score a new photo of c would get;
- impostor: photos that are not c (an even sample of at most ``max_cohort``
  of the user's photos, less c's own, plus generic background photos,
  retrieval/background.py) against c's photos, the score a photo without c gets.

c is present when its score reaches ``GENUINE_WEIGHT`` (0.55) of the way from
the impostor mean to the genuine mean: a little past the midpoint, because a
query is compared with all of c's photos and a left-out photo with one fewer,
so the genuine mean runs a little low. The weight is a share of each model's
own score gap, not a score: the rule only compares a model's scores with that
same model's scores, so it needs no per-model constant and no labelled photos.
(0.55 was chosen among 0.5-0.6 on a development half of the evaluation
subjects and checked on the other half: bench/RESULTS.md.)

Regions pooled from one forward pass (``pooled=True``) use ``POOLED_GENUINE_WEIGHT``
(0.25) instead: a pooled region's vector mixes in context from beyond its box,
so a concept it shows scores lower than the same region cropped and encoded on
its own, while regions without the concept score no higher (0.25 was chosen on
the same development half with both backbones, under the condition that absent
concepts stay rejected, bench/RESULTS.md). It is still a share of each
concept's own gap, never a score.

Degradations (never "everything matches"):

- a concept with one photo has no genuine sample: it borrows the median
  genuine mean of the user's other concepts, and with none, 1.0 (a stricter
  threshold: it misses more, never accepts more);
- near-duplicate photos make the genuine mean high, hence a stricter threshold;
- a user with one concept has only background impostors (an easier cohort,
  so a laxer threshold than with other concepts: documented, still separable);
- a concept whose genuine mean does not stand ``min_separation`` impostor
  standard deviations above the impostor mean (random weights: every score
  near 1) is never present by its photos: ``separable`` is False.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from retrieval.background import background_photos
from retrieval.index import VersionedCache

MAX_COHORT = 256
MAX_PHOTOS = 32
MIN_SEPARATION = 2.0
# Where the threshold sits between the impostor mean (0) and the genuine mean (1).
GENUINE_WEIGHT = 0.55
# The same for scores of regions pooled from one forward pass (see the module doc).
POOLED_GENUINE_WEIGHT = 0.25
# A concept with one photo and no other concept to borrow from.
SINGLE_PHOTO_GENUINE = 1.0


@dataclass(frozen=True)
class ConceptThreshold:
    """How one concept is decided: ``present`` iff score >= ``threshold`` (or
    ``pooled_threshold`` for pooled regions) and separable."""

    threshold: float
    pooled_threshold: float
    genuine: float  # mean leave-one-out score of its photos (or borrowed, see ``basis``)
    impostor: float  # mean score of photos that are not it
    impostor_sd: float
    impostors: int  # photos in its impostor sample
    separable: bool
    basis: str  # "leave-one-out", "borrowed" or "single photo"


@dataclass(frozen=True)
class DecisionRule:
    """Per-concept thresholds of one user's photos."""

    thresholds: dict[str, ConceptThreshold]

    def present(self, label: str, score: float, *, pooled: bool = False) -> bool:
        """Whether a concept scoring ``score`` is present; an unknown label never is.
        ``pooled``: the score is of regions pooled from one forward pass."""
        needed = self.threshold(label, pooled=pooled)
        return needed is not None and score >= needed

    def threshold(self, label: str, *, pooled: bool = False) -> float | None:
        """The score ``label`` needs (None: unknown, or never present by its photos)."""
        found = self.thresholds.get(label)
        if found is None or not found.separable:
            return None
        return found.pooled_threshold if pooled else found.threshold

    @property
    def nbytes(self) -> int:
        return 200 * len(self.thresholds)


def fit_decision(
    vectors: np.ndarray,
    labels: Sequence[str],
    background: np.ndarray,
    *,
    max_cohort: int = MAX_COHORT,
    max_photos: int = MAX_PHOTOS,
    min_separation: float = MIN_SEPARATION,
) -> DecisionRule:
    """Thresholds for every label of ``vectors`` (unit rows, one label each).

    ``background``: unit vectors of photos showing none of the concepts (same
    model). Work is bounded: the impostors are at most ``max_cohort`` of the
    user's photos (an evenly spaced, deterministic sample, less those of the
    concept itself) plus the background, and each concept is represented by
    at most ``max_photos`` of its photos: about (concepts x max_photos x
    (max_cohort + background + max_photos)) dot products.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    background = np.asarray(background, dtype=np.float32).reshape(-1, vectors.shape[-1])
    names = list(dict.fromkeys(labels))
    code_of = {name: code for code, name in enumerate(names)}
    codes = np.fromiter((code_of[label] for label in labels), dtype=np.int64, count=len(labels))
    grouped = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[grouped], np.arange(len(names) + 1))
    rows = [_evenly(grouped[bounds[c] : bounds[c + 1]], max_photos) for c in range(len(names))]
    sample = _evenly(np.arange(len(vectors)), max_cohort)
    cohort = np.concatenate([vectors[sample], background])
    cohort_codes = np.concatenate([codes[sample], np.full(len(background), -1)])
    genuine: dict[str, float] = {}
    for name, index in zip(names, rows, strict=True):
        if len(index) >= 2:
            own = vectors[index] @ vectors[index].T
            np.fill_diagonal(own, -np.inf)
            genuine[name] = float(own.max(axis=1).mean())
    borrowed = float(np.median(list(genuine.values()))) if genuine else SINGLE_PHOTO_GENUINE
    thresholds = {}
    for code, (name, index) in enumerate(zip(names, rows, strict=True)):
        scores = (cohort @ vectors[index].T)[cohort_codes != code]
        impostor = scores.max(axis=1) if len(scores) else np.zeros(1)
        if name in genuine:
            mean_genuine, basis = genuine[name], "leave-one-out"
        else:
            mean_genuine = borrowed
            basis = "borrowed" if genuine else "single photo"
        mean_impostor, sd = float(impostor.mean()), float(impostor.std())
        gap = mean_genuine - mean_impostor
        thresholds[name] = ConceptThreshold(
            threshold=mean_impostor + GENUINE_WEIGHT * gap,
            pooled_threshold=mean_impostor + POOLED_GENUINE_WEIGHT * gap,
            genuine=mean_genuine,
            impostor=mean_impostor,
            impostor_sd=sd,
            impostors=len(scores),
            separable=mean_genuine - mean_impostor >= min_separation * max(sd, 1e-6),
            basis=basis,
        )
    return DecisionRule(thresholds)


def _evenly(index: np.ndarray, at_most: int) -> np.ndarray:
    """``index`` itself, or ``at_most`` of its entries evenly spaced from first to last."""
    if len(index) <= at_most:
        return index
    return index[np.linspace(0, len(index) - 1, at_most).round().astype(np.int64)]


class BackgroundVectors:
    """The background photos' vectors for one encoder, encoded once, on first use, at
    most ``chunk`` photos per call to ``encode`` (a batching encoder's queue refuses a
    call larger than the room it gives one caller)."""

    def __init__(
        self, encode: Callable[[Sequence[Image.Image]], np.ndarray], *, chunk: int = 256
    ) -> None:
        self._encode = encode
        self._chunk = max(1, chunk)
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._vectors is None:
                photos = background_photos()
                parts = [
                    self._encode(photos[start : start + self._chunk])
                    for start in range(0, len(photos), self._chunk)
                ]
                self._vectors = np.concatenate(parts)
            return self._vectors


class DecisionCache(VersionedCache[DecisionRule]):
    """Decision rules per user at a version (rebuilt when the user's photos change)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, size=lambda rule: rule.nbytes)

    def rule_for(
        self,
        key: Hashable,
        version: int,
        vectors: Callable[[], tuple[np.ndarray, list[str]]],
        background: BackgroundVectors,
    ) -> DecisionRule:
        """The user's rule at ``version``; ``vectors`` gives (vectors, labels) on a miss."""

        def load() -> DecisionRule:
            matrix, labels = vectors()
            if not labels:
                return DecisionRule({})
            return fit_decision(matrix, labels, background.get())

        return self.get(key, version, load)
