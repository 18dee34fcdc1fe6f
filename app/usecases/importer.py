"""Bulk import of one user's concepts (layouts: ``app.usecases.import_sources``).

Resumable: a concept the user already has gets only the photos it lacks, by
SHA-256 of their bytes, so running an import again adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.domain.errors import Conflict, NotFound, QuotaExceeded
from app.domain.ids import TENANT_NAME, USER_ID
from app.domain.scope import UserScope
from app.services import Services
from app.storage.blobs import sha256_hex
from app.storage.repository import concepts as concept_rows
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.storage.repository.tenants import get_or_create_tenant
from app.usecases.concepts import add_images, create_concept
from app.usecases.import_sources import ConceptSource, Failure, find_sources
from app.usecases.negatives import add_negatives
from app.usecases.photo_policy import PhotoPolicy
from app.usecases.photos import DecodedUpload
from retrieval.errors import ImageRejected, InvalidRequest, RapportError
from retrieval.names import bare_word_matchable, name_key

Progress = Callable[[int, int], None]
# What one write of one concept can fail with; the import goes on with the next concept.
_CONCEPT_ERRORS = (QuotaExceeded, InvalidRequest, Conflict, ImageRejected, NotFound)


@dataclass
class ImportReport:
    """What an import did: concept names, photo counts, and every failure with its reason."""

    created: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)  # existing concepts given new photos
    skipped_concepts: list[str] = field(default_factory=list)  # no photo could be imported
    photos_added: int = 0
    photos_skipped: int = 0  # already stored, or the same bytes twice in one concept
    failures: list[Failure] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The human summary: counts, then one line per failure."""
        lines = [
            f"concepts created: {len(self.created)}",
            f"concepts given new photos: {len(self.extended)}",
            f"concepts skipped (no photo could be imported): {len(self.skipped_concepts)}",
            f"photos added: {self.photos_added}",
            f"photos skipped (already stored): {self.photos_skipped}",
            f"failed: {len(self.failures)}",
        ]
        lines += [f"  {failure.where}: {failure.reason}" for failure in self.failures]
        common = [name for name in self.created if not bare_word_matchable(name_key(name))]
        if common:
            what = "is a common English word" if len(common) == 1 else "are common English words"
            lines.append(
                f"note: {', '.join(common)} {what}: questions name such a concept only in "
                f"angle brackets (<{name_key(common[0])}>), or rename it"
            )
        return lines


@dataclass
class _Stored:
    concept_id: str
    photos: int
    hashes: set[str]


def import_concepts(
    services: Services,
    *,
    tenant_name: str,
    external_user_id: str,
    root: str | Path,
    progress: Progress | None = None,
) -> ImportReport:
    """Register every concept under ``root`` for one user of ``tenant_name`` (created if new).

    Never stops at a bad file or concept: each becomes a Failure in the report
    (unreadable, rejected by the service's own image checks, over a quota). A
    concept the user already has (same name, as the API compares names) gets
    only the photos whose SHA-256 it does not hold, so running again adds
    nothing. A concept is registered with its first ``max_images_per_request``
    photos, the rest added in chunks of that size. ``progress(done, total)``
    counts photos. Raises InvalidRequest for a bad root, tenant or user name.
    """
    for rule, value in ((TENANT_NAME, tenant_name), (USER_ID, external_user_id)):
        try:
            rule.check(value)
        except ValueError as error:
            raise InvalidRequest(str(error)) from None
    sources, failures = find_sources(Path(root))
    report = ImportReport(failures=failures)
    with services.sessions() as session:
        tenant_id = get_or_create_tenant(session=session, name=tenant_name).id
        session.commit()
    scope = UserScope(tenant_id=tenant_id, external_user_id=external_user_id)
    stored = _stored_concepts(services, scope=scope)
    total, done = sum(len(source.photos) for source in sources), 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    tick(0)
    claimed: dict[str, str] = {}
    for source in sources:
        importer = _ConceptImport(services, scope, report, tick)
        importer.run(source, stored, claimed)
    return report


