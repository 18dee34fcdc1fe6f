"""Concept rows of one user: lookups, name checks, pages, counts and the cached summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.errors import ConceptNotFound
from app.storage.db.models import Concept


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


def concept_summaries(*, session: Session, user_id: int) -> dict[str, ConceptSummary]:
    """Every concept of the user, id -> summary."""
    rows = session.execute(
        select(Concept.id, Concept.name, Concept.description, Concept.category).where(
            Concept.user_id == user_id
        )
    )
    return {row[0]: ConceptSummary(*row) for row in rows}


def add_concept(
    *,
    session: Session,
    user_id: int,
    name: str,
    name_key: str,
    description: str,
    category: str | None,
) -> Concept:
    """Add a concept row (flushed, so it has its id)."""
    concept = Concept(
        user_id=user_id,
        name=name,
        name_key=name_key,
        description=description,
        category=category,
    )
    session.add(concept)
    session.flush()
    return concept


def delete_concept(*, session: Session, concept: Concept) -> None:
    """Delete the concept; its photos and vectors go with it (ON DELETE CASCADE)."""
    session.delete(concept)


def find_concept(*, session: Session, concept_id: str) -> Concept | None:
    """The concept with this id, whoever owns it (for maintenance; requests use get_concept)."""
    return session.get(Concept, concept_id)


def get_concept(*, session: Session, user_id: int, concept_id: str) -> Concept:
    concept = session.scalar(
        select(Concept).where(Concept.id == concept_id, Concept.user_id == user_id)
    )
    if concept is None:
        raise ConceptNotFound(f"no concept {concept_id!r} for this user")
    return concept


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


def every_concept(*, session: Session, user_id: int, page: int = 500) -> list[Concept]:
    """All of the user's concepts, by id, read a page at a time."""
    found: list[Concept] = []
    after = None
    while batch := list_concepts(session=session, user_id=user_id, limit=page, after=after):
        found += batch
        after = batch[-1].id
    return found


def count_concepts(*, session: Session, user_id: int) -> int:
    query = select(func.count()).select_from(Concept).where(Concept.user_id == user_id)
    return int(session.scalar(query) or 0)
