"""The label view's answers against brute force, before and after writes
(retrieval/label_view.py, used by retrieval/index.py and matching.py).

As Qdrant's congruence tests compare clients: scores agree within float rounding (BLAS
may round one product differently at another place in a matrix), and where scores tie
within that rounding either answer is right, so sets are compared with the ties allowed
on either side of a cut."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from retrieval.index import UserIndex
from retrieval.matching import WINNER_CANDIDATES, region_winners, search_concepts

TOLERANCE = 1e-5


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Stored:
    """What the test put in the index, in the order the index holds it."""

    dim: int
    rows: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)

    def add(self, index: UserIndex, ids: list[int], labels: list[str], vectors: np.ndarray) -> None:
        index.add(ids, labels, vectors)
        for vector_id, label, vector in zip(ids, labels, vectors, strict=True):
            self.rows.setdefault(vector_id, (label, vector))

    def remove(self, index: UserIndex, ids: list[int]) -> None:
        index.remove(ids)
        for vector_id in ids:
            self.rows.pop(vector_id, None)

    def by_label(self) -> dict[str, np.ndarray]:
        """Each label's vectors in the order they were added (first label first)."""
        grouped: dict[str, list[np.ndarray]] = {}
        for label, vector in self.rows.values():
            grouped.setdefault(label, []).append(vector)
        return {label: np.stack(vectors) for label, vectors in grouped.items()}


def _random_user(seed: int, dim: int) -> tuple[UserIndex, Stored, np.random.Generator]:
    """Labels of 1 to 9 photos (several of one photo), added interleaved, under ids in
    no particular order, with some photos stored under two labels (exact ties)."""
    rng = np.random.default_rng(seed)
    sizes = [1, 1, 2, *rng.integers(1, 10, size=9).tolist()]
    labels = [f"c{n}" for n, size in enumerate(sizes) for _ in range(size)]
    order = rng.permutation(len(labels))
    labels = [labels[i] for i in order]
    vectors = _unit(rng.standard_normal((len(labels), dim)))
    for copy, original in rng.integers(0, len(labels), size=(3, 2)):
        vectors[copy] = vectors[original]
    ids = (rng.permutation(len(labels) * 10)[: len(labels)] + 1).tolist()
    index, stored = UserIndex(dim), Stored(dim)
    stored.add(index, ids, labels, vectors)
    return index, stored, rng


def _write(index: UserIndex, stored: Stored, rng: np.random.Generator, step: int) -> None:
    """Step 0: remove a few photos (one label entirely); step 1: add a new label and
    more photos of an old one, one of them a copy of a photo of another label."""
    ids = list(stored.rows)
    if step == 0:
        gone = [i for i in ids if stored.rows[i][0] == "c3"]
        stored.remove(index, gone + rng.choice(ids, 3, replace=False).tolist())
        return
    fresh = _unit(rng.standard_normal((4, stored.dim)))
    fresh[0] = next(iter(stored.rows.values()))[1]
    start = max(ids) + 1
    stored.add(index, list(range(start, start + 4)), ["new", "new", "c5", "c0"], fresh)


def _queries(stored: Stored, rng: np.random.Generator, count: int) -> np.ndarray:
    queries = _unit(rng.standard_normal((count, stored.dim)))
    photos = [vector for _, vector in stored.rows.values()]
    queries[0] = photos[int(rng.integers(len(photos)))]  # scores 1.0, tied by its copies
    if count > 2:
        queries[2] = queries[1]  # a region given twice: the first one keeps the label
    return queries


def _truth(stored: Stored, queries: np.ndarray) -> dict[str, np.ndarray]:
    """Each label's best score for each query, photo by photo."""
    return {label: (queries @ rows.T).max(axis=1) for label, rows in stored.by_label().items()}


def _allowed(scores: dict[str, float], count: int, floor: float) -> tuple[set[str], set[str]]:
    """The labels that must be among the ``count`` best scoring at least ``floor``, and
    those that may be (ties within the tolerance at either cut go either way)."""
    ranked = sorted((s for s in scores.values() if s >= floor - TOLERANCE), reverse=True)
    cut = ranked[count - 1] if len(ranked) > count else -np.inf
    must = {label for label, s in scores.items() if s > cut + TOLERANCE and s >= floor + TOLERANCE}
    may = {label for label, s in scores.items() if s >= cut - TOLERANCE and s >= floor - TOLERANCE}
    return must, may


