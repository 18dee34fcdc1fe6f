"""What pooled regions cost and give at each input side, and with a dilated last stage.

    .venv/bin/python bench/pooled_sides.py                 # CPU of the trunk per side
    .venv/bin/python bench/pooled_sides.py --quality       # and collage figures per side

Part 1 times the feature trunk (the part whose map is pooled) of both real
ImageNet backbones on one thread, the inputs interleaved so that the machine's
drift hits every size alike: squeezed to 224 (a whole photo's pass), 256, 288,
320 px, and "dilated 224" (the last stride-2 convolution made stride 1 and the
later spatial convolutions dilated x2, as segmentation nets do for output
stride 16: a 14x14 map from a 224 px photo, with the same weights). Medians,
and ratios to 224 px.

Part 2 (``--quality``) runs ``rapport eval``'s collages (80, seed 0) with grid2
and grid2+3 pooled regions at each side and several pooled shares of each
concept's gap (``retrieval.decision.POOLED_GENUINE_WEIGHT``), printing all
subjects and the development / held-out halves (bench/RESULTS.md, protocol).
Needs the two weight packages (see bench/eval_quality.py).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import conditions
from eval_quality import DATASET, halves, weights_of

from retrieval import decision
from retrieval.config import EncoderConfig, RegionConfig
from retrieval.efficientnet_encoder import SamePaddedConv2d
from retrieval.evaluation import evaluate
from retrieval.torchvision_encoder import TorchvisionEncoder, split_trunk

MODELS = ("mobilenet_v2", "efficientnet_lite0")
SIDES = (224, 256, 288, 320)
SHARES = (0.3, 0.25, 0.2, 0.15)


def dilated(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (sharing its weights) of output stride 16: its last stride-2
    convolution made stride 1, every later spatial convolution dilated x2."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    copied: torch.nn.Module = copy.deepcopy(model, shared)
    convs = [m for m in copied.modules() if isinstance(m, torch.nn.Conv2d)]
    last = max(i for i, conv in enumerate(convs) if conv.stride[0] == 2)
    convs[last].stride = (1, 1)
    for conv in convs[last + 1 :]:
        kernel = conv.kernel_size[0]
        if kernel > 1:
            conv.dilation = (2, 2)
            if not isinstance(conv, SamePaddedConv2d):  # that one pads in its forward
                conv.padding = (kernel - 1, kernel - 1)
    return copied


def encoder_of(model: str) -> TorchvisionEncoder:
    config = EncoderConfig(
        family="torchvision", model=model, pretrained=str(weights_of(model)), device="cpu"
    )
    return TorchvisionEncoder.from_config(config)


def trunk_costs(encoder: TorchvisionEncoder, rounds: int) -> dict[str, float]:
    """Median CPU ms of one trunk pass per input, interleaved."""
    split = split_trunk(encoder._model)
    assert split is not None
    trunk = split[0]
    cases: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int]] = {
        f"{side}": (trunk, side) for side in SIDES
    }
    dilated_split = split_trunk(dilated(encoder._model))
    assert dilated_split is not None
    cases["dilated 224"] = (dilated_split[0], 224)
    inputs = {
        name: torch.randn(1, 3, side, side).contiguous(memory_format=torch.channels_last)
        for name, (_, side) in cases.items()
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        for name, (run, _) in cases.items():
            for _ in range(3):
                run(inputs[name])
        for _ in range(rounds):
            for name, (run, _) in cases.items():
                start = time.process_time()
                run(inputs[name])
                times[name].append((time.process_time() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def quality(encoder: TorchvisionEncoder, collages: int) -> None:
    for side in SIDES[2:]:
        for scales in ((2,), (2, 3)):
            regions = RegionConfig(
                kind="grid",
                grid_scales=scales,
                grid_overlap=0.25,
                encoding="pooled",
                pooled_side=side,
            )
            for share in SHARES:
                decision.POOLED_SHARE = share
                report = evaluate(
                    DATASET, encoder, regions=regions, aggregation="winner", collage_count=collages
                )
                collage = report.collage
                assert collage is not None
                name = f"grid{''.join(map(str, scales))} pooled {side} px, share {share}"
                print(
                    f"  {name:<34} top4 {collage.present_top4_rate:.3f} present/absent "
                    f"{collage.rule_present_accepted_rate:.3f}/"
                    f"{collage.rule_absent_rejected_rate:.3f} | {halves(report)}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--collages", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(conditions(batch=1, rounds=args.rounds))
    for model in MODELS:
        encoder = encoder_of(model)
        costs = trunk_costs(encoder, args.rounds)
        base = costs["224"]
        figures = ", ".join(f"{k} {v:.1f} ms ({v / base:.2f}x)" for k, v in costs.items())
        print(f"{encoder.model_id} trunk, median CPU: {figures}", flush=True)
        if args.quality:
            quality(encoder, args.collages)


if __name__ == "__main__":
    main()
