"""Is a concept present? Open-set identification fitted on the user's own photos, no labels.

A user meets recognition as open-set identification: they hold N concepts and
send a photo; either one of their things is in it (it must come out on top and
be present) or none is (nothing may be present). The rule is fitted to exactly
that question, rehearsed on the user's own photos before any query is seen:

- a *genuine* trial per photo of a concept with two or more photos: the photo
  against its concept's other photos (leave one out), and whether that concept
  then outranks every other concept of the user;
- an *impostor* trial per photo: the same photo against the user's *other*
  concepts, as if its concept were not registered. Its best score is what the
  photo of a thing the user never registered gets, with the user's own kinds of
  things as the competition (a third dog against two registered dogs, a carton
  against a shelf of look-alike cartons). It is the best over N-1 concepts, so
  it grows with the number of concepts as the real false alarm does, and the
  threshold grows with it: false alarms are held per photo, not per pair.
- the user's corrections (photos they said are *not* a concept) are impostor
  trials too; and with fewer than ``MIN_IMPOSTOR_TRIALS`` of those (one concept
  and no corrections), the generic background photos (retrieval/background.py)
  stand in for "none of these".

A normal distribution is fitted to each side (one pooled spread), and the
threshold is where a genuine trial found on top and an impostor trial are
equally likely, weighting the genuine side by the share found on top: the
threshold of the best balanced accuracy of the rehearsal under those fits. Every concept of the
user is held to that one threshold: the threshold is a score of the user's own
model on the user's own photos, so the rule needs no per-model or per-dataset
constant and no labelled query.

Corrections act at query time too: a concept is not present in a photo that is
at least as close to one of the photos the user said are not it (or to another
correction that the concept does not itself claim) as to the concept's photos.

Regions pooled from one forward pass (``pooled=True``) score lower than crops:
their threshold sits ``POOLED_SHARE`` of the way from the impostor mean to the
whole-photo threshold (chosen for the former rule on a development half of the
evaluation subjects, bench/RESULTS.md).

Degradations (never "everything matches"):

- no concept with two photos: no genuine sample; the threshold is the impostor
  mean plus ``NO_GENUINE_SDS`` standard deviations (strict);
- one concept and few corrections: impostors are the corrections and the
  background photos, an easier cohort; the threshold is then at most
  ``OWN_SPREADS`` (2) spreads below the concept's own genuine mean (a photo must score
  like the concept's photos score against each other). Among look-alikes
  (cartons on a shelf) such a user still sees false alarms until they add a
  second concept or a correction;
- a rehearsal whose genuine mean does not stand ``MIN_SEPARATION`` pooled
  standard deviations above the impostor mean is never present by its photos:
  ``separable`` is False;
- an encoder on random weights (``random_weights=True``, tests and smoke runs)
  makes scores that mean nothing, yet can look as separable as a hard real
  dataset's: nothing is ever present by its photos (basis "random weights").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from retrieval.background import background_photos
from retrieval.index import VersionedCache

# Photos rehearsed as trials (evenly spaced over the user's photos), and photos
# per concept that the trials are scored against: bounds the fit's work.
MAX_TRIALS = 256
MAX_PHOTOS = 32
MIN_IMPOSTOR_TRIALS = 8
MIN_SEPARATION = 0.5
NO_GENUINE_SDS = 3.0
# With only background impostors: spreads below the concept's own genuine mean.
OWN_SPREADS = 2.0
POOLED_SHARE = 0.45


@dataclass(frozen=True)
class ConceptThreshold:
    """How one concept is decided: ``present`` iff score >= ``threshold`` (or
    ``pooled_threshold`` for pooled regions), separable, and no correction is closer."""

    threshold: float
    pooled_threshold: float
    genuine: float  # mean genuine trial score of the user's rehearsal
    impostor: float  # mean impostor trial score
    impostor_sd: float
    impostors: int  # impostor trials
    separable: bool
    basis: str  # "rehearsal", "background" (one concept) or "no genuine sample"
    negatives: int = 0  # corrections that count against this concept


@dataclass(frozen=True)
class DecisionRule:
    """One user's thresholds, and the corrections each concept is checked against."""

    thresholds: dict[str, ConceptThreshold]
    # Per concept, the unit vectors of the corrections that count against it.
    against: dict[str, np.ndarray] = field(default_factory=dict)

    def present(
        self,
        label: str,
        score: float,
        *,
        pooled: bool = False,
        vectors: np.ndarray | None = None,
    ) -> bool:
        """Whether a concept scoring ``score`` is present; an unknown label never is.
        ``pooled``: the score is of regions pooled from one forward pass. ``vectors``:
        the query's region vectors, checked against the concept's corrections."""
        needed = self.threshold(label, pooled=pooled)
        if needed is None or score < needed:
            return False
        return vectors is None or not self.corrected(label, score, vectors)

    def threshold(self, label: str, *, pooled: bool = False) -> float | None:
        """The score ``label`` needs (None: unknown, or never present by its photos)."""
        found = self.thresholds.get(label)
        if found is None or not found.separable:
            return None
        return found.pooled_threshold if pooled else found.threshold

    def corrected(self, label: str, score: float, vectors: np.ndarray) -> bool:
        """Whether a correction of the user is at least as close to the query as the
        concept's best photo (``score``): then the photo is not that concept."""
        against = self.against.get(label)
        if against is None or not len(against):
            return False
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, against.shape[1])
        return bool((queries @ against.T).max() >= score)

    @property
    def nbytes(self) -> int:
        return 200 * len(self.thresholds) + sum(a.nbytes for a in self.against.values())


