"""Photo storage: a local folder of immutable, content-addressed files."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_KEY = re.compile(r"^[0-9a-z/]+$")
_TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StoredFile:
    key: str  # the path under the root, as a blob key
    mtime: float
    temporary: bool  # a write's temp file, not a blob


def blob_key(*, namespace: str, sha256: str) -> str:
    """Where a photo lives: its owner's namespace and its content hash."""
    return f"{namespace}/{sha256[:2]}/{sha256}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobStore:
    """Blobs as files under ``root``. Writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

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
                yield StoredFile(key=key, mtime=mtime, temporary=name.startswith(_TEMP_PREFIX))

    def mtime(self, name: str) -> float:
        """When a file that ``files`` listed was last written (infinity: it is gone)."""
        try:
            return self._file(name).stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def remove_file(self, name: str) -> None:
        """Delete one file that ``files`` listed (a blob or a temp file); gone already is fine."""
        self._file(name).unlink(missing_ok=True)

    def _file(self, name: str) -> Path:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"invalid file name {name!r}")
        return self.root / relative

    def delete_namespace(self, namespace: str) -> None:
        """Delete every blob whose key starts with ``namespace/``."""
        shutil.rmtree(self._path(namespace), ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
