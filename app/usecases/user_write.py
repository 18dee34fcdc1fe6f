"""One write to a user's data: lock the user → check → write → commit → patch the cached index.

The concept and photo writes of the API go through ``user_write``, so writes of one
user are serialised by their row lock, each bumps the user's version (readers elsewhere
see their cached index is stale), and this process's cached index is patched from the
old version to the new one instead of being rebuilt. Maintenance writes (reindex, the
doctor's repairs, erasing a user) lock and bump the same row themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import ConceptNotFound
from app.domain.scope import UserScope
from app.services import Services
from app.storage.repository import users as user_rows
from retrieval.index import UserIndex


@dataclass
class UserWrite:
    """The open transaction of one user write, their row locked and version bumped."""

    session: Session
    lock: user_rows.UserLock
    source: str = "api"  # who writes, for the user's history: api | import | chat | undo
    undoes: str | None = None  # the history event this write undoes, if any
    events: list[Any] = field(default_factory=list)  # history events recorded in this write
    _index_updates: list[Callable[[UserIndex], None]] = field(default_factory=list)
    _on_rollback: list[Callable[[], None]] = field(default_factory=list)
    _conflict: Exception | None = None
    _rule_changes: bool = False

    @property
    def user_id(self) -> int:
        return self.lock.user_id

    def after_commit(self, update: Callable[[UserIndex], None]) -> None:
        """Patch this process's cached index of the user with ``update`` once committed
        (by default it is only moved to the new version: nothing it holds changed); several
        updates apply in the order given."""
        self._index_updates.append(update)

    def rule_changes(self) -> None:
        """The write changes the user's decision rule without changing the index (their
        corrections): the rule is fitted again, not carried to the new version."""
        self._rule_changes = True

    def conflict_is(self, error: Exception) -> None:
        """Raise ``error`` in place of a unique violation at commit: two requests raced
        (for a concept name, say) and the database's constraint decided."""
        self._conflict = error

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` after the transaction rolled back (the write raised or the commit
        failed), e.g. to delete blobs written for rows that never committed."""
        self._on_rollback.append(undo)


@contextmanager
def user_write(
    services: Services,
    scope: UserScope,
    *,
    create: bool = False,
    missing: Exception | None = None,
    source: str = "api",
    recorded: list[Any] | None = None,
) -> Iterator[UserWrite]:
    """Lock the user of ``scope`` (created if ``create``; otherwise ``missing`` is raised
    for a user who does not exist), run the block, commit, then patch the cached index.

    On an exception in the block or at commit the transaction rolls back and the
    ``on_rollback`` callbacks run; a unique violation at commit becomes the error given
    to ``conflict_is``, if any. Nothing of the cached index changes unless committed.
    ``source`` names the writer in the history events the block records; once they
    committed, they are added to ``recorded`` when given.
    """
    with services.sessions() as session:
        lock = user_rows.lock_user(
            session=session,
            tenant_id=scope.tenant_id,
            external_id=scope.external_user_id,
            create=create,
        )
        if lock is None:
            raise missing or ConceptNotFound("no such user")
        write = UserWrite(session=session, lock=lock, source=source)
        try:
            yield write
            try:
                session.commit()
            except IntegrityError:
                if write._conflict is None:
                    raise
                session.rollback()
                raise write._conflict from None
        except BaseException:
            session.rollback()
            for undo in write._on_rollback:
                undo()
            raise
    if recorded is not None:
        recorded.extend(write.events)
    key = services.index_key(lock.user_id)
    versions = {"from_version": lock.from_version, "to_version": lock.to_version}
    updates = write._index_updates
    services.user_index_cache.apply(key, **versions, update=_in_order(updates))
    if not updates and not write._rule_changes:
        # The same vectors make the same decision rule: carry it to the new version
        # instead of fitting it again (a rename, a new description).
        services.decisions.apply(key, **versions, update=_unchanged)


def _in_order(updates: list[Callable[[UserIndex], None]]) -> Callable[[UserIndex], None]:
    def update(index: UserIndex) -> None:
        for one in updates:
            one(index)

    return update


def _unchanged(value: object) -> None:
    """Nothing of a cached value changed with the write: it only moves to the new version."""
