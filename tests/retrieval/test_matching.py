from __future__ import annotations

import time

import numpy as np
import pytest

from retrieval import UserIndex, name_key, named_in
from retrieval.common_words import is_bare_word_matchable
from retrieval.matching import search_concepts
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
    assert not is_bare_word_matchable("can") and not is_bare_word_matchable("clock")
    assert is_bare_word_matchable("bo") and is_bare_word_matchable("backpack_dog")
    assert is_bare_word_matchable("my mug")  # several words are not said by chance
    assert not is_bare_word_matchable("")


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
