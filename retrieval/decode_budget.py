"""A budget of pixels being decoded at once, for a whole process, shared by its owners.

Each photo's decode needs memory in proportion to the pixels it decodes (a
37-byte GIF can declare a 40 MP canvas: ~120 MB of RGB plus conversions). A
request bounds its own photos; this bounds all requests together: a decode
holds its pixels from the budget while it runs, waits up to ``wait_s`` for
room, and otherwise raises DecodeBusy (the service answers 503 with
Retry-After). No owner (an app) may hold more than ``owner_share`` at once, so
one app's decodes leave room for the others'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager

from retrieval.errors import DecodeBusy

# (pixels) -> a context holding them while a photo decodes.
PixelHold = Callable[[int], AbstractContextManager[None]]


class DecodeBudget:
    """``total`` pixels in flight in this process, at most ``owner_share`` per owner."""

    def __init__(self, total: int, *, owner_share: int, wait_s: float) -> None:
        if not 0 < owner_share <= total:
            raise ValueError("owner_share must be positive and at most total")
        self.total, self.owner_share, self.wait_s = total, owner_share, wait_s
        self._used = 0
        self._by_owner: dict[Hashable, int] = {}
        self._room = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._used

    def for_owner(self, owner: Hashable | None) -> PixelHold:
        """The hold of ``owner``'s decodes (None: work of no app, e.g. offline)."""
        return lambda pixels: self.hold(owner, pixels)

    @contextmanager
    def hold(self, owner: Hashable | None, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` for ``owner`` while the block runs (one photo's decode). A photo
        larger than the share holds the whole share, so it can still decode alone."""
        pixels = max(1, min(pixels, self.owner_share))
        deadline = time.monotonic() + self.wait_s
        with self._room:
            while not self._fits(owner, pixels):
                left = deadline - time.monotonic()
                if left <= 0 or (not self._room.wait(left) and not self._fits(owner, pixels)):
                    raise DecodeBusy(
                        "too many photos are being decoded in this process; retry shortly"
                    )
            self._used += pixels
            self._by_owner[owner] = self._by_owner.get(owner, 0) + pixels
        try:
            yield
        finally:
            with self._room:
                self._used -= pixels
                left_over = self._by_owner.pop(owner) - pixels
                if left_over:
                    self._by_owner[owner] = left_over
                self._room.notify_all()

    def _fits(self, owner: Hashable | None, pixels: int) -> bool:
        mine = self._by_owner.get(owner, 0)
        return self._used + pixels <= self.total and mine + pixels <= self.owner_share
