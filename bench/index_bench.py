"""Per-user index: search time and memory by size, cold load from SQL, and flat cost with users.

    python bench/index_bench.py [--dim 512] [--users 100000] [--per-user 20]

Library level, no HTTP: FAISS exact inner product, one index per user. The
cold load reads a user's vectors from a SQLite file through the service's own
repository function. Needs the machine to itself.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import conditions, median, percentile, returning

from app.storage.db.engine import make_engine, make_sessionmaker
from app.storage.db.migrate import upgrade
from app.storage.db.models import Concept, ImageRow, Tenant, User
from app.storage.repository import vectors as vector_rows
from retrieval.index import UserIndex, UserIndexCache
from retrieval.matching import search_concepts


def unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_searches(index: UserIndex, queries: np.ndarray, top_k: int = 5) -> list[float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        search_concepts(index, query[None, :], top_k=top_k, min_score=-1.0)
        times.append(time.perf_counter() - started)
    return times


def by_size(dim: int, rng: np.random.Generator) -> None:
    print("\nsearch and memory per user (top 5 concepts, 5 photos per concept)")
    print(f"{'vectors':>8} {'p50 us':>8} {'p99 us':>8} {'index bytes':>12} {'bytes/vector':>13}")
    queries = unit(2000, dim, rng)
    for size in (10, 1000, 10_000):
        index = UserIndex(dim)
        index.add(range(size), [f"c{i // 5}" for i in range(size)], unit(size, dim, rng))
        times = [t * 1e6 for t in timed_searches(index, queries)]
        print(
            f"{size:>8} {percentile(times, 50):>8.1f} {percentile(times, 99):>8.1f} "
            f"{index.nbytes:>12} {index.nbytes / size:>13.0f}"
        )


def cold_load(dim: int, rng: np.random.Generator) -> None:
    print("\ncold load of one user's index from SQL (SQLite file; read vectors + build)")
    print(f"{'vectors':>8} {'median ms':>10}")
    folder = Path(tempfile.mkdtemp(prefix="rapport-bench-index-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with sessions() as session:
        tenant = Tenant(name="bench")
        session.add(tenant)
        session.flush()
        for size in (10, 1000, 10_000):
            user = User(tenant_id=tenant.id, external_id=f"u{size}", version=1)
            session.add(user)
            session.flush()
            vectors = unit(size, dim, rng)
            for start in range(0, size, 5):
                concept = Concept(user_id=user.id, name=f"c{start}", name_key=f"c{start}")
                session.add(concept)
                session.flush()
                for i in range(start, min(start + 5, size)):
                    image = ImageRow(
                        concept_id=concept.id,
                        user_id=user.id,
                        sha256="0" * 64,
                        blob_key="x",
                        media_type="image/jpeg",
                        width=1,
                        height=1,
                        size_bytes=1,
                    )
                    session.add(image)
                    session.flush()
                    vector_rows.add_vector(
                        session=session, image=image, vector=vectors[i], model_id="bench"
                    )
        session.commit()
        users = {
            size: session.scalars(select(User.id).where(User.external_id == f"u{size}")).one()
            for size in (10, 1000, 10_000)
        }
    for size, user_id in users.items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            with sessions() as session:
                ids, labels, matrix = vector_rows.user_vectors(
                    session=session, user_id=user_id, model_id="bench"
                )
            UserIndex(dim).add(ids, labels, matrix)
            times.append(time.perf_counter() - started)
        print(f"{size:>8} {median(times) * 1000:>10.2f}")


def many_users(dim: int, users: int, per_user: int, rng: np.random.Generator) -> None:
    print(
        f"\nper-query cost as users grow ({per_user} vectors each, all cached, "
        f"{users * per_user:,} vectors at the end)"
    )
    print(f"{'users':>8} {'p50 us':>8} {'p99 us':>8} {'cache MiB':>10} {'max RSS MiB':>12}")
    cache = UserIndexCache(max_bytes=1 << 40)
    queries = unit(2000, dim, rng)
    built = 0
    for checkpoint in sorted({c for c in (1000, 10_000, users) if c <= users}):
        while built < checkpoint:
            index = UserIndex(dim)
            index.add(
                range(per_user), [f"c{i // 4}" for i in range(per_user)], unit(per_user, dim, rng)
            )
            cache.get(built, 0, returning(index))
            built += 1
        gc.collect()
        times = []
        for query in queries:
            user = random.randrange(built)
            started = time.perf_counter()
            index = cache.get(user, 0, lambda: UserIndex(dim))
            search_concepts(index, query[None, :], top_k=5, min_score=-1.0)
            times.append((time.perf_counter() - started) * 1e6)
        print(
            f"{built:>8} {percentile(times, 50):>8.1f} {percentile(times, 99):>8.1f} "
            f"{cache.stats().nbytes / 2**20:>10.0f} {rss_mib():>12.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--per-user", type=int, default=20)
    args = parser.parse_args()
    print(f"# {conditions(dim=args.dim, index='IndexIDMap2(IndexFlatIP) per user')}")
    rng = np.random.default_rng(0)
    random.seed(0)
    by_size(args.dim, rng)
    cold_load(args.dim, rng)
    many_users(args.dim, args.users, args.per_user, rng)


if __name__ == "__main__":
    main()
