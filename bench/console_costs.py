"""What the console's API adds: the look-alike search per concept, and thumbnails.

    python bench/console_costs.py [--dim 512] [--photos 5] [--rounds 200]

Library level, no HTTP. The look-alike search of one concept (its photos' vectors
against the user's whole index) is compared with what every retrieval already
pays: one query vector searched for the top 16. Thumbnails: a dataset photo
downscaled to 256 pixels and encoded, against a hit of the thumbnail cache.
Needs the machine to itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import conditions, dataset_jpegs, median

from app.storage.thumbnails import Thumbnail, ThumbnailCache, make_thumbnail
from app.usecases.lookalikes import _best_other
from retrieval.config import ImageLimits
from retrieval.images import DecodedImage, decode_image
from retrieval.index import UserIndex


def timed(call: object, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def lookalike(dim: int, photos: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    print(f"look-alike search of a concept with {photos} photos, dim {dim}, median of {rounds}")
    print(f"{'user vectors':>13} {'retrieval (1 query)':>20} {'look-alike':>12} {'ratio':>6}")
    for size in (1_000, 10_000, 50_000):
        vectors = rng.standard_normal((size, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        labels = [f"c{i // photos}" for i in range(size)]
        index = UserIndex(dim)
        index.add(range(size), labels, vectors)
        own = index.vectors_by_label(["c0"])["c0"]
        query = vectors[:1]
        # Interleaved, so that a neighbour's load on the shared machine hits both alike.
        base_times, cost_times = [], []
        for _ in range(rounds):
            base_times += timed(lambda q=query, i=index: i.search(q, 16), 1)
            cost_times += timed(lambda o=own, i=index: _best_other(i, "c0", o), 1)
        base, cost = median(base_times), median(cost_times)
        print(f"{size:>13} {base * 1e3:>17.3f} ms {cost * 1e3:>9.3f} ms {cost / base:>6.2f}")


def thumbnails(rounds: int) -> None:
    photos = dataset_jpegs(8)
    limits = ImageLimits()

    def decode(data: bytes) -> DecodedImage:
        return decode_image(data, limits, min_side=1, max_side=256)  # as the service does

    made = [
        median(timed(lambda p=photo: make_thumbnail(p, "image/jpeg", 256, decode), rounds // 8))
        for photo in photos
    ]
    cache = ThumbnailCache(32 * 1024 * 1024)
    cache.put(("k", 256), Thumbnail(b"x" * 20_000, "image/jpeg"))
    hit = median(timed(lambda: cache.get(("k", 256)), rounds))
    sizes = [len(make_thumbnail(p, "image/jpeg", 256, decode).data) / len(p) for p in photos]
    print(
        f"thumbnail 256 px of a 512 px dataset JPEG: made {median(made) * 1e3:.2f} ms "
        f"(median over {len(photos)} photos), cache hit {hit * 1e6:.2f} us "
        f"(ratio {median(made) / hit:.0f}); bytes {median(sizes):.0%} of the photo's"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--photos", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    threadpool_limits(limits=1, user_api="blas")  # as the service runs (app/main.py)
    print(conditions(blas_threads=1))
    lookalike(args.dim, args.photos, args.rounds)
    thumbnails(args.rounds)


if __name__ == "__main__":
    main()
