"""The label-free decision rule on controlled vectors: what it accepts, and how it degrades."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from retrieval.background import BACKGROUND_COUNT, SIDE, background_photos
from retrieval.decision import (
    NO_GENUINE_SDS,
    POOLED_SHARE,
    BackgroundVectors,
    fit_decision,
)

DIM = 64


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def clusters(
    rng: np.random.Generator, concepts: int, photos: int, spread: float
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``photos`` noisy views of ``concepts`` random directions, and their centres."""
    centres = unit(rng.normal(size=(concepts, DIM)))
    views = centres.repeat(photos, axis=0) + spread * rng.normal(size=(concepts * photos, DIM))
    labels = [f"c{i}" for i in range(concepts) for _ in range(photos)]
    return unit(views), labels, centres


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def background(rng: np.random.Generator, count: int = 16) -> np.ndarray:
    return unit(rng.normal(size=(count, DIM)))


def scores_of(vectors: np.ndarray, labels: list[str], query: np.ndarray) -> dict[str, float]:
    """Each concept's best photo against ``query``, as the service scores it."""
    return {
        label: float((vectors[[k for k, x in enumerate(labels) if x == label]] @ query).max())
        for label in dict.fromkeys(labels)
    }


def test_new_views_of_a_concept_are_present_and_others_are_not(rng: np.random.Generator) -> None:
    vectors, labels, centres = clusters(rng, concepts=6, photos=3, spread=0.12)
    rule = fit_decision(vectors, labels, background(rng))
    queries = unit(centres + 0.12 * rng.normal(size=centres.shape))
    for i, query in enumerate(queries):
        for label, score in scores_of(vectors, labels, query).items():
            assert rule.present(label, score) == (label == f"c{i}"), (i, label, score)
    assert all(t.basis == "rehearsal" and t.separable for t in rule.thresholds.values())
    # One threshold for the user: every concept is held to the same open-set test.
    assert len({t.threshold for t in rule.thresholds.values()}) == 1
    found = next(iter(rule.thresholds.values()))
    assert found.impostor < found.threshold < found.genuine
    # Every photo is an impostor trial against the other concepts.
    assert found.impostors == len(vectors)
    assert not rule.present("unknown", 1.0) and rule.threshold("unknown") is None


def test_thresholds_follow_the_score_scale_of_the_model(rng: np.random.Generator) -> None:
    """The same geometry squeezed into another score range gets thresholds in that range."""
    vectors, labels, _ = clusters(rng, concepts=4, photos=3, spread=0.12)
    noise = background(rng)
    wide = fit_decision(vectors, labels, noise)
    # A common offset direction raises every cosine (like a model whose scores are all high).
    offset = unit(rng.normal(size=(1, DIM)))
    squeezed = fit_decision(unit(vectors + 1.5 * offset), labels, unit(noise + 1.5 * offset))
    for label in wide.thresholds:
        assert squeezed.thresholds[label].threshold > wide.thresholds[label].threshold + 0.2
        assert squeezed.thresholds[label].separable


def test_more_concepts_raise_the_threshold_so_false_alarms_stay_per_photo(
    rng: np.random.Generator,
) -> None:
    """The impostor trial is the best of the other concepts: with more concepts it scores
    higher, as an unregistered thing's best match does, and the threshold follows."""
    vectors, labels, _ = clusters(rng, concepts=30, photos=3, spread=0.5)
    few = fit_decision(vectors[:15], labels[:15], background(rng))
    many = fit_decision(vectors, labels, background(rng))
    assert many.thresholds["c0"].impostor > few.thresholds["c0"].impostor
    assert many.thresholds["c0"].threshold > few.thresholds["c0"].threshold
    strangers = unit(rng.normal(size=(200, DIM)))
    for rule, (rows, names) in ((few, (vectors[:15], labels[:15])), (many, (vectors, labels))):
        claimed = [
            any(rule.present(c, s) for c, s in scores_of(rows, names, x).items()) for x in strangers
        ]
        assert np.mean(claimed) < 0.2


def test_photos_without_a_sibling_get_a_strict_threshold(rng: np.random.Generator) -> None:
    vectors, labels, _ = clusters(rng, concepts=5, photos=1, spread=0.12)
    rule = fit_decision(vectors, labels, background(rng))
    found = rule.thresholds["c0"]
    assert found.basis == "no genuine sample"
    assert found.threshold == pytest.approx(found.impostor + NO_GENUINE_SDS * found.impostor_sd)
    # A concept with one photo among others with several shares their threshold.
    more, more_labels, _ = clusters(rng, concepts=3, photos=3, spread=0.12)
    lone = unit(rng.normal(size=(1, DIM)))
    mixed = fit_decision(np.concatenate([more, lone]), [*more_labels, "lone"], background(rng))
    assert mixed.thresholds["lone"].threshold == mixed.thresholds["c0"].threshold


def test_one_concept_user_is_decided_against_the_background(rng: np.random.Generator) -> None:
    vectors, labels, centres = clusters(rng, concepts=1, photos=4, spread=0.12)
    noise = background(rng)
    rule = fit_decision(vectors, labels, noise)
    assert rule.thresholds["c0"].separable and rule.thresholds["c0"].basis == "background"
    assert rule.present(
        "c0", float((vectors @ unit(centres[0] + 0.1 * rng.normal(size=DIM))).max())
    )
    assert not any(rule.present("c0", float((vectors @ other).max())) for other in noise)


