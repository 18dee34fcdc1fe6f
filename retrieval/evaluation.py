"""Retrieval quality on a folder of concept folders: recall, recognition, collages.

One user registers every concept (a sub-folder) from its first ``references``
photos, sorted by file name; every other photo is a query. A query photo of
concept c is a positive for c and a negative for every other concept.
Collages put held-out photos of four concepts in a 2x2 grid: the four should
rank in the top 4, the others stay below the threshold.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from PIL import Image

from retrieval.background import background_photos
from retrieval.config import RANDOM_WEIGHTS, Aggregation, RegionConfig
from retrieval.decision import DecisionRule, fit_decision
from retrieval.eval_data import category_words, draw_collages, load_concepts
from retrieval.eval_report import (
    NOT_MATCHED,
    CollageReport,
    EvalReport,
    average_precision,
    balancing_threshold,
    format_table,
    save_plots,
)
from retrieval.image_encoder import ImageEncoder
from retrieval.index import UserIndex
from retrieval.open_set import SIZES as OPEN_SET_SIZES
from retrieval.open_set import OpenSetPoint, open_set
from retrieval.regions import RegionProposer, open_region_proposer
from retrieval.search import SearchOptions, search_photos

__all__ = ["CollageReport", "EvalReport", "evaluate", "format_table", "run_eval", "save_plots"]

WHOLE_PHOTO = RegionConfig(kind="whole")


def evaluate(
    dataset_dir: str | Path,
    encoder: ImageEncoder,
    *,
    references: int = 3,
    regions: RegionConfig = WHOLE_PHOTO,
    aggregation: Aggregation = "best",
    threshold: float | None = None,
    collages: bool = True,
    collage_count: int = 40,
    seed: int = 0,
    open_set_users: int = 10,
    open_set_sizes: Sequence[int] = OPEN_SET_SIZES,
) -> EvalReport:
    """Measure how well ``encoder`` and ``regions`` find the concepts of ``dataset_dir``.

    Each query goes through ``search_photos``, the service's own pipeline.
    ``aggregation="best"`` scores a concept by its best hit over all regions;
    ``"winner"`` lets each region count only for the one concept it matches
    best, and a concept no region wins scores NOT_MATCHED and is never found
    (a query of one region is scored ``"best"``, as the service does).
    ``threshold`` is the score a concept needs to count as recognised; None
    takes the one that maximises balanced accuracy on the single-photo queries.
    Beside that fixed threshold, every figure is also given for the label-free
    decision rule (retrieval/decision.py), fitted on the reference photos and
    the background before any query is seen.
    Collages (``collage_count``, drawn with ``seed``) need four concepts with
    held-out photos. ``open_set_users`` simulated users per number of concepts
    (``open_set_sizes``, and half the subjects) measure the open-set protocol of
    retrieval/open_set.py in the same run (0: not measured). Raises ValueError for a
    folder with fewer than two concepts or no held-out photo at all.
    """
    if references < 1:
        raise ValueError(f"references must be >= 1, got {references}")
    if aggregation not in get_args(Aggregation):
        raise ValueError(
            f"unknown aggregation {aggregation!r}; known: {', '.join(get_args(Aggregation))}"
        )
    photos = load_concepts(dataset_dir)
    if len(photos) < 2:
        raise ValueError(f"{dataset_dir} holds fewer than two concept folders with photos")
    held_out = {name: images[references:] for name, images in photos.items()}
    held_out = {name: images for name, images in held_out.items() if images}
    if not held_out:
        raise ValueError(f"no concept in {dataset_dir} has more than {references} photos")
    index = UserIndex(encoder.dim)
    reference_vectors, reference_labels = [], []
    for name, images in photos.items():
        start = len(index)
        vectors = encoder.encode_images(images[:references])
        index.add(range(start, start + len(vectors)), [name] * len(vectors), vectors)
        reference_vectors.append(vectors)
        reference_labels += [name] * len(vectors)
    background = encoder.encode_images(background_photos())
    meaningless = encoder.model_id.endswith(f":{RANDOM_WEIGHTS}")
    rule = fit_decision(
        np.concatenate(reference_vectors),
        reference_labels,
        background,
        random_weights=meaningless,
    )
    options = SearchOptions.of(regions, aggregation, category_words(photos))
    search = _Search(index, encoder, open_region_proposer(regions), options, list(photos))
    accepted: list[bool] = []
    rejected: list[bool] = []

    positives: list[float] = []
    negatives: list[float] = []
    negative_labels: list[str] = []
    ranks: list[int] = []
    mistakes: list[dict[str, Any]] = []
    for name, images in held_out.items():
        for i, image in enumerate(images):
            scores = search(image)
            ranked = _ranked(scores)
            ranks.append(ranked.index(name) if name in ranked else len(scores))
            positives.append(scores[name])
            negatives.extend(score for label, score in scores.items() if label != name)
            negative_labels.extend(label for label in scores if label != name)
            pooled = search.pooled
            accepted.append(rule.present(name, scores[name], pooled=pooled))
            rejected.extend(
                not rule.present(label, score, pooled=pooled)
                for label, score in scores.items()
                if label != name
            )
            if not ranked or ranked[0] != name:
                found = ranked[0] if ranked else None
                mistakes.append(
                    {
                        "query": f"{name}[{references + i}]",
                        "expected": name,
                        "expected_score": scores[name],
                        "found": found,
                        "found_score": scores[found] if found else NOT_MATCHED,
                    }
                )
    single_ms = statistics.median(search.times_ms)
    balancing = balancing_threshold(positives, negatives)
    chosen = balancing if threshold is None else threshold
    positive_accuracy = float(np.mean(np.asarray(positives) >= chosen))
    negative_accuracy = float(np.mean(np.asarray(negatives) < chosen))
    open_points: list[OpenSetPoint] = []
    if open_set_users > 0:
        half = len(held_out) // 2
        open_points = open_set(
            photos,
            encoder,
            search.proposer,
            options,
            background,
            references=references,
            sizes=sorted({*open_set_sizes, half} - {0}),
            users=open_set_users,
            seed=seed,
            random_weights=meaningless,
        )
    collage_report = None
    if collages and len(held_out) >= 4 and collage_count > 0:
        collage_report = _collages(search, held_out, chosen, rule, count=collage_count, seed=seed)
    rule_accepted, rule_rejected = float(np.mean(accepted)), float(np.mean(rejected))
    unseparable = sorted(n for n, t in rule.thresholds.items() if not t.separable)
    return EvalReport(
        dataset=str(dataset_dir),
        model_id=encoder.model_id,
        meaningless=meaningless,
        references=references,
        regions=asdict(regions),
        aggregation=aggregation,
        concepts=len(photos),
        queries=len(positives),
        recall_at_1=float(np.mean(np.asarray(ranks) < 1)),
        recall_at_3=float(np.mean(np.asarray(ranks) < 3)),
        threshold=chosen,
        threshold_source="balanced" if threshold is None else "given",
        balancing_threshold=balancing,
        positive_accuracy=positive_accuracy,
        negative_accuracy=negative_accuracy,
        balanced_accuracy=(positive_accuracy + negative_accuracy) / 2,
        average_precision=average_precision(positives, negatives),
        rule_positive_accuracy=rule_accepted,
        rule_negative_accuracy=rule_rejected,
        rule_balanced_accuracy=(rule_accepted + rule_rejected) / 2,
        # The thresholds the run's queries needed (pooled ones when its regions were).
        rule_thresholds={
            n: t.pooled_threshold if search.pooled else t.threshold
            for n, t in rule.thresholds.items()
        },
        rule_unseparable=unseparable,
        median_query_ms=single_ms,
        median_query_cpu_ms=statistics.median(search.cpu_ms),
        collage=collage_report,
        open_set=[point.to_dict() for point in open_points],
        conditions={
            "device": str(encoder.device),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
        },
        mistakes=mistakes,
        positive_scores=positives,
        negative_scores=negatives,
        positive_labels=[name for name, images in held_out.items() for _ in images],
        negative_labels=negative_labels,
    )


def run_eval(
    dataset_dir: str | Path,
    out_dir: str | Path,
    encoder: ImageEncoder,
    *,
    plots: bool = True,
    **options: Any,
) -> EvalReport:
    """Evaluate, then write ``report.json``, ``table.txt`` and (``plots``, which need
    matplotlib) the plots into ``out_dir``.

    ``dataset_dir``: a folder with one sub-folder of photos per concept (file
    names sort the reference photos first). ``out_dir``: created if missing;
    files of an earlier run are overwritten. ``encoder``: any rapport encoder
    (``open_encoder(config)``). ``options`` are ``evaluate``'s keywords:
    ``references`` (photos registered per concept, default 3), ``regions`` (a
    RegionConfig, default whole photo), ``aggregation`` ("best" or "winner",
    see ``evaluate``), ``threshold`` (None: the balancing one), ``collages`` /
    ``collage_count`` / ``seed`` (2x2 collage queries).
    Plots are ``scores.png`` (score distributions) and ``precision_recall.png``.
    """
    report = evaluate(dataset_dir, encoder, **options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.to_json() + "\n")
    (out / "table.txt").write_text(format_table(report) + "\n")
    if plots:
        save_plots(report, out)
    return report


class _Search:
    """One query through ``search_photos``: a score for every concept, and its time."""

    def __init__(
        self,
        index: UserIndex,
        encoder: ImageEncoder,
        proposer: RegionProposer,
        options: SearchOptions,
        labels: list[str],
    ) -> None:
        self.index, self.encoder, self.proposer = index, encoder, proposer
        self.options, self.labels = options, labels
        self.times_ms: list[float] = []
        self.cpu_ms: list[float] = []  # this process's CPU (all its threads)
        self.pooled = False  # whether the last query's regions were pooled

    def __call__(self, image: Image.Image) -> dict[str, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        found = search_photos(self.index, self.encoder, self.proposer, [image], self.options)
        self.times_ms.append((time.perf_counter() - start) * 1000)
        self.cpu_ms.append((time.process_time() - cpu_start) * 1000)
        self.pooled = found.pooled
        scores = dict.fromkeys(self.labels, NOT_MATCHED)
        scores.update((match.label, match.score) for match in found.matches)
        return scores


def _collages(
    search: _Search,
    held_out: dict[str, list[Image.Image]],
    threshold: float,
    rule: DecisionRule,
    *,
    count: int,
    seed: int,
) -> CollageReport:
    start = len(search.times_ms)
    found = 0
    present: list[float] = []
    absent: list[float] = []
    absent_labels: list[str] = []
    present_labels: list[str] = []
    accepted: list[bool] = []
    rejected: list[bool] = []
    for collage, chosen in draw_collages(held_out, count=count, seed=seed):
        scores = search(collage)
        top4 = _ranked(scores)[:4]
        found += sum(name in top4 for name in chosen)
        present.extend(scores[name] for name in chosen)
        absent.extend(score for label, score in scores.items() if label not in chosen)
        absent_labels.extend(label for label in scores if label not in chosen)
        present_labels.extend(chosen)
        pooled = search.pooled
        accepted.extend(rule.present(name, scores[name], pooled=pooled) for name in chosen)
        rejected.extend(
            not rule.present(label, score, pooled=pooled)
            for label, score in scores.items()
            if label not in chosen
        )
    return CollageReport(
        collages=count,
        present_top4_rate=found / (4 * count),
        present_accepted_rate=_share(np.asarray(present) >= threshold),
        absent_rejected_rate=_share(np.asarray(absent) < threshold),
        rule_present_accepted_rate=_share(np.asarray(accepted, dtype=bool)),
        rule_absent_rejected_rate=_share(np.asarray(rejected, dtype=bool)),
        median_query_ms=statistics.median(search.times_ms[start:]),
        median_query_cpu_ms=statistics.median(search.cpu_ms[start:]),
        present_scores=present,
        absent_scores=absent,
        present_labels=present_labels,
        absent_labels=absent_labels,
    )


def _ranked(scores: dict[str, float]) -> list[str]:
    """The concepts found, best first (NOT_MATCHED ones are not)."""
    found = [label for label, score in scores.items() if score > NOT_MATCHED]
    return sorted(found, key=lambda label: -scores[label])


def _share(hits: np.ndarray) -> float | None:
    """The share of true values; None when there is nothing to count (never NaN in JSON)."""
    return float(hits.mean()) if hits.size else None
