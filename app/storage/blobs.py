"""Photo storage: immutable, content-addressed blobs in a local folder or an S3 bucket.

Both backends keep the same promises, which the write protocol and ``rapport
doctor`` rely on: a blob is written whole or not at all before the row that
names it commits; ``files`` lists every stored object with its age; a missing
blob reads as ``FileNotFoundError``; a store that cannot answer raises
``BlobStoreUnavailable`` (503), never a half-stored photo.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from app.domain.errors import BlobStoreUnavailable

if TYPE_CHECKING:
    from app.settings import Settings

_KEY = re.compile(r"^[0-9a-z/]+$")
_TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StoredFile:
    key: str  # the path under the root, as a blob key
    mtime: float
    temporary: bool  # a write's temp file, not a blob


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """``key`` if it is a valid blob key (lower-case letters, digits, slashes); else ValueError."""
    if not _KEY.match(key) or ".." in key or key.startswith("/") or "//" in key:
        raise ValueError(f"invalid blob key {key!r}")
    return key


def is_temporary(name: str) -> bool:
    """Whether a listed file is the temp file of an unfinished write, not a blob."""
    return name.rsplit("/", 1)[-1].startswith(_TEMP_PREFIX)


class BlobStore(Protocol):
    """What the use cases and the doctor need of a photo store."""

    description: str  # where the photos are, for operators' messages (never credentials)

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` whole under ``key`` (durable on return), replacing any old value."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; FileNotFoundError if there are none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; gone already is fine."""

    def files(self) -> Iterator[StoredFile]:
        """Every stored object (blobs, and temp files of unfinished writes) with its age."""
        ...

    def mtime(self, name: str) -> float:
        """When a listed file was last written (infinity: it is gone)."""
        ...

    def remove_file(self, name: str) -> None:
        """Delete one listed file (a blob or a temp file); gone already is fine."""

    def delete_namespace(self, namespace: str) -> None:
        """Delete every blob whose key starts with ``namespace/``, however many."""

    def check(self) -> None:
        """Raise BlobStoreUnavailable, naming the setting to fix, unless the store answers."""

    def close(self) -> None: ...


def open_blob_store(settings: Settings) -> BlobStore:
    """The configured store, checked: BlobStoreUnavailable names the setting if it is unusable."""
    store: BlobStore
    if settings.blob_store is None:
        store = LocalBlobStore(settings.resolved_blob_dir)
    else:
        # boto3 is imported only when S3 is configured.
        from app.storage.blobs_s3 import S3BlobStore, S3Config

        store = S3BlobStore(S3Config.from_settings(settings))
    store.check()
    return store


class LocalBlobStore:
    """Blobs as files under ``root``. Writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"photo folder {root}"
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def check(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            raise BlobStoreUnavailable(
                f"RAPPORT_BLOB_DIR: the photo folder {self.root} is missing or not writable"
            )

    def close(self) -> None:
        pass

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        created = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename (and any new folder) is durable only once its folder is synced: the
        # row that names this blob commits next, and must never outlive it on power loss.
        folders = [path.parent]
        if created:
            folders += [p for p in path.parent.parents if p.is_relative_to(self.root)]
        for folder in folders:
            _fsync_folder(folder)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def files(self) -> Iterator[StoredFile]:
        """Every file under the root: blobs, and the temp files of writes that never finished."""
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = Path(folder, name)
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:
                    continue  # deleted while we looked
                key = path.relative_to(self.root).as_posix()
                yield StoredFile(key=key, mtime=mtime, temporary=is_temporary(name))

    def mtime(self, name: str) -> float:
        try:
            return self._file(name).stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def remove_file(self, name: str) -> None:
        self._file(name).unlink(missing_ok=True)

    def _file(self, name: str) -> Path:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"invalid file name {name!r}")
        return self.root / relative

    def delete_namespace(self, namespace: str) -> None:
        shutil.rmtree(self._path(namespace), ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
