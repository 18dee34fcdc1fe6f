"""Garbage-collection pauses of a served rapport: RAPPORT_GC_FREEZE off vs on.

    python bench/gc_pauses.py [--model ViT-B-32] [--clients 8] [--requests 400] [--rounds 3]

Two figures, each with and without the start-up heap frozen out of full collections:

1. In this process, with the service's objects built as ``rapport serve`` builds them
   (the model on random weights: as many objects as real weights): how long one full
   collection (``gc.collect()``) stops every thread, median of several.
2. Two ``rapport serve`` processes (RAPPORT_GC_FREEZE=false and true), measured in
   turn over several rounds so that drift in the machine hits both alike: /retrieve
   latency under ``--clients`` concurrent clients; p50, p99 and max, medians over rounds.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import Served, conditions, dataset_jpegs, median, percentile, run_load


def full_collection_ms(model: str, repeats: int = 5) -> tuple[int, float, float]:
    """(tracked objects, ms of a full collection unfrozen, ms frozen) in this process."""
    import tempfile

    from app.main import build_services
    from app.settings import Settings

    data = tempfile.mkdtemp(prefix="rapport-bench-gc-")
    settings = Settings(data_dir=Path(data), clip_model=model, clip_pretrained="none")
    services = build_services(settings)
    try:
        gc.collect()
        objects = len(gc.get_objects())
        unfrozen = []
        for _ in range(repeats):
            started = time.perf_counter()
            gc.collect()
            unfrozen.append((time.perf_counter() - started) * 1000)
        gc.freeze()
        frozen = []
        for _ in range(repeats):
            started = time.perf_counter()
            gc.collect()
            frozen.append((time.perf_counter() - started) * 1000)
        gc.unfreeze()
    finally:
        services.close()
    return objects, median(unfrozen), median(frozen)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"# {conditions(model=args.model, weights='none (random)')}")

    objects, unfrozen, frozen = full_collection_ms(args.model)
    print(f"\none full collection in a process holding the service ({objects} tracked objects)")
    print(f"  unfrozen: {unfrozen:.1f} ms   frozen: {frozen:.2f} ms")

    jpegs = dataset_jpegs(64)
    variants = {"freeze off": "false", "freeze on": "true"}
    servers = {
        name: Served(
            RAPPORT_CLIP_MODEL=args.model,
            RAPPORT_CLIP_PRETRAINED="none",
            RAPPORT_GC_FREEZE=value,
            RAPPORT_ACCESS_LOG="false",
        )
        for name, value in variants.items()
    }
    try:
        for served in servers.values():
            with served.client() as client:
                files = [("images", (f"{i}.jpg", jpegs[i])) for i in range(3)]
                client.post("/v1/users/bench/concepts", data={"name": "bo"}, files=files)

        def call(client, n):  # type: ignore[no-untyped-def]
            return client.post(
                "/v1/users/bench/retrieve",
                files={"image": ("q.jpg", jpegs[n % len(jpegs)])},
                data={"min_score": "-1"},
            )

        for served in servers.values():
            run_load(served, 4, 8, call)  # warm-up
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        per_client = max(1, args.requests // args.clients)
        for _ in range(args.rounds):
            for name, served in servers.items():
                result = run_load(served, args.clients, per_client, call)
                ms = [x * 1000 for x in result.latencies]
                figures[name].append((percentile(ms, 50), percentile(ms, 99), max(ms)))
        print(
            f"\n/retrieve, {args.clients} clients, {per_client * args.clients} requests per "
            f"variant and round, {args.rounds} rounds (medians over rounds; best round in ())"
        )
        print(f"{'variant':>11} {'p50 ms':>14} {'p99 ms':>14} {'max ms':>14}")
        p99s = {}
        for name, rounds in figures.items():
            cells = []
            for column in range(3):
                values = [r[column] for r in rounds]
                cells.append(f"{median(values):>7.1f} ({min(values):>5.1f})")
            p99s[name] = median([r[1] for r in rounds])
            print(f"{name:>11} {' '.join(cells)}")
        print(f"p99 ratio off/on: {p99s['freeze off'] / p99s['freeze on']:.2f}")
    finally:
        for served in servers.values():
            served.stop()


if __name__ == "__main__":
    main()
