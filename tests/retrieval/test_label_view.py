"""The label view's answers against the hit-by-hit search and brute force, before and
after writes (retrieval/label_view.py, used by retrieval/index.py and matching.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from retrieval.index import UserIndex
from retrieval.matching import (
    WINNER_CANDIDATES,
    VisualMatch,
    best_per_label,
    region_winners,
    search_concepts,
)


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


def _hit_by_hit(index: UserIndex, queries: np.ndarray, top_k: int, min_score: float) -> list:
    """What ``search_concepts`` answered with one hit per vector (its former way)."""
    rows = index.search(queries, len(index))
    kept = (m for m in best_per_label(rows).values() if m.score >= min_score)
    return sorted(kept, key=lambda match: -match.score)[:top_k]


def _photo_by_photo_winners(index: UserIndex, stored: Stored, queries: np.ndarray) -> list:
    """``region_winners`` computed label by label from the photos themselves."""
    rows = index.search(queries, WINNER_CANDIDATES)
    wanted = {hit.label for row in rows for hit in row}
    photos = {label: rows for label, rows in stored.by_label().items() if label in wanted}
    names = list(photos)
    best = np.stack([(queries @ photos[name].T).max(axis=1) for name in names], axis=1)
    sums = np.stack([photos[name].sum(axis=0, dtype=np.float64) for name in names])
    centroids = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    won = (best + queries @ centroids.T).argmax(axis=1)
    return [
        VisualMatch(label=names[code], score=float(best[row, code]), region=row)
        for row, code in enumerate(won)
    ]


def _same(got: list[VisualMatch], expected: list[VisualMatch]) -> None:
    assert [(m.label, m.region) for m in got] == [(m.label, m.region) for m in expected]
    assert [m.score for m in got] == pytest.approx([m.score for m in expected], abs=1e-6)


CASES = [(seed, dim, count) for seed in range(6) for dim, count in ((8, 1), (64, 3), (512, 25))]


@pytest.mark.parametrize(("seed", "dim", "count"), CASES)
def test_best_search_answers_as_the_hit_by_hit_search_before_and_after_writes(
    seed: int, dim: int, count: int
) -> None:
    index, stored, rng = _random_user(seed, dim)
    for step in range(3):
        queries = _queries(stored, rng, count)
        for top_k, min_score in ((len(index), -np.inf), (3, -1.0), (40, 0.05)):
            got = search_concepts(index, queries, top_k=top_k, min_score=min_score)
            _same(got, _hit_by_hit(index, queries, top_k, min_score))
        # Every label is there, with its brute-force best score.
        truth = {
            label: float((queries @ rows.T).max()) for label, rows in stored.by_label().items()
        }
        got = search_concepts(index, queries, top_k=len(index), min_score=-np.inf)
        assert {m.label: m.score for m in got} == pytest.approx(truth, abs=1e-6)
        assert [m.score for m in got] == sorted((m.score for m in got), reverse=True)
        _write(index, stored, rng, step)


@pytest.mark.parametrize(("seed", "dim", "count"), CASES)
def test_region_winners_answer_as_the_photo_by_photo_reference_before_and_after_writes(
    seed: int, dim: int, count: int
) -> None:
    index, stored, rng = _random_user(seed, dim)
    for step in range(3):
        queries = _queries(stored, rng, max(count, 2))
        _same(region_winners(index, queries), _photo_by_photo_winners(index, stored, queries))
        _write(index, stored, rng, step)


def test_photos_stored_twice_tie_exactly_and_keep_the_order_of_search() -> None:
    # BLAS rounds one dot product differently at some places of a small matrix: without
    # care, a photo stored under two concepts would score a little differently in each.
    for seed in range(20):
        rng = np.random.default_rng(seed)
        vectors = _unit(rng.standard_normal((7, 512)))
        vectors[[2, 5, 6]] = vectors[0]
        index = UserIndex(512)
        index.add([70, 60, 50, 40, 30, 20, 10], ["a", "b", "c", "d", "e", "f", "a"], vectors)
        query = _unit(vectors[:1] + 0.5 * rng.standard_normal((1, 512)))
        got = search_concepts(index, query, top_k=7, min_score=-1.0)
        tied = [m for m in got if m.label in {"a", "c", "f"}]
        assert len({m.score for m in tied}) == 1
        # FAISS lists equal scores latest stored first: "a" (its copy at row 6), then
        # "f" (row 5), then "c" (row 2).
        assert [m.label for m in got] == [m.label for m in _hit_by_hit(index, query, 7, -1.0)]
        assert [m.label for m in tied] == ["a", "f", "c"]


def test_the_contenders_of_a_region_are_the_earliest_stored_of_equal_photos() -> None:
    # 30 concepts share one photo (the best for the region) and each has one more, the
    # later concepts' closer to the region: of the 30 copies, the 16 that FAISS keeps
    # (the earliest stored) decide which concepts contend, hence who wins.
    rng = np.random.default_rng(2)
    query = _unit(rng.standard_normal((1, 64)))
    shared = _unit(query + 0.05 * rng.standard_normal((1, 64)))[0]
    aside = rng.standard_normal(64)
    aside -= (aside @ query[0]) * query[0]
    aside /= np.linalg.norm(aside)
    index, stored = UserIndex(64), Stored(64)
    for n in range(30):
        closeness = 0.1 + n / 100  # the other photo's score for the region
        other = closeness * query[0] + np.sqrt(1 - closeness**2) * aside
        vectors = np.stack([shared, other]).astype(np.float32)
        stored.add(index, [2 * n, 2 * n + 1], [f"c{n}", f"c{n}"], vectors)
    assert {hit.label for hit in index.search(query, WINNER_CANDIDATES)[0]} == {
        f"c{n}" for n in range(16)
    }
    expected = _photo_by_photo_winners(index, stored, query)
    _same(region_winners(index, query), expected)
    assert expected[0].label == "c15"


def test_a_region_given_twice_keeps_its_first_place() -> None:
    # The same, for a query given at two rows of the queries' matrix.
    rng = np.random.default_rng(1)
    for dim in (16, 64, 512):
        for size in (1, 3, 7, 33):
            index = UserIndex(dim)
            index.add(
                range(size), [f"c{i % 3}" for i in range(size)], rng.standard_normal((size, dim))
            )
            for count in (3, 9, 17, 25):
                queries = np.repeat(_unit(rng.standard_normal((1, dim))), count, axis=0)
                found = search_concepts(index, queries, top_k=size, min_score=-np.inf)
                assert {m.region for m in found} == {0}, (dim, size, count)


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
