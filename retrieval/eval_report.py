"""An evaluation's report: its figures, how they come from scores, a table and plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MEANINGLESS = "RANDOM WEIGHTS: these figures are meaningless"
# The score of a concept that no region matched (under "winner" aggregation).
NOT_MATCHED = -1.0


@dataclass(frozen=True)
class CollageReport:
    """2x2 collages of four concepts; rates are over (collage, concept) pairs."""

    collages: int
    present_top4_rate: float
    present_accepted_rate: float | None  # None: no collage had such a concept
    absent_rejected_rate: float | None
    rule_present_accepted_rate: float | None  # the label-free decision rule's
    rule_absent_rejected_rate: float | None
    median_query_ms: float
    median_query_cpu_ms: float
    present_scores: list[float] = field(repr=False)
    absent_scores: list[float] = field(repr=False)
    # The concept each score is about (to split the figures by concept).
    present_labels: list[str] = field(repr=False, default_factory=list)
    absent_labels: list[str] = field(repr=False, default_factory=list)


@dataclass(frozen=True)
class EvalReport:
    """Figures of one evaluation; ``meaningless`` when the encoder has random weights."""

    dataset: str
    model_id: str
    meaningless: bool
    references: int
    regions: dict[str, Any]
    aggregation: str
    concepts: int
    queries: int
    recall_at_1: float
    recall_at_3: float
    threshold: float
    threshold_source: str
    balancing_threshold: float
    positive_accuracy: float
    negative_accuracy: float
    balanced_accuracy: float
    average_precision: float
    # The label-free decision rule (retrieval/decision.py), same queries.
    rule_positive_accuracy: float
    rule_negative_accuracy: float
    rule_balanced_accuracy: float
    rule_thresholds: dict[str, float]
    rule_unseparable: list[str]  # concepts the rule never accepts (random weights?)
    median_query_ms: float
    median_query_cpu_ms: float
    collage: CollageReport | None
    conditions: dict[str, Any]
    mistakes: list[dict[str, Any]] = field(repr=False)
    positive_scores: list[float] = field(repr=False)
    negative_scores: list[float] = field(repr=False)
    positive_labels: list[str] = field(repr=False, default_factory=list)
    negative_labels: list[str] = field(repr=False, default_factory=list)
    # The open-set protocol (retrieval/open_set.py): one OpenSetPoint.to_dict() per size.
    open_set: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def format_table(report: EvalReport) -> str:
    """A plain-text table of the report's figures and the conditions they were measured in."""
    regions = report.regions
    if regions["kind"] == "grid":
        scales = ",".join(str(scale) for scale in regions["grid_scales"])
        region_text = f"grid (scales {scales}, overlap {regions['grid_overlap']})"
    elif regions["kind"] == "detector":
        region_text = (
            f"detector {regions['detector_model']} (threshold {regions['detector_threshold']}, "
            f"at most {regions['max_regions']} boxes)"
        )
    else:
        region_text = "whole photo"
    conditions = report.conditions
    lines = [
        f"dataset   {report.dataset}: {report.concepts} concepts, {report.queries} queries, "
        f"{report.references} references each",
        f"model     {report.model_id}",
        f"regions   {region_text}, aggregation {report.aggregation}",
        f"device    {conditions['device']}, {conditions['torch_threads']} torch threads, "
        f"{conditions['cpu_count']} cpus",
    ]
    if report.meaningless:
        lines.append(f"!! {MEANINGLESS} !!")
    if report.rule_unseparable:
        lines.append(
            f"!! {len(report.rule_unseparable)} of {report.concepts} concepts do not stand out "
            "from other photos: the decision rule never accepts them (random weights?) !!"
        )
    thresholds = sorted(report.rule_thresholds.values())
    rows: list[tuple[str, str]] = [
        ("single photos", ""),
        ("  recall@1", f"{report.recall_at_1:.3f}"),
        ("  recall@3", f"{report.recall_at_3:.3f}"),
        (f"  threshold ({report.threshold_source})", f"{report.threshold:.4f}"),
        ("  balancing threshold", f"{report.balancing_threshold:.4f}"),
        ("  positives accepted", f"{report.positive_accuracy:.3f}"),
        ("  negatives rejected", f"{report.negative_accuracy:.3f}"),
        ("  balanced accuracy", f"{report.balanced_accuracy:.3f}"),
        ("  decision rule: thresholds min / median / max", _spread(thresholds)),
        ("  decision rule: positives accepted", f"{report.rule_positive_accuracy:.3f}"),
        ("  decision rule: negatives rejected", f"{report.rule_negative_accuracy:.3f}"),
        ("  decision rule: balanced accuracy", f"{report.rule_balanced_accuracy:.3f}"),
        ("  average precision", f"{report.average_precision:.3f}"),
        ("  median ms / query", f"{report.median_query_ms:.1f}"),
        ("  median CPU ms / query", f"{report.median_query_cpu_ms:.1f}"),
    ]
    if report.collage is not None:
        collage = report.collage
        rows += [
            (f"2x2 collages ({collage.collages})", ""),
            ("  present concept in top 4", f"{collage.present_top4_rate:.3f}"),
            ("  present accepted", _rate(collage.present_accepted_rate)),
            ("  absent rejected", _rate(collage.absent_rejected_rate)),
            ("  decision rule: present accepted", _rate(collage.rule_present_accepted_rate)),
            ("  decision rule: absent rejected", _rate(collage.rule_absent_rejected_rate)),
            ("  median ms / query", f"{collage.median_query_ms:.1f}"),
            ("  median CPU ms / query", f"{collage.median_query_cpu_ms:.1f}"),
        ]
    width = max(len(name) for name, _ in rows) + 2
    lines += ["", *(f"{name:<{width}}{value:>8}".rstrip() for name, value in rows)]
    if report.open_set:
        lines += [
            "",
            "open set (a user with N concepts; every other photo of every subject):",
            "  concepts  users  found on top  unregistered rejected  balanced  FPIR   FNIR"
            "   best single threshold afterwards",
        ]
        lines += [
            f"  {p['concepts']:>8}  {p['users']:>5}  {p['found']:>12.3f}  {p['rejected']:>21.3f}"
            f"  {p['balanced']:>8.3f}  {p['fpir']:.3f}  {p['fnir']:.3f}   {p['oracle']:.3f}"
            f" (at {p['oracle_threshold']:.3f})"
            for p in report.open_set
        ]
    if report.mistakes:
        lines += ["", f"top-1 mistakes ({len(report.mistakes)}):"]
        lines += [
            f"  {m['query']} -> {m['found']} ({m['found_score']:.3f} vs {m['expected_score']:.3f})"
            for m in report.mistakes
        ]
    return "\n".join(lines)


