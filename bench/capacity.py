"""Capacity of one replica: cold index load from PostgreSQL, memory per cached user.

    python bench/capacity.py [--dim 512] [--repeats 15]

Library level, through the service's own code: a user's vectors are read with the
repository function that retrieval uses on a cache miss and built into the same
per-user FAISS index (``UserIndex``), then kept in the same LRU cache. PostgreSQL is
``RAPPORT_BENCH_POSTGRES_URL`` (default: local, trust); a throwaway database is made and
dropped. Throughput through a load balancer: bench/replicas.py.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _postgres import add_user, bench_database, new_tenant, unit
from _support import conditions, median, percentile, returning

from app.storage.db.engine import make_engine, make_sessionmaker
from app.storage.db.models import User
from app.storage.repository import vectors as vector_rows
from retrieval.index import UserIndex, UserIndexCache

SIZES = (20, 200, 2000)
MODEL = "bench"


def rss_bytes() -> int:
    """Resident memory now (not the peak)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cold_load(url: str, dim: int, repeats: int, rng: np.random.Generator) -> None:
    print("\ncold load of one user's index from PostgreSQL (read vectors + build the index)")
    print(
        f"{'vectors':>8} {'median ms':>10} {'p90 ms':>8} {'SQL read ms':>12} "
        f"{'build ms':>9} {'version check ms':>17}"
    )
    sessions = make_sessionmaker(make_engine(url))
    with sessions() as session:
        tenant = new_tenant(session)
        users = {
            size: add_user(session, tenant, f"u{size}", unit(size, dim, rng), MODEL)
            for size in SIZES
        }
        session.commit()
        session.execute(text("ANALYZE"))
    for size, user_id in users.items():
        totals, reads, builds, checks = [], [], [], []
        for _ in range(repeats):
            started = time.perf_counter()
            with sessions() as session:
                ids, labels, matrix = vector_rows.user_vectors(
                    session=session, user_id=user_id, model_id=MODEL
                )
            read = time.perf_counter()
            UserIndex(dim).add(ids, labels, matrix)
            done = time.perf_counter()
            totals.append(done - started)
            reads.append(read - started)
            builds.append(done - read)
            # What a warm retrieval pays instead: the user's version, one indexed row.
            started = time.perf_counter()
            with sessions() as session:
                session.scalar(select(User.version).where(User.id == user_id))
            checks.append(time.perf_counter() - started)
        print(
            f"{size:>8} {median(totals) * 1e3:>10.2f} {percentile(totals, 90) * 1e3:>8.2f} "
            f"{median(reads) * 1e3:>12.2f} {median(builds) * 1e3:>9.2f} "
            f"{median(checks) * 1e3:>17.2f}"
        )


def memory_per_user(dim: int) -> None:
    print("\nmemory per cached user (the cache's own accounting and the process's RSS growth)")
    print(
        f"{'vectors':>8} {'users':>6} {'cache bytes/user':>17} {'RSS bytes/user':>15} "
        f"{'hot users per GiB':>18}"
    )
    for size, count in ((20, 4000), (200, 800), (2000, 80)):
        # A fresh process each: memory freed by one size would be reused by the next.
        measured = subprocess.run(
            [sys.executable, __file__, "--dim", str(dim), "--memory-of", f"{size}:{count}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        accounted, grown = (float(value) for value in measured)
        print(
            f"{size:>8} {count:>6} {accounted:>17,.0f} {grown:>15,.0f} "
            f"{2**30 / max(grown, accounted):>18,.0f}"
        )


def measure_memory(dim: int, size: int, count: int) -> None:
    """Print the cache's bytes per user and the RSS growth per user, ``count`` users cached."""
    rng = np.random.default_rng(size)
    cache = UserIndexCache(max_bytes=1 << 40)
    # Concept ids are UUID strings, five vectors each, as the service stores them.
    labels = [f"{i // 5:08x}-0000-4000-8000-{i // 5:012x}" for i in range(size)]
    vectors = unit(size, dim, rng)
    gc.collect()
    before = rss_bytes()
    for user in range(count):
        index = UserIndex(dim)
        index.add(range(size), labels, vectors)
        index.label_scores(vectors[:1])  # a hot user has been searched: its label view built
        cache.get((user, MODEL), 1, returning(index))
    gc.collect()
    print(cache.stats().nbytes / count, (rss_bytes() - before) / count)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # SIZE:COUNT, one child's part
    args = parser.parse_args()
    if args.memory_of:
        size, count = (int(part) for part in args.memory_of.split(":"))
        measure_memory(args.dim, size, count)
        return
    with bench_database() as url:
        with make_engine(url).connect() as connection:
            server = connection.scalar(text("SHOW server_version"))
        print(f"# {conditions(dim=args.dim, postgres=server, host='local (loopback)')}")
        print("# the machine may be shared with other work: compare rows within this run")
        rng = np.random.default_rng(0)
        cold_load(url, args.dim, args.repeats, rng)
    memory_per_user(args.dim)


if __name__ == "__main__":
    main()
