"""Soak: mixed traffic from several tenants against a multi-worker server, then an audit.

    python bench/soak.py [--seconds 180] [--tenants 4] [--clients 8] [--workers 2]

Starts ``rapport serve --workers N`` on loopback (PostgreSQL from
RAPPORT_DATABASE_URL, or a fresh database on the local server), runs a bounded
mix of registrations, photo adds and deletes, retrievals, lists and concept
deletes from threads for the given time, then checks that every acknowledged
write is there, every acknowledged delete is gone, and that no answer ever
named a concept of another tenant or user. Prints the figures; exits 1 on any
finding. Sends traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import Served, conditions, dataset_jpegs, percentile


def fresh_postgres() -> str:
    name = f"rapport_soak_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{name}"'],
        check=True,
    )
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


class Ledger:
    """What the server acknowledged, per (tenant key, user): concept id -> name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[tuple[str, str], dict[str, str]] = collections.defaultdict(dict)
        self.deleted: set[str] = set()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.leaks: list[str] = []


def worker(
    served: Served, keys: list[str], photos: list[bytes], ledger: Ledger, deadline: float, seed: int
) -> None:
    rng = random.Random(seed)
    clients = {
        key: httpx.Client(
            base_url=served.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        )
        for key in keys
    }
    try:
        while time.monotonic() < deadline:
            key = rng.choice(keys)
            user = f"user{rng.randrange(3)}"
            client = clients[key]
            with ledger.lock:
                mine = dict(ledger.live[(key, user)])
            op = rng.choices(["register", "retrieve", "list", "add", "delete"], [3, 6, 2, 1, 1])[0]
            started = time.perf_counter()
            if op == "register" or not mine:
                op = "register"
                name = f"c{uuid.uuid4().hex[:8]}"
                files = [("images", (f"{i}.jpg", rng.choice(photos))) for i in range(2)]
                response = client.post(
                    f"/v1/users/{user}/concepts", data={"name": name}, files=files
                )
                if response.status_code == 201:
                    with ledger.lock:
                        ledger.live[(key, user)][response.json()["id"]] = name
            elif op == "retrieve":
                response = client.post(
                    f"/v1/users/{user}/retrieve",
                    files={"image": ("q.jpg", rng.choice(photos))},
                    data={"min_score": "-1", "top_k": "5"},
                )
                if response.status_code == 200:
                    found = {m["concept"]["id"] for m in response.json()["matches"]}
                    with ledger.lock:
                        others = found - set(ledger.live[(key, user)]) - ledger.deleted
                        # A concept of this user registered after our snapshot is fine.
                        if others:
                            ledger.leaks.append(f"retrieve {user}: foreign ids {sorted(others)}")
            elif op == "list":
                response = client.get(f"/v1/users/{user}/concepts", params={"limit": 200})
            elif op == "add":
                concept = rng.choice(list(mine))
                response = client.post(
                    f"/v1/users/{user}/concepts/{concept}/images",
                    files=[("images", ("x.jpg", rng.choice(photos)))],
                )
            else:
                concept = rng.choice(list(mine))
                response = client.delete(f"/v1/users/{user}/concepts/{concept}")
                if response.status_code == 204:
                    with ledger.lock:
                        ledger.live[(key, user)].pop(concept, None)
                        ledger.deleted.add(concept)
            elapsed = time.perf_counter() - started
            with ledger.lock:
                ledger.statuses[f"{op} {response.status_code}"] += 1
                ledger.latency[op].append(elapsed)
    finally:
        for client in clients.values():
            client.close()


def audit(served: Served, keys: list[str], ledger: Ledger) -> list[str]:
    findings = []
    for (key, user), concepts in ledger.live.items():
        with httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            listed = client.get(f"/v1/users/{user}/concepts", params={"limit": 200}).json()["items"]
            ids = {item["id"] for item in listed}
            if missing := set(concepts) - ids:
                findings.append(f"lost acknowledged concepts of {user}: {sorted(missing)}")
            if back := ids & ledger.deleted:
                findings.append(f"deleted concepts are back for {user}: {sorted(back)}")
            if foreign := ids - set(concepts):
                findings.append(f"unknown concepts listed for {user}: {sorted(foreign)}")
    return findings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    database = os.environ.get("RAPPORT_DATABASE_URL") or fresh_postgres()
    setup = {"workers": args.workers, "clients": args.clients, "tenants": args.tenants}
    print(f"# {conditions(model='rapport-test-tiny', seconds=args.seconds, **setup)}")
    served = Served(
        RAPPORT_CLIP_MODEL="rapport-test-tiny",
        RAPPORT_CLIP_PRETRAINED="none",
        RAPPORT_DATABASE_URL=database,
        RAPPORT_RATE_LIMIT_RPS="0",
        workers=str(args.workers),
    )
    try:
        keys = [served.new_key(f"tenant{n}") for n in range(args.tenants)]
        photos = dataset_jpegs(40)
        ledger = Ledger()
        deadline = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=worker, args=(served, keys, photos, ledger, deadline, n))
            for n in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        findings = ledger.leaks + audit(served, keys, ledger)
    finally:
        served.stop()
    total = sum(ledger.statuses.values())
    print(f"requests: {total} in {args.seconds:.0f} s ({total / args.seconds:.1f}/s)")
    for op, times in sorted(ledger.latency.items()):
        ms = [t * 1000 for t in times]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        print(f"  {op:<9} n={len(ms):<6} p50={p50:7.1f} ms  p99={p99:7.1f} ms")
    print("statuses:", dict(sorted(ledger.statuses.items())))
    live = sum(len(c) for c in ledger.live.values())
    print(f"acknowledged live concepts: {live}; acknowledged deletes: {len(ledger.deleted)}")
    print("findings:", findings or "none")
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
