"""Where a photo lives in the photo store: the one statement of the key layout.

``t<tenant id>/u<user id>/<sha256[:2]>/<sha256>``: content-addressed within its user's own
namespace, from internal ids only (an app's user id, whatever its characters, is never
part of a key), so erasing a user removes one prefix and the doctor can tell from a key
whose lock guards it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAMESPACE = re.compile(r"^t(\d+)/u(\d+)/")


@dataclass(frozen=True)
class BlobLayout:
    """The photo store's namespace of one user, and the keys of their photos in it."""

    tenant_id: int
    user_id: int

    @property
    def namespace(self) -> str:
        """The user's prefix (no trailing slash): erasing the user removes it whole."""
        return f"t{self.tenant_id}/u{self.user_id}"

    def key(self, sha256: str) -> str:
        """The key of the user's photo whose content has this SHA-256 (hex)."""
        return f"{self.namespace}/{sha256[:2]}/{sha256}"

    @classmethod
    def parse(cls, key: str) -> BlobLayout | None:
        """The user whose namespace holds ``key`` (a photo, or the temp file of a write in
        it); None for a key outside every user's namespace."""
        found = _NAMESPACE.match(key)
        return None if found is None else cls(tenant_id=int(found[1]), user_id=int(found[2]))
