from __future__ import annotations

import numpy as np
import pytest

from retrieval.index import UserIndex, UserIndexCache


def _unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_search_is_exact_inner_product() -> None:
    vectors = _unit(200)
    index = UserIndex(16)
    index.add(range(1000, 1200), [f"c{i % 7}" for i in range(200)], vectors)
    queries = _unit(3, seed=1)
    results = index.search(queries, 10)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1000
    assert [[hit.vector_id for hit in row] for row in results] == expected.tolist()
    assert results[0][0].label == f"c{(expected[0, 0] - 1000) % 7}"
    assert results[0][0].score == pytest.approx(float(queries[0] @ vectors[expected[0, 0] - 1000]))


def test_add_and_remove_without_rebuild() -> None:
    vectors = _unit(3)
    index = UserIndex(16)
    index.add([1, 2], ["a", "b"], vectors[:2])
    index.add([2, 3], ["b", "c"], vectors[1:])  # id 2 again: kept once
    assert len(index) == 3
    index.remove([2, 99])
    assert len(index) == 2
    assert {hit.vector_id for hit in index.search(vectors[1:2], 5)[0]} == {1, 3}
    assert index.search(vectors[:1], 5)[0][0].vector_id == 1
    with pytest.raises(ValueError):
        index.add([4], ["d", "e"], vectors[:1])


def test_best_scores_per_label() -> None:
    vectors = _unit(4)
    index = UserIndex(16)
    index.add([1, 2, 3, 4], ["a", "a", "b", "c"], vectors)
    best = index.best_scores(vectors[1:2], ["a", "b"])
    assert best["a"] == pytest.approx(1.0)
    assert best["b"] == pytest.approx(float(vectors[1] @ vectors[2]))
    assert set(best) == {"a", "b"}


def _index_of(rows: int, seed: int = 0) -> UserIndex:
    index = UserIndex(16)
    index.add(range(rows), ["x"] * rows, _unit(rows, seed=seed))
    return index


def test_cache_reloads_on_a_new_version_and_counts_hits() -> None:
    cache = UserIndexCache(max_bytes=10**9)
    loads: list[int] = []

    def load(rows: int):  # type: ignore[no-untyped-def]
        def build() -> UserIndex:
            loads.append(rows)
            return _index_of(rows)

        return build

    assert len(cache.get("u1", 1, load(3))) == 3
    assert len(cache.get("u1", 1, load(5))) == 3
    assert len(cache.get("u1", 2, load(5))) == 5
    assert loads == [3, 5]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 1)


def test_cache_applies_local_writes_only_at_the_expected_version() -> None:
    cache = UserIndexCache(max_bytes=10**9)
    cache.get("u", 4, lambda: _index_of(2))
    cache.apply("u", from_version=4, to_version=5, update=lambda index: index.remove([0]))
    assert len(cache.get("u", 5, lambda: _index_of(9))) == 1
    # A write this process did not see in between: the entry is dropped, not patched.
    cache.apply("u", from_version=6, to_version=7, update=lambda index: index.remove([1]))
    assert len(cache.get("u", 7, lambda: _index_of(9))) == 9


def test_cache_memory_stays_bounded() -> None:
    one = _index_of(50).nbytes
    cache = UserIndexCache(max_bytes=one * 10)
    for user in range(100):
        cache.get(user, 0, lambda: _index_of(50))
        assert cache.stats().nbytes <= one * 10
    assert cache.stats().entries == 10
    # Most recently used users stay.
    before = cache.stats().misses
    cache.get(99, 0, lambda: _index_of(50))
    assert cache.stats().misses == before
    cache.get(0, 0, lambda: _index_of(50))
    assert cache.stats().misses == before + 1
