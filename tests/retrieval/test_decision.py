"""The label-free decision rule on controlled vectors: what it accepts, and how it degrades."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from retrieval.background import BACKGROUND_COUNT, SIDE, background_photos
from retrieval.decision import (
    POOLED_GENUINE_WEIGHT,
    SINGLE_PHOTO_GENUINE,
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


def test_new_views_of_a_concept_are_present_and_others_are_not(rng: np.random.Generator) -> None:
    vectors, labels, centres = clusters(rng, concepts=6, photos=3, spread=0.12)
    rule = fit_decision(vectors, labels, background(rng))
    queries = unit(centres + 0.12 * rng.normal(size=centres.shape))
    for i, query in enumerate(queries):
        for j in range(len(centres)):
            label = f"c{j}"
            score = float((vectors[[k for k, x in enumerate(labels) if x == label]] @ query).max())
            assert rule.present(label, score) == (i == j), (i, j, score, rule.threshold(label))
    assert all(t.basis == "leave-one-out" and t.separable for t in rule.thresholds.values())
    # Thresholds are each concept's own, not one number for the model.
    assert len({round(t.threshold, 6) for t in rule.thresholds.values()}) == 6
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


def test_a_single_photo_concept_borrows_or_gets_stricter(rng: np.random.Generator) -> None:
    vectors, labels, _ = clusters(rng, concepts=3, photos=3, spread=0.12)
    lone = unit(rng.normal(size=(1, DIM)))
    rule = fit_decision(np.concatenate([vectors, lone]), [*labels, "lone"], background(rng))
    borrowed = rule.thresholds["lone"]
    others = [rule.thresholds[f"c{i}"].genuine for i in range(3)]
    assert borrowed.basis == "borrowed" and borrowed.genuine == pytest.approx(np.median(others))
    alone = fit_decision(lone, ["lone"], background(rng)).thresholds["lone"]
    assert alone.basis == "single photo" and alone.genuine == SINGLE_PHOTO_GENUINE
    assert alone.threshold > alone.impostor + 2 * alone.impostor_sd


def test_one_concept_user_is_decided_against_the_background(rng: np.random.Generator) -> None:
    vectors, labels, centres = clusters(rng, concepts=1, photos=4, spread=0.12)
    noise = background(rng)
    rule = fit_decision(vectors, labels, noise)
    assert rule.thresholds["c0"].separable
    assert rule.present(
        "c0", float((vectors @ unit(centres[0] + 0.1 * rng.normal(size=DIM))).max())
    )
    assert not any(rule.present("c0", float((vectors @ other).max())) for other in noise)


def test_near_duplicate_photos_make_the_threshold_stricter(rng: np.random.Generator) -> None:
    diverse, labels, _ = clusters(rng, concepts=4, photos=3, spread=0.15)
    duplicates = diverse.copy()
    for start in range(0, len(diverse), 3):
        duplicates[start + 1 : start + 3] = unit(duplicates[start] + 1e-3 * rng.normal(size=DIM))
    noise = background(rng)
    loose, strict = fit_decision(diverse, labels, noise), fit_decision(duplicates, labels, noise)
    for label in loose.thresholds:
        assert strict.thresholds[label].genuine > 0.99
        assert strict.thresholds[label].threshold > loose.thresholds[label].threshold


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


def test_pooled_regions_need_less_of_the_gap_but_more_than_an_impostor(
    rng: np.random.Generator,
) -> None:
    """Pooled scores run low for present concepts: a laxer share of the same gap."""
    vectors, labels, _ = clusters(rng, concepts=5, photos=3, spread=0.12)
    rule = fit_decision(vectors, labels, background(rng))
    for label, found in rule.thresholds.items():
        pooled = rule.threshold(label, pooled=True)
        assert pooled is not None and found.impostor < pooled < found.threshold
        gap = found.genuine - found.impostor
        assert abs((pooled - found.impostor) / gap - POOLED_GENUINE_WEIGHT) < 1e-5
        assert rule.present(label, pooled, pooled=True) and not rule.present(label, pooled)


def test_the_work_is_bounded(rng: np.random.Generator) -> None:
    vectors, labels, _ = clusters(rng, concepts=40, photos=3, spread=0.12)
    small = fit_decision(vectors, labels, background(rng, 16), max_cohort=8)
    # Eight of the user's photos, less the concept's own among them, and the background.
    counts = [t.impostors for t in small.thresholds.values()]
    assert all(8 + 16 - 3 <= count <= 8 + 16 for count in counts) and min(counts) < 8 + 16
    assert all(t.separable for t in small.thresholds.values())
    full = fit_decision(vectors, labels, background(rng, 16))
    assert all(t.impostors == 39 * 3 + 16 for t in full.thresholds.values())
    # A concept with many photos is fitted on an even sample of them.
    many, many_labels, _ = clusters(rng, concepts=2, photos=50, spread=0.12)
    capped = fit_decision(many, many_labels, background(rng, 16), max_photos=5)
    uncapped = fit_decision(many, many_labels, background(rng, 16))
    assert all(t.separable and t.basis == "leave-one-out" for t in capped.thresholds.values())
    # Nearest of 4 others vs nearest of 49: the sample's genuine mean is lower.
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
