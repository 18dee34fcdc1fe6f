from __future__ import annotations

import time

import numpy as np
import pytest

from retrieval.index import UserIndex
from retrieval.matching import region_winners, search_concepts
from retrieval.names import bare_word_matchable, name_key, named_in
from tests import factories


@pytest.mark.parametrize(
    ("name", "key"), [("<Bo>", "bo"), ("  bo ", "bo"), ("My  Mug", "my mug"), ("<>", "")]
)
def test_name_key(name: str, key: str) -> None:
    assert name_key(name) == key


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("what is <bo> doing?", {"bo"}),
        ("Is BO here", {"bo"}),
        ("bo.", {"bo"}),
        ("bonnie and elbow", set()),
        ("is my mug on the table", {"my mug"}),
        ("<bo> and <my mug>", {"bo", "my mug"}),
        ("no names", set()),
    ],
)
def test_named_in(text: str, found: set[str]) -> None:
    assert named_in(text, ["<bo>", "My Mug", "<>"]) == found


DATASET_NAMES = factories.subjects()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Can you describe this photo?", set()),
        ("Can you tell me what time the clock shows?", set()),
        ("Is the dog happy? What about the cat and the candle?", set()),
        ("Where did I leave <can>? Is <Clock> on the wall?", {"can", "clock"}),
        ("Is dog2 with dog3 next to the backpack_dog?", {"dog2", "dog3", "backpack_dog"}),
        (
            "Show me <red_cartoon>, grey_sloth_plushie and <dog>",
            {"red_cartoon", "grey_sloth_plushie", "dog"},
        ),
    ],
)
def test_common_words_name_a_concept_only_in_angle_brackets(text: str, found: set[str]) -> None:
    # Concepts named like the dataset's folders, as `rapport import` names them.
    assert {"can", "clock", "cat", "dog", "dog2", "candle", "backpack_dog"} <= set(DATASET_NAMES)
    assert named_in(text, DATASET_NAMES) == found


def test_bare_word_matching_is_for_names_that_are_no_common_word() -> None:
    assert not bare_word_matchable("can") and not bare_word_matchable("clock")
    assert bare_word_matchable("bo") and bare_word_matchable("backpack_dog")
    assert bare_word_matchable("my mug")  # several words are not said by chance
    assert not bare_word_matchable("") and not bare_word_matchable("x")


def test_search_concepts_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(600, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # Few concepts with many photos each: the top hits are mostly of one concept.
    labels = [f"c{i % 5}" if i < 500 else f"d{i}" for i in range(600)]
    index = UserIndex(8)
    index.add(range(600), labels, vectors)
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = (queries @ vectors.T).max(axis=0)
    best: dict[str, float] = {}
    for label, score in zip(labels, scores, strict=True):
        best[label] = max(best.get(label, -2.0), float(score))
    for top_k, min_score in ((3, -1.0), (20, 0.0), (50, 0.5)):
        expected = sorted((s, label) for label, s in best.items() if s >= min_score)[::-1][:top_k]
        got = search_concepts(index, queries, top_k=top_k, min_score=min_score)
        assert [(m.label, pytest.approx(m.score)) for m in got] == [
            (label, s) for s, label in expected
        ]


def _unit(*rows: list[float]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_a_region_goes_to_the_concept_all_its_photos_resemble_not_to_one_look_alike() -> None:
    index = UserIndex(3)
    # "shiny": three photos around the query; "colorful": one photo a little closer
    # to the query than any of shiny's, the others far from it.
    shiny = _unit([1, 0.45, 0], [1, -0.45, 0], [1, 0, 0.45])
    colorful = _unit([1, 0, -0.4], [0, 1, 0], [0, 0, 1])
    index.add(range(6), ["shiny"] * 3 + ["colorful"] * 3, np.concatenate([shiny, colorful]))
    query = _unit([1, 0, 0])
    assert index.search(query, 1)[0][0].label == "colorful"  # the best single photo
    [won] = region_winners(index, query)
    assert won.label == "shiny" and won.region == 0
    assert won.score == pytest.approx(float((shiny @ query[0]).max()))  # its best photo's score
    got = search_concepts(index, query, top_k=5, min_score=-1.0, aggregation="winner")
    assert [m.label for m in got] == ["shiny"]  # one region: one concept


def test_winner_aggregation_keeps_each_concepts_best_region() -> None:
    index = UserIndex(3)
    index.add(range(4), ["a", "a", "b", "b"], _unit([1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.1]))
    queries = _unit([1, 0.05, 0], [0.9, 0.3, 0], [0, 1, 0.05])
    got = search_concepts(index, queries, top_k=5, min_score=-1.0, aggregation="winner")
    assert [(m.label, m.region) for m in got] == [("a", 0), ("b", 2)]
    assert search_concepts(index, queries, top_k=5, min_score=0.9999, aggregation="winner") == []
    assert region_winners(UserIndex(3), queries) == []


def test_search_concepts_on_an_empty_index() -> None:
    assert search_concepts(UserIndex(8), np.ones((1, 8), np.float32), top_k=3, min_score=0) == []


def test_names_are_found_in_one_pass_whatever_their_number() -> None:
    names = [f"<thing{n}>" for n in range(1000)] + ["<bo>"]
    text = ("is bo here with x? " * 4000)[:64_000]
    named_in(text, names)  # compiled once, then cached for these names
    started = time.perf_counter()
    found = named_in(text, names)
    elapsed = time.perf_counter() - started
    assert found == {"bo"}
    # One regex search per name took about 6 s here (0.1 s per name per MB).
    assert elapsed < 0.5, elapsed


def test_a_longer_name_wins_where_two_start_together_and_both_forms_are_found() -> None:
    names = ["<bo>", "<bo bo>", "<bo2>", "<a>"]
    assert named_in("Is <BO BO> with bo2?", names) == {"bo bo", "bo2"}
    assert named_in("bo, then bo bo", names) == {"bo", "bo bo"}
    assert named_in("is this a dog", names) == set()
    assert named_in("is <a> here", names) == {"a"}
    assert named_in("bob and abo", names) == set()
