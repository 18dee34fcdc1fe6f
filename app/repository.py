"""SQL reads and writes. Every function is keyword-only and takes its session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import Concept, Embedding, ImageRow, User
from app.domain_errors import ConceptNotFound, ImageNotFound
from retrieval.errors import Overloaded


@dataclass(frozen=True)
class ConceptSummary:
    """What a match shows of a concept; cached per user version (see ``concept_summaries``)."""

    id: str
    name: str
    description: str
    category: str | None

    @property
    def nbytes(self) -> int:
        """Rough memory of this summary, for the cache's budget."""
        text = len(self.id) + len(self.name) + len(self.description) + len(self.category or "")
        return 4 * text + 400


@dataclass(frozen=True)
class UserLock:
    """A user row locked for writing by the current transaction, its version bumped."""

    user_id: int
    from_version: int
    to_version: int


def lock_user(
    *, session: Session, tenant_id: int, external_id: str, create: bool = False
) -> UserLock | None:
    """Lock the user's row and bump their version (creating the user if ``create``).

    Every write to a user's concepts starts here, so writes of one user are
    serialised and every reader can tell that its cached index is stale.
    Returns None when the user does not exist and ``create`` is false.
    """
    bump = (
        update(User)
        .where(User.tenant_id == tenant_id, User.external_id == external_id)
        .values(version=User.version + 1)
        .returning(User.id, User.version)
    )
    # With ``create``, an erase of the user committing between the insert and the
    # update (PostgreSQL, read committed) leaves nothing to update: insert again.
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    add_user = (
        insert(User)
        .values(tenant_id=tenant_id, external_id=external_id, version=0)
        .on_conflict_do_nothing()
    )
    for _ in range(3 if create else 1):
        if create:
            session.execute(add_user)
        row = session.execute(bump).one_or_none()
        if row is not None:
            user_id, version = row
            return UserLock(user_id=user_id, from_version=version - 1, to_version=version)
    if create:
        raise Overloaded("this user is being erased and created at once; retry")
    return None


def relock_user(*, session: Session, user_id: int) -> bool:
    """Lock an existing user's row without changing it; False if the user is gone."""
    result = session.execute(update(User).where(User.id == user_id).values(version=User.version))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def bump_version(*, session: Session, user_id: int) -> None:
    session.execute(update(User).where(User.id == user_id).values(version=User.version + 1))


# Built once: the one query every retrieval makes, so building it per call shows.
_USER_VERSION = select(User.id, User.version).where(
    User.tenant_id == bindparam("tenant_id"), User.external_id == bindparam("external_id")
)


def user_version(*, session: Session, tenant_id: int, external_id: str) -> tuple[int, int] | None:
    """(id, version) of the user, or None."""
    # On the session's connection: an ORM execute of a column query costs twice as much.
    row = (
        session.connection()
        .execute(_USER_VERSION, {"tenant_id": tenant_id, "external_id": external_id})
        .first()
    )
    return None if row is None else (row[0], row[1])


def concept_summaries(*, session: Session, user_id: int) -> dict[str, ConceptSummary]:
    """Every concept of the user, id -> summary."""
    rows = session.execute(
        select(Concept.id, Concept.name, Concept.description, Concept.category).where(
            Concept.user_id == user_id
        )
    )
    return {row[0]: ConceptSummary(*row) for row in rows}


def find_user(*, session: Session, tenant_id: int, external_id: str) -> User | None:
    return session.scalar(
        select(User).where(User.tenant_id == tenant_id, User.external_id == external_id)
    )


def get_concept(*, session: Session, user_id: int, concept_id: str) -> Concept:
    concept = session.scalar(
        select(Concept).where(Concept.id == concept_id, Concept.user_id == user_id)
    )
    if concept is None:
        raise ConceptNotFound(f"no concept {concept_id!r} for this user")
    return concept