def fit_decision(
    vectors: np.ndarray,
    labels: Sequence[str],
    background: np.ndarray,
    *,
    negatives: np.ndarray | None = None,
    negative_labels: Sequence[str] = (),
    max_trials: int = MAX_TRIALS,
    max_photos: int = MAX_PHOTOS,
    min_separation: float = MIN_SEPARATION,
    random_weights: bool = False,
) -> DecisionRule:
    """The user's rule from ``vectors`` (unit rows, one concept label each).

    ``background``: unit vectors of photos showing none of the concepts (same
    model), used only when the user's own impostor trials are too few.
    ``negatives``/``negative_labels``: the user's corrections, photos they said are
    not the labelled concept. Work is bounded: at most ``max_trials`` trial photos,
    each scored against at most ``max_photos`` photos of every concept.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    dim = vectors.shape[-1]
    background = np.asarray(background, dtype=np.float32).reshape(-1, dim)
    negatives = np.zeros((0, dim), np.float32) if negatives is None else negatives
    negatives = np.asarray(negatives, dtype=np.float32).reshape(-1, dim)
    names = list(dict.fromkeys(labels))
    if not names:
        return DecisionRule({})
    gallery = _Gallery(vectors, labels, names, max_photos)
    genuine, ranked, impostor = gallery.rehearse(_evenly(np.arange(len(vectors)), max_trials))
    if len(negatives):
        impostor = np.concatenate([impostor, gallery.best(negatives).max(axis=1)])
    basis = "rehearsal"
    if len(impostor) < MIN_IMPOSTOR_TRIALS and len(background):
        impostor = np.concatenate([impostor, gallery.best(background).max(axis=1)])
        basis = "background"
    threshold, separable = _threshold(
        genuine, ranked, impostor, min_separation, own_photos_only=basis == "background"
    )
    if not len(genuine):
        basis = "no genuine sample"
    if random_weights:
        separable, basis = False, "random weights"
    mean_impostor = float(impostor.mean()) if len(impostor) else 0.0
    sd_impostor = float(impostor.std()) if len(impostor) else 0.0
    pooled = mean_impostor + POOLED_SHARE * (threshold - mean_impostor)
    against = _corrections_against(gallery, negatives, negative_labels, threshold)
    thresholds = {
        name: ConceptThreshold(
            threshold=threshold,
            pooled_threshold=pooled,
            genuine=float(genuine.mean()) if len(genuine) else math.nan,
            impostor=mean_impostor,
            impostor_sd=sd_impostor,
            impostors=len(impostor),
            separable=separable,
            basis=basis,
            negatives=len(against.get(name, ())),
        )
        for name in names
    }
    return DecisionRule(thresholds, against)


class _Gallery:
    """The user's photos grouped by concept (at most ``max_photos`` each), scored as
    the service scores a query: a concept's score is its best photo's."""

    def __init__(
        self, vectors: np.ndarray, labels: Sequence[str], names: list[str], max_photos: int
    ) -> None:
        code_of = {name: code for code, name in enumerate(names)}
        codes = np.fromiter((code_of[label] for label in labels), np.int64, count=len(labels))
        rows = []
        for code in range(len(names)):
            rows.append(_evenly(np.flatnonzero(codes == code), max_photos))
        self.names = names
        self.vectors = vectors
        self.codes = codes
        self.rows = np.concatenate(rows)
        self.row_codes = codes[self.rows]
        self.starts = np.searchsorted(self.row_codes, np.arange(len(names)))
        self.matrix = vectors[self.rows]

    def best(self, queries: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """(queries, concepts): each concept's best score; ``exclude[i]`` is a gallery
        position query i must not be compared with (itself), or -1."""
        scores = queries @ self.matrix.T
        if exclude is not None:
            hit = exclude >= 0
            scores[np.flatnonzero(hit), exclude[hit]] = -np.inf
        return np.maximum.reduceat(scores, self.starts, axis=1)

    def rehearse(self, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Genuine scores (photos with a sibling), whether each was ranked first, and
        impostor scores (the best other concept; none with one concept)."""
        position = np.full(len(self.codes), -1)
        position[self.rows] = np.arange(len(self.rows))
        per = self.best(self.vectors[trials], exclude=position[trials])
        own_codes = self.codes[trials]
        own = per[np.arange(len(trials)), own_codes]
        per[np.arange(len(trials)), own_codes] = -np.inf
        other = per.max(axis=1) if per.shape[1] > 1 else np.full(len(trials), -np.inf)
        has_sibling = np.isfinite(own)
        genuine = own[has_sibling]
        ranked = genuine > other[has_sibling]
        return genuine, ranked, other[np.isfinite(other)]


