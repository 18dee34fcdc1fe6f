"""Registration throughput: concepts per second, three photos each, over HTTP.

    python bench/registration.py [--model ViT-B-32] [--concepts 48] [--clients 1,4]

``rapport serve`` runs in a child process on a fresh SQLite data folder (or on
RAPPORT_DATABASE_URL when set); clients are threads of this process. Random
weights: speed only. Needs the machine to itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import Served, conditions, dataset_jpegs, percentile, run_load


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--concepts", type=int, default=48)
    parser.add_argument("--clients", default="1,4")
    args = parser.parse_args()
    database = os.environ.get("RAPPORT_DATABASE_URL", "sqlite (data folder)").split("@")[-1]
    print(f"# {conditions(model=args.model, weights=args.pretrained, database=database)}")
    photos = dataset_jpegs(3 * args.concepts)
    extra = (
        {"RAPPORT_DATABASE_URL": os.environ["RAPPORT_DATABASE_URL"]}
        if "RAPPORT_DATABASE_URL" in os.environ
        else {}
    )
    served = Served(
        RAPPORT_CLIP_MODEL=args.model, RAPPORT_CLIP_PRETRAINED=args.pretrained, env=extra
    )
    try:
        print(f"{'clients':>7} {'concepts/s':>11} {'photos/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
        for run, clients in enumerate(int(c) for c in args.clients.split(",")):

            def call(client, n, run=run):  # type: ignore[no-untyped-def]
                files = [
                    ("images", (f"{i}.jpg", photos[(3 * n + i) % len(photos)])) for i in range(3)
                ]
                return client.post(
                    f"/v1/users/bench{run}/concepts", data={"name": f"c{n}"}, files=files
                )

            result = run_load(served, clients, max(1, args.concepts // clients), call)
            rate = result.requests / result.seconds
            ms = [x * 1000 for x in result.latencies]
            print(
                f"{clients:>7} {rate:>11.2f} {3 * rate:>9.1f} {percentile(ms, 50):>8.1f} "
                f"{percentile(ms, 95):>8.1f}"
                + (f"  errors={result.errors}" if result.errors else "")
            )
    finally:
        served.stop()


if __name__ == "__main__":
    main()
