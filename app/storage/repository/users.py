"""User rows: the per-user lock and version every write starts with; lookups, lists, erasing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.storage.db.models import Concept, ImageRow, User
from retrieval.errors import Overloaded


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


def find_user(*, session: Session, tenant_id: int, external_id: str) -> User | None:
    return session.scalar(
        select(User).where(User.tenant_id == tenant_id, User.external_id == external_id)
    )


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
    memory: str | None = None  # the widest memory mode of their chats (None: read)
    memory_deletes: bool = False


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
    query = select(
        User.id, User.external_id, User.created_at, User.memory, User.memory_deletes
    ).where(User.tenant_id == tenant_id)
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
            memory=row.memory,
            memory_deletes=bool(row.memory_deletes),
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
