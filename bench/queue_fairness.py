"""How long one app's single photo waits behind another app's largest request.

    .venv/bin/python bench/queue_fairness.py                 # MobileNetV2 if installed
    .venv/bin/python bench/queue_fairness.py --rounds 5

App A queues the regions of the largest request the default limits allow with
the 2+3 grid (20 photos x 14 regions = 280 crops); right after, app B queues
one photo. Measured: the time until B's vector is back, and until all of A's
are, with the encoder's queue taking apps in turn (rapport's default) and, in
the same run, first come first served (both callers under one owner, as
before). Medians over ``--rounds``; the same encoder, batch size and threads
for both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import DATASET, conditions

from retrieval.batching import BatchingEncoder, encoding_for
from retrieval.config import BatchingConfig, EncoderConfig
from retrieval.encoders import open_encoder
from retrieval.image_encoder import ImageEncoder
from retrieval.images import decode_image

CROPS = 20 * 14


def encoder_for(model: str) -> ImageEncoder:
    if model == "mobilenet_v2":
        from eval_quality import weights_of

        config = EncoderConfig(
            family="torchvision", model=model, pretrained=str(weights_of(model)), device="cpu"
        )
    else:
        config = EncoderConfig(model=model, pretrained="none", device="cpu")
    return open_encoder(config)


def one_round(
    batching: BatchingEncoder, tensors: list[torch.Tensor], fair: bool
) -> tuple[float, float]:
    """Seconds until B's photo is encoded, and until all of A's are."""
    ready = threading.Event()
    done: dict[str, float] = {}
    started = time.perf_counter()

    def app_a() -> None:
        with encoding_for("app-a"):
            futures = batching.submit(tensors[:CROPS])
        ready.set()
        for future in futures:
            future.result()
        done["a"] = time.perf_counter() - started

    thread = threading.Thread(target=app_a)
    thread.start()
    ready.wait()
    with encoding_for("app-b" if fair else "app-a"):
        (future,) = batching.submit(tensors[:1])
    future.result()
    done["b"] = time.perf_counter() - started
    thread.join()
    return done["b"], done["a"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    encoder = encoder_for(args.model)
    photos = sorted(DATASET.rglob("*.jpg"))[:20]
    tiles = [decode_image(path.read_bytes()).image for path in photos]
    tensors = [encoder.preprocess(tiles[i % len(tiles)]) for i in range(CROPS)]
    config = BatchingConfig(max_batch=args.batch, queue_size=2 * CROPS, max_per_owner=CROPS + 1)
    batching = BatchingEncoder(encoder, config).start()
    print(conditions(model=encoder.model_id, batch=args.batch, crops=CROPS, rounds=args.rounds))
    try:
        one_round(batching, tensors, fair=True)  # warm-up
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for fair in (False, True):  # interleaved: the machine's drift hits both
                results[fair].append(one_round(batching, tensors, fair))
    finally:
        batching.stop()
    for fair, label in ((False, "first come first served"), (True, "apps in turn (default)")):
        b = statistics.median(r[0] for r in results[fair])
        a = statistics.median(r[1] for r in results[fair])
        print(
            f"{label:<26} app B's 1 photo: {b * 1000:7.0f} ms   app A's {CROPS}: {a * 1000:7.0f} ms"
        )
    fifo_b = statistics.median(r[0] for r in results[False])
    fair_b = statistics.median(r[0] for r in results[True])
    print(f"app B waits {fifo_b / fair_b:.1f}x less in turns")


if __name__ == "__main__":
    main()
