"""Per-user exact inner-product indexes and their memory-bounded cache.

An index is a cache of vectors whose truth lives elsewhere (SQL): every entry
carries the version of the data it was built from, and a reader that knows a
newer version drops it and builds it again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import faiss
import numpy as np

from retrieval.label_view import LabelScores, LabelView

T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    vector_id: int
    label: str
    score: float


class UserIndex:
    """Exact inner-product search over one user's vectors, keyed by vector id.

    ``label`` names what a vector belongs to (a concept id); vectors are
    expected to be L2-normalised so that scores are cosine similarities. Searches
    and writes may come from several threads. Per-label questions (``label_scores``,
    ``best_scores``, ``vectors_by_label``) are answered from a ``LabelView`` built on
    the first one after a write: one matrix product, not a Python object per vector.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._flat = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIDMap2(self._flat)
        self._labels: dict[int, str] = {}
        self._lock = threading.Lock()
        self._view: LabelView | None = None  # of the vectors now held; None after a write

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def nbytes(self) -> int:
        # Vectors plus the id map, labels and label view, as faiss, Python and numpy hold
        # them (the view counted whether built yet or not: a cached size never changes).
        return len(self._labels) * (self.dim * 4 + 8 + 120 + 48)

    def add(self, ids: Iterable[int], labels: Iterable[str], vectors: np.ndarray) -> None:
        id_array = np.fromiter(ids, dtype=np.int64)
        labels = list(labels)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not (len(id_array) == len(labels) == len(vectors)):
            raise ValueError("ids, labels and vectors must have the same length")
        with self._lock:
            fresh = [
                i for i, vector_id in enumerate(id_array) if int(vector_id) not in self._labels
            ]
            if not fresh:
                return
            self._index.add_with_ids(vectors[fresh], id_array[fresh])
            for i in fresh:
                self._labels[int(id_array[i])] = labels[i]
            self._view = None

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            present = [vector_id for vector_id in dict.fromkeys(ids) if vector_id in self._labels]
            if not present:
                return
            self._index.remove_ids(np.asarray(present, dtype=np.int64))  # type: ignore[arg-type]
            for vector_id in present:
                del self._labels[vector_id]
            self._view = None

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """For each query vector, its ``k`` best hits, best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            k = min(k, len(self._labels))
            if k == 0:
                return [[] for _ in range(len(queries))]
            scores, ids = self._index.search(queries, k)
            labels = {i: self._labels[i] for i in np.unique(ids).tolist() if i >= 0}
        return [
            [
                Hit(vector_id=int(vector_id), label=labels[int(vector_id)], score=float(score))
                for score, vector_id in zip(row_scores, row_ids, strict=True)
                if vector_id >= 0
            ]
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def label_scores(
        self,
        queries: np.ndarray,
        labels: Iterable[str] | None = None,
        *,
        among: int | None = None,
        centroids: bool = False,
    ) -> LabelScores:
        """The best score of each of ``labels`` (None: of every label) for each query,
        exact over all its vectors (``LabelScores``); labels the index does not hold are
        left out. ``among``: only the labels of each query's ``among`` best vectors (the
        labels ``search(queries, among)`` finds, and any whose vector ties with the last).
        ``centroids``: each label's normalised mean vector too."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            view = self._label_view()
            return view.scores(self._matrix(), queries, labels, among=among, centroids=centroids)

    def vectors_by_label(self, labels: Iterable[str]) -> dict[str, np.ndarray]:
        """The vectors of each of ``labels`` that has any, one row per vector."""
        with self._lock:
            return self._label_view().vectors(self._matrix(), labels)

    def vectors(self) -> tuple[np.ndarray, list[str]]:
        """Every vector (rows, in id order) and its label."""
        with self._lock:
            ids = faiss.vector_to_array(self._index.id_map)
            by_id = np.argsort(ids)
            matrix = self._matrix()[by_id]
            labels = [self._labels[vector_id] for vector_id in ids[by_id].tolist()]
        return matrix, labels

    def best_scores(self, queries: np.ndarray, labels: Iterable[str]) -> dict[str, float]:
        """For each label, its best score over its vectors and all queries (exact)."""
        table = self.label_scores(queries, labels)
        if not len(table.scores):
            return {}
        # Scores are cosines: none is reported below -1.
        return {
            label: max(-1.0, float(score))
            for label, score in zip(table.labels, table.scores.max(axis=0), strict=True)
        }

    def _matrix(self) -> np.ndarray:
        """The vectors in storage order: FAISS's own memory, not a copy, so it is read
        only under the lock and never handed out (a write may move it)."""
        count = self._index.ntotal
        if count == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        flat = faiss.rev_swig_ptr(self._flat.get_xb(), count * self.dim)
        return flat.reshape(count, self.dim)

    def _label_view(self) -> LabelView:
        """The view of the vectors held now (under the lock), built on first use."""
        if self._view is None:
            ids = faiss.vector_to_array(self._index.id_map).tolist()
            self._view = LabelView([self._labels[i] for i in ids])
        return self._view


@dataclass
class _Entry(Generic[T]):
    version: int
    value: T


@dataclass(frozen=True)
class CacheStats:
    entries: int
    nbytes: int
    hits: int
    misses: int


class VersionedCache(Generic[T]):
    """LRU cache of per-user values, each valid at one version, bounded by memory.

    ``get`` returns the value for ``key`` at ``version``, building it with
    ``load`` on a miss or when the cached one is of another version. ``apply``
    updates a cached value in place after a write made by this process.
    ``size`` tells a value's bytes.
    """

    def __init__(self, max_bytes: int, size: Callable[[T], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0

    def get(self, key: Hashable, version: int, load: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.version == version:
                self._entries.move_to_end(key)
                self._hits += 1
                return entry.value
            self._misses += 1
        # Built outside the lock: a slow load of one user must not stall the others.
        value = load()
        with self._lock:
            current = self._entries.get(key)
            if current is None or current.version <= version:
                if current is not None:
                    self._nbytes -= self._size(current.value)
                self._entries[key] = _Entry(version=version, value=value)
                self._entries.move_to_end(key)
                self._nbytes += self._size(value)
                self._evict()
        return value

    def apply(
        self,
        key: Hashable,
        *,
        from_version: int,
        to_version: int,
        update: Callable[[T], None],
    ) -> None:
        """Run ``update`` on the cached value if it is exactly at ``from_version``.

        Otherwise the entry is dropped: the next ``get`` rebuilds it from the truth.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if entry.version != from_version:
                self._drop(key)
                return
            before = self._size(entry.value)
            update(entry.value)
            entry.version = to_version
            self._nbytes += self._size(entry.value) - before
            self._evict()

    def discard(self, key: Hashable) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                nbytes=self._nbytes,
                hits=self._hits,
                misses=self._misses,
            )

    def _drop(self, key: Hashable) -> None:
        self._nbytes -= self._size(self._entries.pop(key).value)

    def _evict(self) -> None:
        # Oldest first; a value larger than the whole budget is served but not kept.
        while self._nbytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))


class UserIndexCache(VersionedCache[UserIndex]):
    """User indexes by (user, model), bounded by their total memory."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, size=lambda index: index.nbytes)