def get_image(*, session: Session, user_id: int, concept_id: str, image_id: str) -> ImageRow:
    image = session.scalar(
        select(ImageRow).where(
            ImageRow.id == image_id,
            ImageRow.concept_id == concept_id,
            ImageRow.user_id == user_id,
        )
    )
    if image is None:
        raise ImageNotFound(f"no image {image_id!r} in concept {concept_id!r}")
    return image


def image_exists(*, session: Session, image_id: str) -> bool:
    return session.scalar(select(ImageRow.id).where(ImageRow.id == image_id)) is not None


def name_in_use(
    *, session: Session, user_id: int, name_key: str, except_id: str | None = None
) -> bool:
    query = select(Concept.id).where(Concept.user_id == user_id, Concept.name_key == name_key)
    if except_id is not None:
        query = query.where(Concept.id != except_id)
    return session.scalar(query) is not None


def list_concepts(
    *, session: Session, user_id: int, limit: int, after: str | None
) -> Sequence[Concept]:
    query = select(Concept).where(Concept.user_id == user_id).order_by(Concept.id).limit(limit)
    if after is not None:
        query = query.where(Concept.id > after)
    return session.scalars(query).all()


def concept_categories(*, session: Session, user_id: int) -> list[str]:
    """The distinct categories of the user's concepts ("dog", "mug"), for a detector's prompts."""
    query = select(Concept.category).where(
        Concept.user_id == user_id, Concept.category.is_not(None)
    )
    return sorted({category for category in session.scalars(query.distinct()) if category})


def images_of(*, session: Session, concept_ids: Sequence[str]) -> dict[str, list[ImageRow]]:
    images: dict[str, list[ImageRow]] = {concept_id: [] for concept_id in concept_ids}
    if concept_ids:
        query = select(ImageRow).where(ImageRow.concept_id.in_(concept_ids)).order_by(ImageRow.id)
        for image in session.scalars(query):
            images[image.concept_id].append(image)
    return images


def count_concepts(*, session: Session, user_id: int) -> int:
    query = select(func.count()).select_from(Concept).where(Concept.user_id == user_id)
    return int(session.scalar(query) or 0)


# What one photo costs in storage beyond its bytes: a file takes at least a block,
# and its rows (image, vector) take room of their own.
FILE_BLOCK_BYTES = 4096
PHOTO_ROW_BYTES = 512
VECTOR_ROW_BYTES = 256


def stored_bytes(*, size_bytes: int, dims: Sequence[int]) -> int:
    """Storage charged for a photo of ``size_bytes`` with vectors of ``dims`` (float32)."""
    vectors = sum(4 * dim + VECTOR_ROW_BYTES for dim in dims)
    return max(size_bytes, FILE_BLOCK_BYTES) + PHOTO_ROW_BYTES + vectors


def tenant_bytes(*, session: Session, tenant_id: int) -> int:
    """Storage the tenant uses, as ``stored_bytes`` charges it: photos (at least a file
    block each), their rows and every vector, not only the bytes as uploaded."""
    photo = case(
        (ImageRow.size_bytes < FILE_BLOCK_BYTES, FILE_BLOCK_BYTES), else_=ImageRow.size_bytes
    )
    photos = (
        select(func.coalesce(func.sum(photo + PHOTO_ROW_BYTES), 0))
        .join(User, User.id == ImageRow.user_id)
        .where(User.tenant_id == tenant_id)
    )
    vectors = (
        select(func.coalesce(func.sum(Embedding.dim * 4 + VECTOR_ROW_BYTES), 0))
        .join(User, User.id == Embedding.user_id)
        .where(User.tenant_id == tenant_id)
    )
    return int(session.scalar(photos) or 0) + int(session.scalar(vectors) or 0)


def count_images(*, session: Session, concept_id: str) -> int:
    query = select(func.count()).select_from(ImageRow).where(ImageRow.concept_id == concept_id)
    return int(session.scalar(query) or 0)


def embedding_ids(*, session: Session, image_ids: Sequence[str]) -> list[int]:
    query = select(Embedding.id).where(Embedding.image_id.in_(image_ids))
    return list(session.scalars(query))