def _threshold(
    genuine: np.ndarray,
    ranked: np.ndarray,
    impostor: np.ndarray,
    min_separation: float,
    *,
    own_photos_only: bool = False,
) -> tuple[float, bool]:
    """Where a genuine trial found on top and an impostor trial are equally likely, for
    normal fits of the two sides with one pooled spread (the fewest estimates, so the
    steadiest threshold from a few dozen trials); and whether the sides are apart."""
    if not len(impostor):
        impostor = np.zeros(1, np.float32)
    mi, si = float(impostor.mean()), max(float(impostor.std()), 1e-3)
    if not len(genuine):
        return mi + NO_GENUINE_SDS * si, True
    found = float(ranked.mean())
    if not found:
        return mi + NO_GENUINE_SDS * si, False
    # The genuine side is the trials that come out on top: only those can be right.
    on_top = genuine[ranked]
    mg, sg = float(on_top.mean()), float(on_top.std())
    spread = max(math.sqrt((sg**2 + si**2) / 2), 1e-3)
    gap = mg - mi
    if gap <= 0:
        return mi + NO_GENUINE_SDS * si, False
    # Bayes' boundary: found * N(T; mg, s) = N(T; mi, s); a low ``found`` (look-alikes
    # that outrank each other) moves it up, away from the impostors.
    threshold = (mg + mi) / 2 - spread**2 * math.log(found) / gap
    if own_photos_only:
        # No real impostor of the user's kind (one concept, no corrections): the
        # background only bounds from below, and a photo must score like the concept's
        # own photos score against each other.
        threshold = max(threshold, mg - OWN_SPREADS * sg)
    return threshold, gap >= min_separation * spread


def _corrections_against(
    gallery: _Gallery, negatives: np.ndarray, labels: Sequence[str], threshold: float
) -> dict[str, np.ndarray]:
    """Per concept, the corrections that count against it: its own, and those of other
    concepts that it does not claim itself (they score below the threshold)."""
    if not len(negatives):
        return {}
    scores = gallery.best(negatives)
    owner = np.asarray(list(labels))
    against = {}
    for code, name in enumerate(gallery.names):
        counts = (owner == name) | (scores[:, code] < threshold)
        if counts.any():
            against[name] = negatives[counts]
    return against


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


# The user's photos as (vectors, labels), and their corrections as (vectors, labels).
Corrections = tuple[np.ndarray, list[str]]


class DecisionCache(VersionedCache[DecisionRule]):
    """Decision rules per user at a version (rebuilt when the user's photos change)."""

    def __init__(self, max_bytes: int, *, random_weights: bool = False) -> None:
        """``random_weights``: the encoder's weights are random (nothing is ever present
        by its photos, see the module doc)."""
        super().__init__(max_bytes, size=lambda rule: rule.nbytes)
        self._random_weights = random_weights

    @property
    def random_weights(self) -> bool:
        """Whether the encoder's scores mean nothing (random weights)."""
        return self._random_weights

    def rule_for(
        self,
        key: Hashable,
        version: int,
        vectors: Callable[[], tuple[np.ndarray, list[str]]],
        background: BackgroundVectors,
        corrections: Callable[[], Corrections] | None = None,
    ) -> DecisionRule:
        """The user's rule at ``version``; ``vectors`` (and ``corrections``) give the
        user's photos (and corrections) as (vectors, labels) on a miss."""

        def load() -> DecisionRule:
            matrix, labels = vectors()
            if not labels:
                return DecisionRule({})
            negatives, negative_labels = corrections() if corrections else (None, [])
            return fit_decision(
                matrix,
                labels,
                background.get(),
                negatives=negatives,
                negative_labels=negative_labels,
                random_weights=self._random_weights,
            )

        return self.get(key, version, load)