CASES = [(seed, dim, count) for seed in range(6) for dim, count in ((8, 1), (64, 3), (512, 25))]


@pytest.mark.parametrize(("seed", "dim", "count"), CASES)
def test_best_search_agrees_with_brute_force_before_and_after_writes(
    seed: int, dim: int, count: int
) -> None:
    index, stored, rng = _random_user(seed, dim)
    for step in range(3):
        queries = _queries(stored, rng, count)
        truth = _truth(stored, queries)
        best = {label: float(scores.max()) for label, scores in truth.items()}
        for top_k, min_score in ((len(index), -np.inf), (3, -1.0), (40, 0.05)):
            got = search_concepts(index, queries, top_k=top_k, min_score=min_score)
            must, may = _allowed(best, top_k, min_score)
            found = {m.label for m in got}
            assert must <= found <= may and len(found) == len(got) <= top_k
            if len(got) < top_k:  # fewer than asked: every label over the floor is there
                assert {label for label, s in best.items() if s >= min_score + TOLERANCE} <= found
            for match in got:
                assert match.score == pytest.approx(best[match.label], abs=TOLERANCE)
                # The region reported is one where the label scores its best.
                assert truth[match.label][match.region] == pytest.approx(match.score, abs=TOLERANCE)
            scores = [m.score for m in got]
            assert all(a >= b - TOLERANCE for a, b in itertools.pairwise(scores))
        everything = search_concepts(index, queries, top_k=len(index), min_score=-np.inf)
        assert {m.label: m.score for m in everything} == pytest.approx(best, abs=TOLERANCE)
        _write(index, stored, rng, step)


@pytest.mark.parametrize(("seed", "dim", "count"), CASES)
def test_region_winners_agree_with_brute_force_before_and_after_writes(
    seed: int, dim: int, count: int
) -> None:
    index, stored, rng = _random_user(seed, dim)
    for step in range(3):
        queries = _queries(stored, rng, max(count, 2))
        photos = stored.by_label()
        centroid = {}
        for label, rows in photos.items():
            mean = rows.sum(axis=0, dtype=np.float64)
            centroid[label] = (mean / np.linalg.norm(mean)).astype(np.float32)
        won = region_winners(index, queries)
        assert [m.region for m in won] == list(range(len(queries)))
        for match, query in zip(won, queries, strict=True):
            # The contenders: the labels of the region's WINNER_CANDIDATES best photos.
            photo_scores = {label: float((rows @ query).max()) for label, rows in photos.items()}
            every = sorted(
                ((float(s), label) for label, rows in photos.items() for s in rows @ query),
                reverse=True,
            )
            cut = every[min(WINNER_CANDIDATES, len(every)) - 1][0]
            must = {label for s, label in every if s > cut + TOLERANCE}
            may = {label for s, label in every if s >= cut - TOLERANCE}
            combined = {
                label: photo_scores[label] + float(query @ centroid[label]) for label in may
            }
            assert match.label in may
            assert match.score == pytest.approx(photo_scores[match.label], abs=TOLERANCE)
            assert combined[match.label] >= max(combined[label] for label in must) - TOLERANCE
        _write(index, stored, rng, step)


def test_at_equal_scores_the_label_stored_first_comes_first() -> None:
    # One-hot vectors: every product is exact, so the ties are exact too.
    eye = np.eye(8, dtype=np.float32)
    index = UserIndex(8)
    index.add([5, 4, 3, 2, 1], ["b", "d", "a", "c", "b"], eye[[0, 1, 0, 0, 2]])
    got = search_concepts(index, eye[:1], top_k=4, min_score=-1.0)
    assert [m.label for m in got] == ["b", "a", "c", "d"]  # b, a and c tie at 1.0
    assert [m.score for m in got] == [1.0, 1.0, 1.0, 0.0]


