"""A throwaway PostgreSQL database for a benchmark, and users with vectors in it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.storage.db.migrate import upgrade
from app.storage.db.models import Concept, ImageRow, Tenant, User
from app.storage.repository import vectors as vector_rows

POSTGRES_URL = os.environ.get(
    "RAPPORT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def bench_database() -> Iterator[str]:
    """A new, migrated database on ``RAPPORT_BENCH_POSTGRES_URL``'s server; dropped after."""
    name = f"rapport_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_user(
    session: Session, tenant: Tenant, name: str, vectors: np.ndarray, model_id: str
) -> int:
    """A user whose concepts hold 5 photos each, one vector per photo, as the service stores."""
    user = User(tenant_id=tenant.id, external_id=name, version=1)
    session.add(user)
    session.flush()
    for start in range(0, len(vectors), 5):
        concept = Concept(user_id=user.id, name=f"c{start}", name_key=f"c{start}")
        session.add(concept)
        session.flush()
        images = [
            ImageRow(
                concept_id=concept.id,
                user_id=user.id,
                sha256=f"{start + i:064x}",
                blob_key=f"{start + i:064x}",
                media_type="image/jpeg",
                width=512,
                height=512,
                size_bytes=50_000,
            )
            for i in range(min(5, len(vectors) - start))
        ]
        session.add_all(images)
        session.flush()
        for i, image in enumerate(images):
            vector_rows.add_vector(
                session=session, image=image, vector=vectors[start + i], model_id=model_id
            )
    return user.id


def new_tenant(session: Session, name: str = "bench") -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant
