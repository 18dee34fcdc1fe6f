"""Do the database and the photo folder agree? Checks for after a crash or a restore.

SQL is the truth. A photo file that no image row references is an orphan: a
registration that crashed before its commit, or a deletion that crashed after
its commit, leaves one behind. A file younger than the grace period may
belong to a write still in flight (its blobs are written before its commit),
so it is only reported, never deleted; older orphans are deleted under the
owner's row lock, which every writer of that user's blobs holds, after one
last look at the committed rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.domain.blob_layout import BlobLayout
from app.services import Services
from app.settings import Settings
from app.storage.blobs import BlobStore
from app.storage.repository import maintenance
from app.storage.repository import users as user_rows
from app.storage.repository import vectors as vector_rows

SHOWN = 20  # ids listed per problem; the counts are always whole


@dataclass(frozen=True)
class Storage:
    """What the doctor reads and repairs: SQL, the photo folder and the configured
    model's id (for photos without its vector); no encoder is needed."""

    settings: Settings
    sessions: sessionmaker[Session]
    blobs: BlobStore
    model_id: str

    @classmethod
    def of(cls, services: Services) -> Storage:
        return cls(services.settings, services.sessions, services.blobs, services.encoder.model_id)


@dataclass
class DoctorReport:
    """What disagrees. ``problems`` is empty when everything is consistent."""

    orphan_blobs: list[str] = field(default_factory=list)  # older than the grace period
    young_orphan_blobs: list[str] = field(default_factory=list)  # may be writes in flight
    temp_files: list[str] = field(default_factory=list)  # older than the grace period
    young_temp_files: list[str] = field(default_factory=list)
    missing_blobs: list[str] = field(default_factory=list)  # image ids
    images_without_vector: int = 0  # of the configured model
    vectors_without_image: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.orphan_blobs:
            found.append(f"{len(self.orphan_blobs)} photo files no image references (--repair)")
        if self.temp_files:
            found.append(f"{len(self.temp_files)} temp files of unfinished writes (--repair)")
        if self.missing_blobs:
            found.append(
                f"{len(self.missing_blobs)} photos whose file is missing: restore the photo "
                f"folder from a backup, or delete them through the API: {_some(self.missing_blobs)}"
            )
        if self.images_without_vector:
            found.append(
                f"{self.images_without_vector} photos have no vector of the configured model: "
                "run `rapport reindex`"
            )
        if self.vectors_without_image:
            found.append(f"{self.vectors_without_image} vectors without a photo (--repair)")
        return found

    @property
    def notes(self) -> list[str]:
        young = len(self.young_orphan_blobs) + len(self.young_temp_files)
        if not young:
            return []
        return [
            f"{young} unreferenced files are younger than the grace period (RAPPORT_DOCTOR_GRACE_S)"
            " and may belong to writes in flight: left alone"
        ]

    def lines(self) -> list[str]:
        """The report as an operator reads it."""
        problems = [f"problem: {line}" for line in self.problems]
        done = [f"repaired: {line}" for line in self.repaired]
        notes = [f"note: {line}" for line in self.notes]
        status = "problems remain" if problems else "database and photo folder agree"
        return [*done, *problems, *notes, status]


def check(storage: Storage, *, grace_s: float | None = None) -> DoctorReport:
    """Report every disagreement between SQL and the photo folder. Changes nothing."""
    grace = storage.settings.doctor_grace_s if grace_s is None else grace_s
    report = DoctorReport()
    model_id = storage.model_id
    with storage.sessions() as session:
        # Rows first, files second: a photo committed in between shows as a young file.
        rows = maintenance.photo_keys(session=session)
        report.images_without_vector = vector_rows.count_images_without_vector(
            session=session, model_id=model_id
        )
        report.vectors_without_image = maintenance.count_vectors_without_image(session=session)
    cutoff = time.time() - grace
    files = list(storage.blobs.files())
    on_disk = {f.key for f in files if not f.temporary}
    for stored in files:
        if stored.temporary:
            (report.temp_files if stored.mtime < cutoff else report.young_temp_files).append(
                stored.key
            )
        elif stored.key not in rows:
            old = stored.mtime < cutoff
            (report.orphan_blobs if old else report.young_orphan_blobs).append(stored.key)
    missing = [key for key in rows if key not in on_disk]
    if missing:
        # Deleted (row and file) while we looked is not missing.
        with storage.sessions() as session:
            for some in _batches(missing):
                still = maintenance.photos_with_keys(session=session, keys=some)
                report.missing_blobs += [i for key, i in still if not storage.blobs.exists(key)]
    return report


def repair(storage: Storage, *, grace_s: float | None = None) -> DoctorReport:
    """Delete what can only be garbage, then check again; the report lists what was done.

    Deleted: unreferenced files and temp files older than the grace period, vectors
    without a photo (a concept without photos is a text-only concept, not garbage).
    Missing photo files and missing vectors are reported, never "repaired" (restore,
    or `rapport reindex`).
    """
    grace = storage.settings.doctor_grace_s if grace_s is None else grace_s
    found = check(storage, grace_s=grace)
    repaired = []
    removed = _remove_unreferenced(storage, found.orphan_blobs + found.temp_files, grace)
    if removed:
        repaired.append(f"deleted {removed} unreferenced files")
    if found.vectors_without_image:
        repaired.append(f"deleted {_delete_vectors_without_image(storage)} vectors")
    report = check(storage, grace_s=grace)
    report.repaired = repaired
    return report


def _remove_unreferenced(storage: Storage, keys: Sequence[str], grace: float) -> int:
    by_user: dict[int | None, list[str]] = {}
    for key in keys:
        owner = BlobLayout.parse(key)
        by_user.setdefault(owner.user_id if owner else None, []).append(key)
    removed = 0
    for user_id, user_keys in by_user.items():
        with storage.sessions() as session:
            # Under the owner's lock no write of theirs is in flight: what no committed row
            # references now is garbage. (A user erased, or not committed yet: the grace.)
            if user_id is not None:
                user_rows.relock_user(session=session, user_id=user_id)
            used = {
                key
                for some in _batches(user_keys)
                for key in maintenance.keys_in_use(session=session, keys=some)
            }
            cutoff = time.time() - grace
            stale = {key for key in user_keys if storage.blobs.mtime(key) < cutoff}
            for key in sorted(stale - used):
                storage.blobs.remove_file(key)
                removed += 1
            session.commit()
    return removed


def _delete_vectors_without_image(storage: Storage) -> int:
    with storage.sessions() as session:
        deleted = maintenance.delete_vectors_without_image(session=session)
        session.commit()
    return deleted


def _batches(keys: Sequence[str], size: int = 1000) -> list[Sequence[str]]:
    # Bound the parameters of one IN (...): a lost folder can mean many thousands.
    return [keys[start : start + size] for start in range(0, len(keys), size)]


def _some(ids: Sequence[str]) -> str:
    more = f" (and {len(ids) - SHOWN} more)" if len(ids) > SHOWN else ""
    return ", ".join(ids[:SHOWN]) + more