def test_scores_that_do_not_separate_never_match(rng: np.random.Generator) -> None:
    """Random weights: every photo is nearly the same vector; nothing is ever present."""
    common = unit(rng.normal(size=(1, DIM)))
    vectors = unit(common + 0.01 * rng.normal(size=(12, DIM)))
    noise = unit(common + 0.01 * rng.normal(size=(16, DIM)))
    rule = fit_decision(vectors, [f"c{i // 3}" for i in range(12)], noise)
    assert not any(t.separable for t in rule.thresholds.values())
    assert not any(rule.present(label, 1.0) for label in rule.thresholds)
    assert not any(rule.present(label, 1.0, pooled=True) for label in rule.thresholds)
    assert all(rule.threshold(label) is None for label in rule.thresholds)


def test_pooled_regions_need_less_but_more_than_an_impostor(rng: np.random.Generator) -> None:
    vectors, labels, _ = clusters(rng, concepts=5, photos=3, spread=0.12)
    rule = fit_decision(vectors, labels, background(rng))
    for label, found in rule.thresholds.items():
        pooled = rule.threshold(label, pooled=True)
        assert pooled is not None and found.impostor < pooled < found.threshold
        share = (pooled - found.impostor) / (found.threshold - found.impostor)
        assert share == pytest.approx(POOLED_SHARE)
        assert rule.present(label, pooled, pooled=True) and not rule.present(label, pooled)


def test_a_correction_rejects_photos_like_it_and_only_those(rng: np.random.Generator) -> None:
    vectors, labels, centres = clusters(rng, concepts=4, photos=3, spread=0.05)
    # A stranger close enough to c0 to be claimed as it.
    stranger = unit(centres[0] + 0.5 * unit(rng.normal(size=DIM)))
    looks = [unit(stranger + 0.05 * rng.normal(size=DIM)) for _ in range(5)]
    plain = fit_decision(vectors, labels, background(rng))
    claimed = [plain.present("c0", scores_of(vectors, labels, x)["c0"]) for x in looks]
    assert any(claimed)
    corrected = fit_decision(
        vectors, labels, background(rng), negatives=stranger[None], negative_labels=["c0"]
    )
    assert corrected.thresholds["c0"].negatives == 1
    for x in looks:
        score = scores_of(vectors, labels, x)["c0"]
        assert not corrected.present("c0", score, vectors=x[None])
    # A new photo of c0 itself is still found.
    own = unit(centres[0] + 0.05 * rng.normal(size=DIM))
    assert corrected.present("c0", scores_of(vectors, labels, own)["c0"], vectors=own[None])
    # The correction counts against the other concepts too (it is none of them) ...
    assert all(corrected.thresholds[f"c{i}"].negatives == 1 for i in range(4))
    # ... but not against a concept that claims it: a photo said not to be c1 that is c0.
    of_c0 = unit(centres[0] + 0.05 * rng.normal(size=DIM))
    other = fit_decision(
        vectors, labels, background(rng), negatives=of_c0[None], negative_labels=["c1"]
    )
    assert other.thresholds["c0"].negatives == 0 and other.thresholds["c1"].negatives == 1
    assert other.present("c0", scores_of(vectors, labels, own)["c0"], vectors=own[None])


def test_the_work_is_bounded(rng: np.random.Generator) -> None:
    vectors, labels, _ = clusters(rng, concepts=40, photos=3, spread=0.12)
    small = fit_decision(vectors, labels, background(rng, 16), max_trials=20)
    assert all(t.impostors == 20 for t in small.thresholds.values())
    assert all(t.separable for t in small.thresholds.values())
    full = fit_decision(vectors, labels, background(rng, 16))
    assert all(t.impostors == 40 * 3 for t in full.thresholds.values())
    # A concept with many photos is scored against an even sample of them.
    many, many_labels, _ = clusters(rng, concepts=2, photos=50, spread=0.12)
    capped = fit_decision(many, many_labels, background(rng, 16), max_photos=5)
    uncapped = fit_decision(many, many_labels, background(rng, 16))
    assert all(t.separable for t in capped.thresholds.values())
    # Nearest of at most 5 others vs nearest of 49: the sample's genuine mean is lower.
    assert capped.thresholds["c0"].genuine < uncapped.thresholds["c0"].genuine


def test_background_photos_are_generated_deterministically() -> None:
    first, again = background_photos(), background_photos()
    assert len(first) == BACKGROUND_COUNT
    assert all(photo.size == (SIDE, SIDE) and photo.mode == "RGB" for photo in first)
    assert [p.tobytes() for p in first] == [p.tobytes() for p in again]
    assert len({p.tobytes() for p in first}) == BACKGROUND_COUNT
    calls: list[int] = []

    def encode(photos: Sequence[Image.Image]) -> np.ndarray:
        calls.append(len(photos))
        return np.ones((len(photos), 2), dtype=np.float32)

    lazy = BackgroundVectors(encode)
    assert not calls
    shape = (BACKGROUND_COUNT, 2)
    assert lazy.get().shape == shape and lazy.get().shape == shape and calls == [BACKGROUND_COUNT]
    # In calls no larger than the encoder's queue takes from one caller.
    calls.clear()
    assert BackgroundVectors(encode, chunk=20).get().shape == shape
    assert calls == [20, 20, BACKGROUND_COUNT - 40]