def precision_recall(
    positives: list[float], negatives: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) of (query, concept) pairs accepted from the best score down.

    Pairs scoring NOT_MATCHED are never accepted: the curve ends before them.
    """
    scores = np.concatenate([positives, negatives])
    relevant = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] > NOT_MATCHED]
    hits = np.cumsum(relevant[order])
    precision = hits / np.arange(1, len(order) + 1)
    return precision, hits / max(1, len(positives))


def balancing_threshold(positives: list[float], negatives: list[float]) -> float:
    """The score threshold that maximises balanced accuracy (mid-gap, middle of ties)."""
    pos, neg = np.sort(np.asarray(positives)), np.sort(np.asarray(negatives))
    values = np.unique(np.concatenate([pos, neg]))
    midpoints = (values[1:] + values[:-1]) / 2
    cuts = np.concatenate([[values[0] - 1e-3], midpoints, [values[-1] + 1e-3]])
    accepted = 1 - np.searchsorted(pos, cuts, side="left") / len(pos)
    rejected = np.searchsorted(neg, cuts, side="left") / len(neg)
    balanced = (accepted + rejected) / 2
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    return float(cuts[best[len(best) // 2]])


def average_precision(positives: list[float], negatives: list[float]) -> float:
    """Area under the precision-recall curve of (query, concept) pairs ranked by score."""
    precision, recall = precision_recall(positives, negatives)
    return float(np.sum(precision * np.diff(recall, prepend=0.0)))


def save_plots(report: EvalReport, out_dir: str | Path) -> list[Path]:
    """Write ``scores.png``, ``precision_recall.png`` and (with open-set figures)
    ``open_set.png`` into ``out_dir``; return their paths."""
    # Figure without pyplot: no global backend switch, no GUI, safe in threads.
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"\n({MEANINGLESS})" if report.meaningless else ""
    panels = [("single photos", report.positive_scores, report.negative_scores)]
    if report.collage is not None:
        collage = report.collage
        panels.append(("2x2 collages", collage.present_scores, collage.absent_scores))
    figure = Figure(figsize=(6 * len(panels), 4.5), layout="constrained")
    for axes, (title, positives, negatives) in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        shown = [score for score in (*positives, *negatives) if score > NOT_MATCHED] or [0.0]
        bins = np.linspace(min(shown), max(shown) + 1e-6, 41)
        for scores, label in ((negatives, "other concepts"), (positives, "the concept shown")):
            matched = [score for score in scores if score > NOT_MATCHED]
            unmatched = len(scores) - len(matched)
            note = f" ({unmatched} matched by no region)" if unmatched else ""
            if matched:
                axes.hist(matched, bins=bins, density=True, alpha=0.6, label=label + note)
        axes.axvline(report.threshold, color="black", linestyle="--", label="threshold")
        axes.set(title=f"{title}: score per concept", xlabel="cosine score", ylabel="density")
        axes.legend()
    figure.suptitle(f"{report.model_id}, regions: {report.regions['kind']}{suffix}")
    scores_path = out / "scores.png"
    figure.savefig(scores_path, dpi=100)

    precision, recall = precision_recall(report.positive_scores, report.negative_scores)
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(recall, precision)
    axes.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.01),
        ylim=(0, 1.01),
        title=f"single photos, AP {report.average_precision:.3f}{suffix}",
    )
    curve_path = out / "precision_recall.png"
    figure.savefig(curve_path, dpi=100)
    paths = [scores_path, curve_path]
    if report.open_set:
        figure = Figure(figsize=(5.5, 4.5), layout="constrained")
        axes = figure.subplots()
        sizes = [p["concepts"] for p in report.open_set]
        axes.plot(sizes, [p["fpir"] for p in report.open_set], "o-", label="FPIR (false alarms)")
        axes.plot(sizes, [p["fnir"] for p in report.open_set], "s-", label="FNIR (misses)")
        axes.set(
            xlabel="concepts per user",
            ylabel="error rate",
            ylim=(0, 1.01),
            title=f"open set, decision rule{suffix}",
        )
        axes.legend()
        open_path = out / "open_set.png"
        figure.savefig(open_path, dpi=100)
        paths.append(open_path)
    return paths


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{values[0]:.3f} / {values[len(values) // 2]:.3f} / {values[-1]:.3f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
