"""The service's own CPU per /retrieve, beyond the model: this checkout vs a baseline.

    python bench/service_cost.py                          # this checkout alone
    git worktree add /tmp/rapport-base <commit>
    python bench/service_cost.py --baseline /tmp/rapport-base
    python bench/service_cost.py --variant no-cache:RAPPORT_KEY_CACHE_S=0   # a setting's cost
    python bench/service_cost.py --variant pg:RAPPORT_DATABASE_URL=postgresql+psycopg://... \
        --variant base-pg@/tmp/rapport-base:RAPPORT_DATABASE_URL=postgresql+psycopg://...

With ``rapport-test-tiny`` the forward pass is nearly free, so the server's CPU
per request is the cost of HTTP, authentication, form parsing, decoding,
preprocessing, the database, the hand-offs between threads and the search.
Each server (``rapport serve``, one process, SQLite or RAPPORT_DATABASE_URL) is
measured in turn, interleaved over several rounds so that drift in the machine
hits both alike; figures are medians over rounds, with the best round beside
them. The model's share is the CPU of one batch-1 forward pass measured in this
process with the server's number of torch threads, and is subtracted ("beyond").
Needs the machine to itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import Served, conditions, dataset_jpegs, median, run_load

from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from retrieval.images import decode_image


def forward_cpu_ms(model: str, jpeg: bytes, threads: int, repeats: int = 300) -> float:
    """Process CPU of one batch-1 forward pass (preprocessed input), torch threads included,
    with ``threads`` intra-op threads (0: torch's default) as the server would use."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    encoder = Encoder.from_config(EncoderConfig(model=model, pretrained="none", device="cpu"))
    pixels = encoder.preprocess(decode_image(jpeg, min_side=encoder.input_size).image)
    for _ in range(20):
        encoder.encode_tensors([pixels])
    started = time.process_time()
    for _ in range(repeats):
        encoder.encode_tensors([pixels])
    cpu = (time.process_time() - started) / repeats * 1000
    torch.set_num_threads(default)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="rapport-test-tiny")
    parser.add_argument("--baseline", type=Path, help="another checkout of rapport to compare")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME[@CHECKOUT]:VAR=VALUE[,VAR=VALUE]: this checkout (or another) again, "
        "with these environment variables",
    )
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=400, help="per server and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    jpegs = dataset_jpegs(64)
    print(f"# {conditions(model=args.model, clients=args.clients, server_workers=1)}")
    print(f"# database: {os.environ.get('RAPPORT_DATABASE_URL', 'SQLite in a fresh folder')}")
    here = Path(__file__).resolve().parents[1]
    env = {"RAPPORT_CLIP_MODEL": args.model, "RAPPORT_CLIP_PRETRAINED": "none"}
    env["RAPPORT_DEVICE"] = "cpu"
    runs: dict[str, tuple[Path, dict[str, str]]] = {"this checkout": (here, env)}
    if args.baseline:
        runs["baseline"] = (args.baseline.resolve(), env)
    for variant in args.variant:
        label, _, assignments = variant.partition(":")
        name, _, root = label.partition("@")
        extra = dict(item.split("=", 1) for item in assignments.split(",") if item)
        runs[name] = (Path(root).resolve() if root else here, env | extra)
    model_ms = {
        name: forward_cpu_ms(args.model, jpegs[0], int(run_env.get("RAPPORT_TORCH_THREADS", 0)))
        for name, (_, run_env) in runs.items()
    }
    servers = {name: Served(root=root, env=run_env) for name, (root, run_env) in runs.items()}

    def call(client, n):  # type: ignore[no-untyped-def]
        photo = jpegs[n % len(jpegs)]
        return client.post(
            "/v1/users/bench/retrieve", files={"image": ("q.jpg", photo)}, data={"min_score": "-1"}
        )

    per_round: dict[str, list[float]] = {name: [] for name in servers}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
    try:
        for served in servers.values():
            with served.client() as client:
                files = [("images", (f"{i}.jpg", jpegs[i])) for i in range(3)]
                created = client.post("/v1/users/bench/concepts", data={"name": "bo"}, files=files)
                created.raise_for_status()
            run_load(served, args.clients, 50, call)  # warm-up
        for _ in range(args.rounds):
            for name, served in servers.items():
                before = served.cpu_seconds()
                result = run_load(served, args.clients, args.requests // args.clients, call)
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} requests failed")
                per_round[name].append((served.cpu_seconds() - before) / result.requests * 1000)
                for stage, values in result.stages.items():
                    stages[name].setdefault(stage, []).extend(values)
    finally:
        for served in servers.values():
            served.stop()

    # The best round is the cost with the least interference from the rest of the machine.
    print(
        f"\n{'server':>14} {'cpu ms/req (rounds)':>40} {'median':>7} {'model':>6} "
        f"{'beyond':>7} {'best round beyond':>18}"
    )
    for name, values in per_round.items():
        rounds = " ".join(f"{v:.2f}" for v in values)
        model = model_ms[name]
        print(
            f"{name:>14} {rounds:>40} {median(values):>7.2f} {model:>6.2f} "
            f"{median(values) - model:>7.2f} {min(values) - model:>18.2f}"
        )
        print(
            f"{'':>14} stage medians (ms): "
            + " ".join(f"{k}={median(v) * 1000:.2f}" for k, v in stages[name].items())
        )
    reference = median(per_round["this checkout"])
    print()
    for name, values in per_round.items():
        if name != "this checkout":
            print(f"{name} / this checkout, cpu per request: {median(values) / reference:.2f}")


if __name__ == "__main__":
    main()
