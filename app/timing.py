"""Where a request's time goes, reported to clients as a Server-Timing header."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Wall-clock seconds per named stage of one request."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - started

    def header(self) -> str:
        """``decode;dur=1.20, encode;dur=3.40`` (milliseconds), as Server-Timing wants it."""
        return ", ".join(
            f"{name};dur={seconds * 1000:.2f}" for name, seconds in self.stages.items()
        )