def blobs_in_use(*, session: Session, user_id: int, keys: Sequence[str]) -> set[str]:
    query = select(ImageRow.blob_key).where(
        ImageRow.user_id == user_id, ImageRow.blob_key.in_(keys)
    )
    return set(session.scalars(query))


def user_vectors(
    *, session: Session, user_id: int, model_id: str
) -> tuple[list[int], list[str], np.ndarray]:
    """Every vector of the user made by ``model_id``: (ids, concept ids, matrix)."""
    rows = session.execute(
        select(Embedding.id, Embedding.concept_id, Embedding.dim, Embedding.vector).where(
            Embedding.user_id == user_id, Embedding.model_id == model_id
        )
    ).all()
    if not rows:
        return [], [], np.zeros((0, 0), dtype=np.float32)
    dim = rows[0].dim
    matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32)
    return [row.id for row in rows], [row.concept_id for row in rows], matrix.reshape(-1, dim)


def delete_user(*, session: Session, user_id: int) -> None:
    session.execute(delete(User).where(User.id == user_id))


@dataclass(frozen=True)
class UserCounts:
    """One end user of a tenant with what they store."""

    external_id: str
    concepts: int
    photos: int
    bytes: int
    created_at: datetime
    changed_at: datetime  # last change to a concept or photo still stored, else creation


def list_users(
    *,
    session: Session,
    tenant_id: int,
    limit: int,
    after: str | None,
    prefix: str | None,
    exact: str | None = None,
) -> list[UserCounts]:
    """Up to ``limit`` users of the tenant by external id (after ``after``, starting with
    ``prefix``, or the one with id ``exact``), each with their counts: four queries,
    whatever the page size."""
    query = select(User.id, User.external_id, User.created_at).where(User.tenant_id == tenant_id)
    if exact is not None:
        query = query.where(User.external_id == exact)
    if after is not None:
        query = query.where(User.external_id > after)
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(User.external_id.like(f"{escaped}%", escape="\\"))
    users = session.execute(query.order_by(User.external_id).limit(limit)).all()
    ids = [row.id for row in users]
    concepts = dict(
        session.execute(
            select(Concept.user_id, func.count())
            .where(Concept.user_id.in_(ids))
            .group_by(Concept.user_id)
        ).all()
    )
    changed = dict(
        session.execute(
            select(Concept.user_id, func.max(Concept.updated_at))
            .where(Concept.user_id.in_(ids))
            .group_by(Concept.user_id)
        ).all()
    )
    photos = {
        row[0]: (int(row[1]), int(row[2] or 0))
        for row in session.execute(
            select(ImageRow.user_id, func.count(), func.sum(ImageRow.size_bytes))
            .where(ImageRow.user_id.in_(ids))
            .group_by(ImageRow.user_id)
        )
    }
    return [
        UserCounts(
            external_id=row.external_id,
            concepts=int(concepts.get(row.id, 0)),
            photos=photos.get(row.id, (0, 0))[0],
            bytes=photos.get(row.id, (0, 0))[1],
            created_at=row.created_at,
            changed_at=_aware(changed.get(row.id)) or row.created_at,
        )
        for row in users
    ]


def _aware(value: datetime | None) -> datetime | None:
    # An aggregate bypasses the column type: SQLite hands back a naive (UTC) datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def tenant_usage(*, session: Session, tenant_id: int) -> tuple[int, int, int, int]:
    """(users, concepts, photos, bytes of photos) the tenant stores."""
    users = session.scalar(
        select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
    )
    concepts = session.scalar(
        select(func.count())
        .select_from(Concept)
        .join(User, User.id == Concept.user_id)
        .where(User.tenant_id == tenant_id)
    )
    photos = session.scalar(
        select(func.count())
        .select_from(ImageRow)
        .join(User, User.id == ImageRow.user_id)
        .where(User.tenant_id == tenant_id)
    )
    return (
        int(users or 0),
        int(concepts or 0),
        int(photos or 0),
        tenant_bytes(session=session, tenant_id=tenant_id),
    )