class _ConceptImport:
    """The import of one source concept, in chunks the service accepts in one request."""

    def __init__(
        self,
        services: Services,
        scope: UserScope,
        report: ImportReport,
        tick: Callable[[int], None],
    ) -> None:
        self.services, self.scope = services, scope
        self.report, self.tick = report, tick
        settings = services.settings
        self.chunk_size = max(
            1, min(settings.max_images_per_request, settings.encode_chunk_limit())
        )
        self.chunk: list[DecodedUpload] = []
        self.concept_id: str | None = None
        self.fields: dict[str, Any] = {}
        self.added = 0

    def run(
        self, source: ConceptSource, stored: dict[str, _Stored], claimed: dict[str, str]
    ) -> None:
        """Import ``source``, reporting into the report; ``claimed``: names seen in this run."""
        try:
            source.check()
            name, key = source.name, name_key(source.name)
            if key in claimed:
                raise InvalidRequest(f"{name!r} is also the name of {claimed[key]}")
        except InvalidRequest as error:
            self.report.failures.append(Failure(source.origin, error.detail))
            self.tick(len(source.photos))
            return
        claimed[key] = source.origin
        self.fields = {"name": name, "description": source.description}
        self.fields["category"] = source.category
        existing = stored.get(key)
        self.concept_id = existing.concept_id if existing else None
        hashes = set(existing.hashes) if existing else set()
        settings = self.services.settings
        room = settings.max_photos_per_concept - (existing.photos if existing else 0)
        policy = PhotoPolicy.for_uploads(self.services, None)
        for index, path in enumerate(source.photos):
            try:
                with path.open("rb") as handle:
                    data = handle.read(policy.limits.max_bytes + 1)
                sha = sha256_hex(data)
                if sha in hashes:
                    self.report.photos_skipped += 1
                    self.tick(1)
                    continue
                if room <= 0:
                    limit = settings.max_photos_per_concept
                    raise QuotaExceeded(f"a concept holds at most {limit} photos")
                upload = DecodedUpload(data, policy.decode(data))
            except (OSError, ImageRejected, QuotaExceeded) as error:
                self.report.failures.append(Failure(str(path), _reason(error)))
                self.tick(1)
                continue
            hashes.add(sha)
            room -= 1
            self.chunk.append(upload)
            if len(self.chunk) == self.chunk_size and not self.flush(source.origin):
                self.tick(len(source.photos) - index - 1)
                return
        if self.chunk and not self.flush(source.origin):
            return
        if self.concept_id is None and not source.photos:
            # A folder with a concept.json and no photo: a text-only concept, as exported.
            self.flush(source.origin)
            return
        if self.concept_id is not None and source.negatives:
            self.add_negatives(source, policy)
        if self.concept_id is None:
            self.report.skipped_concepts.append(name)
            reason = "no photo could be imported; not registered"
            self.report.failures.append(Failure(source.origin, reason))
        elif existing is not None and self.added:
            self.report.extended.append(name)

    def add_negatives(self, source: ConceptSource, policy: PhotoPolicy) -> None:
        """The concept's corrections, in requests of at most the API's photo count."""
        assert self.concept_id is not None
        limit = self.services.settings.max_images_per_request
        for start in range(0, len(source.negatives), limit):
            paths = source.negatives[start : start + limit]
            try:
                uploads = []
                for path in paths:
                    with path.open("rb") as handle:
                        data = handle.read(policy.limits.max_bytes + 1)
                    uploads.append(DecodedUpload(data, policy.decode(data)))
                add_negatives(
                    self.services, scope=self.scope, concept_id=self.concept_id, uploads=uploads
                )
            except (OSError, *_CONCEPT_ERRORS) as error:
                reason = f"{len(paths)} correction(s) not added: {_reason(error)}"
                self.report.failures.append(Failure(source.origin, reason))

    def flush(self, where: str) -> bool:
        """Send the chunk; False (and a Failure) when the service refuses it."""
        chunk, self.chunk = self.chunk, []
        try:
            if self.concept_id is None:
                view = create_concept(
                    self.services,
                    scope=self.scope,
                    uploads=chunk,
                    source="import",
                    **self.fields,
                )
                self.concept_id = view.concept.id
                self.report.created.append(view.concept.name)
            else:
                add_images(
                    self.services,
                    scope=self.scope,
                    concept_id=self.concept_id,
                    uploads=chunk,
                    source="import",
                )
        except _CONCEPT_ERRORS as error:
            reason = f"{len(chunk)} photo(s) not added: {_reason(error)}"
            self.report.failures.append(Failure(where, reason))
            self.tick(len(chunk))
            return False
        self.added += len(chunk)
        self.report.photos_added += len(chunk)
        self.tick(len(chunk))
        return True


def _reason(error: OSError | RapportError) -> str:
    if isinstance(error, OSError):
        return f"unreadable: {error.strerror or error}"
    return f"{error.title}: {error.detail}"


def _stored_concepts(services: Services, *, scope: UserScope) -> dict[str, _Stored]:
    """The user's concepts by name key, with their photos' hashes (the rows only: none of
    the look-alike work of the API's listing)."""
    with services.sessions() as session:
        user = user_rows.user_version(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            return {}
        concepts = concept_rows.every_concept(session=session, user_id=user[0])
        images = image_rows.images_of(session=session, concept_ids=[c.id for c in concepts])
    return {
        concept.name_key: _Stored(
            concept.id, len(images[concept.id]), {row.sha256 for row in images[concept.id]}
        )
        for concept in concepts
    }
