"""Retrievals/s through HAProxy with 1 and with 3 rapport replicas, in the same run.

    python bench/replicas.py [--users 30] [--clients 8] [--seconds 15] [--rounds 3]

Three ``rapport serve`` processes (one worker each, the tiny test model, one PostgreSQL
database, RAPPORT_SECRET_KEY shared) and two HAProxy processes running the shipped
docker/haproxy.cfg (consistent hashing on the user id, /readyz checks): one in front of
replica 1 only, one in front of all three. Client threads send /retrieve (one photo each)
for many users through one balancer, then the other, alternating, for several rounds.
Everything (replicas, balancers, PostgreSQL, clients) shares this machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _postgres import bench_database
from _support import Served, conditions, dataset_jpegs, median, percentile

from tests.deploy.balancer import Balancer


def start_replicas(url: str, count: int) -> list[Served]:
    shared = {
        "RAPPORT_DATABASE_URL": url,
        "RAPPORT_SECRET_KEY": secrets.token_hex(32),
        "RAPPORT_CLIP_MODEL": "rapport-test-tiny",
        "RAPPORT_CLIP_PRETRAINED": "none",
        "RAPPORT_DEVICE": "cpu",
        "RAPPORT_TORCH_THREADS": "1",
        "RAPPORT_ACCESS_LOG": "false",
        "RAPPORT_MIN_SCORE": "-1",
    }
    return [Served("1", env=shared) for _ in range(count)]


def multipart(photo: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def load(
    port: int, key: str, users: list[str], photo: bytes, clients: int, seconds: float
) -> tuple[float, list[float], int]:
    """Requests/s, latencies and errors of ``clients`` threads for ``seconds``."""
    body, content_type = multipart(photo)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(number: int) -> None:
        # A light client (http.client, one kept-alive connection): the bench's own CPU is
        # taken from the same cores as the servers'.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, failed, sent = [], 0, number
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            user = users[sent % len(users)]
            sent += clients
            started = time.perf_counter()
            connection.request("POST", f"/v1/users/{user}/retrieve", body, headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            failed += response.status != 200
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, errors[0]


def scrape(url: str) -> dict[str, float]:
    """Retrievals answered, user indexes cached and loaded, by one replica."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text)
    values: dict[str, float] = {"retrievals": 0.0}
    for family in families:
        for sample in family.samples:
            if sample.name == "rapport_http_requests_total" and sample.labels.get(
                "route", ""
            ).endswith("/retrieve"):
                values["retrievals"] += sample.value
            elif sample.name in (
                "rapport_index_cache_entries",
                "rapport_index_cache_misses_total",
                "rapport_encoder_batch_size_sum",
                "rapport_encoder_batch_size_count",
            ):
                values[sample.name] = sample.value
    return values


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def commits(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.scalar(
            text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        )
    engine.dispose()
    return int(value)


def register_users(replica: Served, users: list[str], photos: list[bytes]) -> None:
    with replica.client() as client:
        for number, user in enumerate(users):
            mine = photos[2 * number % len(photos) :][:2] or photos[:2]
            files = [("images", (f"p{i}.jpg", photo, "image/jpeg")) for i, photo in enumerate(mine)]
            response = client.post(
                f"/v1/users/{user}/concepts", data={"name": f"thing-{number}"}, files=files
            )
            response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_database() as url:
        replicas = start_replicas(url, 3)
        balancers: dict[str, Balancer] = {}
        try:
            balancers = {
                "1 replica": Balancer([replicas[0].port]),
                "3 replicas": Balancer([r.port for r in replicas]),
            }
            run(args, url, replicas, balancers)
        finally:
            for balancer in balancers.values():
                balancer.stop()
            for replica in replicas:
                replica.stop()


def run(
    args: argparse.Namespace, url: str, replicas: list[Served], balancers: dict[str, Balancer]
) -> None:
    setup = conditions(
        replicas="3x(rapport serve --workers 1)",
        model="rapport-test-tiny",
        server_torch_threads=1,
        users=args.users,
        clients=args.clients,
        seconds=args.seconds,
        rounds=args.rounds,
    )
    print(f"# {setup}")
    print("# the machine is shared with other work while this runs: compare within this run")
    users = [f"user-{n:03d}" for n in range(args.users)]
    photos = dataset_jpegs(2 * args.users)
    register_users(replicas[0], users, photos)
    key, query = replicas[0].key, photos[0]
    # Warm-up: every user's index loaded where each balancer sends that user.
    for balancer in balancers.values():
        load(balancer.port, key, users, query, 1, 2.0)
    pids = [r.process.pid for r in replicas]
    rounds: dict[str, list[Round]] = {name: [] for name in balancers}
    served_by = [0.0] * len(replicas)  # retrievals each replica answered in 3-replica rounds
    commits_before = commits(url)
    for number in range(args.rounds):
        for name, balancer in balancers.items():
            before = [scrape(r.url) for r in replicas]
            cpu = cpu_seconds([*pids, balancer.process.pid]) + own_cpu()
            rate, latencies, errors = load(
                balancer.port, key, users, query, args.clients, args.seconds
            )
            cpu = cpu_seconds([*pids, balancer.process.pid]) + own_cpu() - cpu
            after = [scrape(r.url) for r in replicas]
            encoded, batches = (
                sum(
                    a[f"rapport_encoder_batch_size_{k}"] - b[f"rapport_encoder_batch_size_{k}"]
                    for a, b in zip(after, before, strict=True)
                )
                for k in ("sum", "count")
            )
            rounds[name].append(
                Round(rate, latencies, errors, cpu / len(latencies), encoded / batches)
            )
            if name == "3 replicas":
                for i in range(len(replicas)):
                    served_by[i] += after[i]["retrievals"] - before[i]["retrievals"]
            print(f"round {number + 1} {name:>10}: {rate:7.1f} retrievals/s, {errors} errors")
    sent = sum(len(r.latencies) for runs in rounds.values() for r in runs)
    transactions = commits(url) - commits_before
    report(rounds, served_by, [scrape(r.url) for r in replicas], transactions / sent)


@dataclass
class Round:
    rate: float
    latencies: list[float]
    errors: int
    cpu_per_request: float  # servers + balancer + this client, seconds
    batch: float  # photos per forward pass, mean


def report(
    rounds: dict[str, list[Round]],
    served_by: list[float],
    replicas: list[dict[str, float]],
    transactions_per_request: float,
) -> None:
    print(
        f"\n{'balancer':>10} {'median/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'CPU ms/req':>10} {'photos/batch':>12}"
    )
    for name, runs in rounds.items():
        latencies = [value for r in runs for value in r.latencies]
        print(
            f"{name:>10} {median([r.rate for r in runs]):>9.1f} "
            f"{percentile(latencies, 50) * 1e3:>7.1f} {percentile(latencies, 99) * 1e3:>7.1f} "
            f"{sum(r.errors for r in runs):>6} "
            f"{median([r.cpu_per_request for r in runs]) * 1e3:>10.2f} "
            f"{median([r.batch for r in runs]):>12.2f}"
        )
    one, three = rounds["1 replica"], rounds["3 replicas"]
    ratio = median([r.rate for r in three]) / median([r.rate for r in one])
    per_round = ", ".join(f"{b.rate / a.rate:.2f}" for a, b in zip(one, three, strict=True))
    print(f"3 replicas / 1 replica: {ratio:.2f} (per round: {per_round}); {os.cpu_count()} cores")
    print("\nper replica: share of the 3-replica rounds' retrievals; users cached, loads from SQL")
    for number, (answered, values) in enumerate(zip(served_by, replicas, strict=True)):
        print(
            f"  replica {number + 1}: {answered / sum(served_by):4.0%}, "
            f"{values.get('rapport_index_cache_entries', 0):.0f} users cached, "
            f"{values.get('rapport_index_cache_misses_total', 0):.0f} loads"
        )
    print(f"PostgreSQL transactions per retrieval: {transactions_per_request:.2f}")


if __name__ == "__main__":
    main()