def test_label_scores_and_centroids_are_brute_force_for_any_labels() -> None:
    index, stored, rng = _random_user(11, 32)
    queries = _unit(rng.standard_normal((4, 32)))
    photos = stored.by_label()
    table = index.label_scores(queries)
    assert table.labels == list(photos)  # in the order of their first photo
    expected = np.stack([(queries @ rows.T).max(axis=1) for rows in photos.values()], axis=1)
    np.testing.assert_allclose(table.scores, expected, atol=1e-6)
    assert table.centroids is None
    some = index.label_scores(queries, ["c5", "nobody", "c1"], centroids=True)
    assert some.labels == [label for label in photos if label in {"c1", "c5"}]
    assert some.centroids is not None
    for j, label in enumerate(some.labels):
        mean = photos[label].mean(axis=0)
        np.testing.assert_allclose(some.centroids[j], mean / np.linalg.norm(mean), atol=1e-6)
        np.testing.assert_allclose(
            some.scores[:, j], (queries @ photos[label].T).max(axis=1), atol=1e-6
        )
    empty = UserIndex(32).label_scores(queries)
    assert empty.labels == [] and empty.scores.shape == (4, 0)


def test_vectors_and_best_scores_follow_every_write() -> None:
    index, stored, rng = _random_user(5, 16)
    queries = _unit(rng.standard_normal((2, 16)))
    for step in range(3):
        matrix, labels = index.vectors()
        ids = sorted(stored.rows)
        assert labels == [stored.rows[i][0] for i in ids]
        np.testing.assert_array_equal(matrix, np.stack([stored.rows[i][1] for i in ids]))
        by_label = index.vectors_by_label(["c0", "c2", "nobody"])
        assert list(by_label) == [label for label in stored.by_label() if label in by_label]
        for label, rows in by_label.items():
            np.testing.assert_array_equal(rows, stored.by_label()[label])
        best = index.best_scores(queries, ["c0", "c4", "nobody"])
        truth = {
            label: float((queries @ rows.T).max())
            for label, rows in stored.by_label().items()
            if label in {"c0", "c4"}
        }
        assert best == pytest.approx(truth, abs=1e-6)
        _write(index, stored, rng, step)


def test_a_write_after_a_search_is_seen_by_the_next_search() -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng.standard_normal((6, 16)))
    index = UserIndex(16)
    index.add(range(6), ["a", "a", "b", "b", "c", "c"], vectors)
    query = _unit(rng.standard_normal((1, 16)))

    def answer() -> dict[str, float]:
        return {m.label: m.score for m in search_concepts(index, query, top_k=9, min_score=-1.0)}

    before = answer()  # builds the view
    index.add([6], ["d"], query)
    assert next(iter(answer())) == "d" and answer()["d"] == pytest.approx(1.0)
    index.remove([6])
    assert answer() == before
    best_of_a = int(np.argmax(vectors[:2] @ query[0]))
    index.remove([best_of_a])
    assert answer()["a"] == pytest.approx(float(vectors[1 - best_of_a] @ query[0]))
    index.add([7], ["e"], query)
    assert [m.label for m in region_winners(index, query)] == ["e"]


def test_searches_during_writes_see_one_state_or_the_other() -> None:
    index, _, rng = _random_user(3, 64)
    queries = _unit(rng.standard_normal((3, 64)))
    extra = _unit(rng.standard_normal((5, 64)))
    extra[0] = queries[0]

    def answer() -> list[tuple[str, int]]:
        found = search_concepts(index, queries, top_k=len(index), min_score=-np.inf)
        return [(m.label, m.region) for m in found]

    without = answer()
    index.add(range(9000, 9005), ["x"] * 5, extra)
    with_extra = answer()
    index.remove(range(9000, 9005))
    assert with_extra != without
    seen: list[list[tuple[str, int]]] = []
    start = threading.Barrier(3)

    def read() -> None:
        start.wait()
        for _ in range(200):
            seen.append(answer())

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    start.wait()
    for _ in range(100):
        index.add(range(9000, 9005), ["x"] * 5, extra)
        index.remove(range(9000, 9005))
    for reader in readers:
        reader.join()
    assert len(seen) == 400
    assert all(found in (without, with_extra) for found in seen)
